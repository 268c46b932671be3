import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** How access tokens are signed (`JWT_ALGORITHM`) and which extra keys still verify them (`JWT_VERIFY_KEYS`). */
export type JwtSigning =
  | { readonly algorithm: 'HS256'; readonly verifyKeys: readonly KeyObject[] }
  | {
      readonly algorithm: 'EdDSA';
      /** The Ed25519 private key that signs (`JWT_PRIVATE_KEY`). */
      readonly privateKey: KeyObject;
      /** Whether it was generated and kept in `DATA_DIR` rather than configured. */
      readonly generated: boolean;
      readonly verifyKeys: readonly KeyObject[];
    };

const PRIVATE_KEY_FILE = 'jwt-ed25519-key.pem';
/** A PEM block: its BEGIN line, a body with no other `-----` line in it, and the END line of the same label. */
const PEM_BLOCK = /-----BEGIN ([A-Z ]+)-----(?:(?!-----)[\s\S])*-----END \1-----/g;
/** The text between PEM blocks, for splitting around them (split would return a capture group too). */
const PEM_BLOCK_SPLIT = /-----BEGIN (?:[A-Z ]+)-----(?:(?!-----)[\s\S])*-----END (?:[A-Z ]+)-----/;

/** Environment values may carry a PEM with its line breaks written as `\n`. */
const unescape = (pem: string): string => pem.replace(/\\n/g, '\n').trim();

/**
 * Reads `JWT_ALGORITHM`, `JWT_PRIVATE_KEY` and `JWT_VERIFY_KEYS`, adding a problem (one clear line)
 * for each thing wrong: an unknown algorithm, a key that is not PEM, not Ed25519, or private where
 * public is expected. Outside production a missing private key is generated once into `dataDir`.
 */
export function parseJwtSigning(
  raw: { algorithm?: string; privateKey?: string; verifyKeys?: string },
  options: { isProduction: boolean; dataDir: string },
  problems: string[],
): JwtSigning {
  const verifyKeys = parseVerifyKeys(raw.verifyKeys, problems);
  const algorithm = raw.algorithm ?? 'HS256';
  if (algorithm === 'HS256') {
    // A key that was meant to sign, silently unused: tokens would still be HS256 and the JWKS empty.
    if (raw.privateKey !== undefined) {
      problems.push(
        `JWT_PRIVATE_KEY is set but JWT_ALGORITHM is HS256${raw.algorithm === undefined ? ' (the default)' : ''}, which does not use it: set JWT_ALGORITHM=EdDSA to sign with it, or unset JWT_PRIVATE_KEY (its public key in JWT_VERIFY_KEYS keeps its tokens valid)`,
      );
    }
    return Object.freeze({ algorithm, verifyKeys });
  }
  if (algorithm !== 'EdDSA') {
    problems.push(`JWT_ALGORITHM must be HS256 or EdDSA (got "${algorithm}")`);
    return Object.freeze({ algorithm: 'HS256', verifyKeys });
  }
  if (raw.privateKey === undefined) {
    if (options.isProduction) {
      problems.push('JWT_PRIVATE_KEY is required in production with JWT_ALGORITHM=EdDSA (an Ed25519 private key, PKCS#8 PEM: openssl genpkey -algorithm ed25519)');
      return Object.freeze({ algorithm: 'HS256', verifyKeys });
    }
    try {
      return Object.freeze({ algorithm, privateKey: developmentPrivateKey(options.dataDir), generated: true, verifyKeys });
    } catch (error) {
      // An unusable DATA_DIR is reported on its own; anything else (a damaged key file) here.
      if (!problems.some((problem) => problem.startsWith('DATA_DIR'))) problems.push(`${join(options.dataDir, PRIVATE_KEY_FILE)} cannot be used: ${(error as Error).message}`);
      return Object.freeze({ algorithm: 'HS256', verifyKeys });
    }
  }
  // One key, nothing around it: a second block or stray text would otherwise be ignored unseen.
  const pem = unescape(raw.privateKey);
  const blocks = pem.match(PEM_BLOCK) ?? [];
  if (blocks.length > 1 || (blocks.length === 1 && blocks[0] !== pem)) {
    problems.push(
      blocks.length > 1
        ? `JWT_PRIVATE_KEY holds ${blocks.length} PEM blocks: it takes exactly one Ed25519 private key (older keys' public keys go in JWT_VERIFY_KEYS)`
        : 'JWT_PRIVATE_KEY holds text before or after its PEM key: paste the key alone, from -----BEGIN to -----END',
    );
    return Object.freeze({ algorithm: 'HS256', verifyKeys });
  }
  const privateKey = ed25519Key('JWT_PRIVATE_KEY', pem, 'private', problems);
  if (!privateKey) return Object.freeze({ algorithm: 'HS256', verifyKeys });
  return Object.freeze({ algorithm, privateKey, generated: false, verifyKeys });
}

/**
 * The public keys of `JWT_VERIFY_KEYS`: PEM blocks, one after the other (blank lines between them
 * are fine), and nothing else. Anything beside the blocks, or a block cut short, is refused rather
 * than skipped: it is most likely a key pasted incompletely, and the tokens it should verify would
 * fail with nothing in the log to say why.
 */
function parseVerifyKeys(raw: string | undefined, problems: string[]): KeyObject[] {
  if (raw === undefined) return [];
  const text = unescape(raw);
  const blocks = text.match(PEM_BLOCK) ?? [];
  if (blocks.length === 0 && !text.includes('-----BEGIN ')) {
    problems.push('JWT_VERIFY_KEYS must hold Ed25519 public keys in PEM (-----BEGIN PUBLIC KEY----- …)');
    return [];
  }
  // What lies before, between and after the complete blocks: only blank space may.
  const gaps = text.split(PEM_BLOCK_SPLIT);
  for (const [index, gap] of gaps.entries()) {
    if (gap.trim() === '') continue;
    const where =
      blocks.length === 0 ? '' : index === 0 ? ' before key 1' : index === gaps.length - 1 ? ` after key ${index}` : ` between keys ${index} and ${index + 1}`;
    const begin = /-----BEGIN ([A-Z ]+)-----/.exec(gap);
    problems.push(
      begin
        ? `JWT_VERIFY_KEYS has a "-----BEGIN ${begin[1]}-----" line without its "-----END ${begin[1]}-----" line${where}: the key is cut short; paste it whole`
        : `JWT_VERIFY_KEYS holds text${where} that is not part of a PEM key: list only PEM public keys, separated by blank lines`,
    );
    return [];
  }
  return blocks.flatMap((block, index) => ed25519Key(`JWT_VERIFY_KEYS (key ${index + 1})`, block, 'public', problems) ?? []);
}

/** Parses one PEM key of `kind`, or reports why it is not an Ed25519 key of that kind. */
function ed25519Key(name: string, pem: string, kind: 'private' | 'public', problems: string[]): KeyObject | null {
  let key: KeyObject;
  try {
    if (kind === 'public' && /PRIVATE KEY-----/.test(pem)) throw new Error('private');
    key = kind === 'private' ? createPrivateKey({ key: pem, format: 'pem' }) : createPublicKey({ key: pem, format: 'pem' });
  } catch (error) {
    problems.push(
      (error as Error).message === 'private'
        ? `${name} must be a public key: a private key does not belong here`
        : `${name} must be an Ed25519 ${kind} key in ${kind === 'private' ? 'PKCS#8' : 'SPKI'} PEM (-----BEGIN ${kind === 'private' ? 'PRIVATE' : 'PUBLIC'} KEY----- …)`,
    );
    return null;
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    problems.push(`${name} must be an Ed25519 key (got ${keyKind(key)}): EdDSA here means Ed25519`);
    return null;
  }
  return key;
}

/** JOSE's names of the curves of EC keys (ES256, ES384, ES512, ES256K), by OpenSSL's name. */
const JOSE_CURVES: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521', secp256k1: 'secp256k1' };

/** The type of a key as an error names it, with its curve for an EC key (`ec P-256`). */
function keyKind(key: KeyObject): string {
  const type = key.asymmetricKeyType;
  if (type !== 'ec') return type ?? 'an unknown type';
  const curve = key.asymmetricKeyDetails?.namedCurve;
  return curve ? `ec ${JOSE_CURVES[curve] ?? curve}` : 'ec';
}

/**
 * Outside production a missing private key is generated once and kept in `DATA_DIR`, like the HS256
 * secret, so tokens survive restarts. An empty file (nothing but blank space) counts as missing, as
 * an empty secret file does; a file with something else that is not an Ed25519 private key is
 * refused with what to do, since replacing it would end the tokens it signed. The key is written
 * whole or not at all (see {@link writeFileAtomically}).
 */
function developmentPrivateKey(dataDir: string): KeyObject {
  const path = join(dataDir, PRIVATE_KEY_FILE);
  const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
  if (text.trim() !== '') {
    let kept: KeyObject;
    try {
      kept = createPrivateKey({ key: text, format: 'pem' });
    } catch {
      throw new Error('it holds no private key that can be read (damaged or cut short): delete it to have a new key generated (tokens signed with it stop working)');
    }
    if (kept.asymmetricKeyType !== 'ed25519') throw new Error(`it holds an ${keyKind(kept)} key, not Ed25519: delete it to have a new key generated (tokens signed with it stop working)`);
    return kept;
  }
  mkdirSync(dataDir, { recursive: true });
  const { privateKey } = generateKeyPairSync('ed25519');
  writeFileAtomically(path, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  return privateKey;
}

/**
 * Writes `content` to `path` (mode 0600) through a temporary file in the same folder, flushed to
 * disk and then renamed over `path`: a crash leaves the old file or the whole new one, never a part.
 */
function writeFileAtomically(path: string, content: string): void {
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fd = openSync(temporary, 'wx', 0o600);
    try {
      writeFileSync(fd, content);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, path);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
}

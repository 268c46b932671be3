import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

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
const PEM_BLOCK = /-----BEGIN ([A-Z ]+)-----[\s\S]*?-----END \1-----/g;

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
  if (algorithm === 'HS256') return Object.freeze({ algorithm, verifyKeys });
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
  const privateKey = ed25519Key('JWT_PRIVATE_KEY', unescape(raw.privateKey), 'private', problems);
  if (!privateKey) return Object.freeze({ algorithm: 'HS256', verifyKeys });
  return Object.freeze({ algorithm, privateKey, generated: false, verifyKeys });
}

/** The public keys of `JWT_VERIFY_KEYS`: PEM blocks, one after the other (blank lines between them are fine). */
function parseVerifyKeys(raw: string | undefined, problems: string[]): KeyObject[] {
  if (raw === undefined) return [];
  const blocks = unescape(raw).match(PEM_BLOCK) ?? [];
  if (blocks.length === 0) {
    problems.push('JWT_VERIFY_KEYS must hold Ed25519 public keys in PEM (-----BEGIN PUBLIC KEY----- …)');
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
    problems.push(`${name} must be an Ed25519 key (got ${key.asymmetricKeyType ?? 'an unknown type'}): EdDSA here means Ed25519`);
    return null;
  }
  return key;
}

/**
 * Outside production a missing private key is generated once and kept in `DATA_DIR`, like the HS256
 * secret, so tokens survive restarts.
 */
function developmentPrivateKey(dataDir: string): KeyObject {
  const path = join(dataDir, PRIVATE_KEY_FILE);
  if (existsSync(path)) return createPrivateKey(readFileSync(path, 'utf8'));
  mkdirSync(dataDir, { recursive: true });
  const { privateKey } = generateKeyPairSync('ed25519');
  writeFileSync(path, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  return privateKey;
}

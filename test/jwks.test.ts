import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, createRemoteJWKSet, decodeProtectedHeader, exportJWK, jwtVerify, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config/config.js';
import { LOGIN, ME, REFRESH, registerAccount } from './support/accounts.js';
import { startTestServer, type TestServer } from './support/server.js';
import { unusedPort } from './support/smtp.js';

const LOGOUT = 'mutation { logout }';
const pem = (key: KeyObject, type: 'pkcs8' | 'spki') => key.export({ type, format: 'pem' }).toString();
const newKey = () => generateKeyPairSync('ed25519');
async function kidOf(key: KeyObject): Promise<string> {
  return calculateJwkThumbprint(await exportJWK(key));
}

describe('EdDSA access tokens verified by another service through the JWKS', () => {
  const first = newKey();
  const second = newKey();
  let server: TestServer;
  let verifier: ReturnType<typeof createRemoteJWKSet>;
  // What a separate service does: only the JWKS URL, the issuer and the audience.
  const verifyElsewhere = (token: string, keys = verifier) =>
    jwtVerify(token, keys, { issuer: server.config.appUrl, audience: server.config.appUrl, algorithms: ['EdDSA'], typ: 'at+jwt' });
  const jwksUrl = () => new URL(`${server.origin}/.well-known/jwks.json`);
  const publishedKids = async () => JSON.parse((await server.raw('/.well-known/jwks.json')).text).keys.map((key: { kid: string }) => key.kid);

  beforeAll(async () => {
    // A fixed port: the verifier keeps one JWKS URL across the restarts of a rotation.
    server = await startTestServer({ PORT: String(await unusedPort()), JWT_ALGORITHM: 'EdDSA', JWT_PRIVATE_KEY: pem(first.privateKey, 'pkcs8') });
    // jose's defaults, as a service would have them: the key set is fetched again every 10 minutes,
    // and when a token names a key it lacks, unless the last fetch was less than 30 s ago.
    verifier = createRemoteJWKSet(jwksUrl());
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('publishes the public key with its RFC 7638 thumbprint as kid, cacheable, and nothing private', async () => {
    const response = await server.raw('/.well-known/jwks.json');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/jwk-set+json');
    expect(response.headers.get('cache-control')).toBe('public, max-age=300');
    const { keys } = JSON.parse(response.text);
    expect(keys).toEqual([{ kty: 'OKP', crv: 'Ed25519', x: (await exportJWK(first.publicKey)).x, kid: await kidOf(first.publicKey), alg: 'EdDSA', use: 'sig' }]);
    expect(response.text).not.toMatch(/"d"/);
  });

  it('answers HEAD with the headers of the GET and no body, and other methods with 405 naming GET and HEAD', async () => {
    const get = await fetch(`${server.origin}/.well-known/jwks.json`);
    const body = await get.text();
    const head = await fetch(`${server.origin}/.well-known/jwks.json`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(Buffer.byteLength(body)));
    expect(head.headers.get('content-type')).toBe('application/jwk-set+json');
    expect(await head.text()).toBe('');
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const refused = await fetch(`${server.origin}/.well-known/jwks.json`, { method, body: method === 'DELETE' ? undefined : '{}' });
      expect(refused.status, method).toBe(405);
      expect(refused.headers.get('allow'), method).toBe('GET, HEAD');
      await refused.text();
    }
  });

  it('signs tokens a separate verifier accepts; a session ended here still verifies there until it expires', async () => {
    const account = await registerAccount(server);
    expect(decodeProtectedHeader(account.accessToken)).toEqual({ alg: 'EdDSA', typ: 'at+jwt', kid: await kidOf(first.publicKey) });
    const { payload } = await verifyElsewhere(account.accessToken);
    expect(payload.sub).toBe(account.user.id);
    expect(payload.exp! - payload.iat!).toBe(server.config.tokenLifetimes.accessTokenSeconds);

    expect((await server.graphql(LOGOUT, {}, { token: account.accessToken })).data?.logout).toBe(true);
    expect((await server.graphql(ME, {}, { token: account.accessToken })).errors?.[0].extensions?.reason).toBe('SESSION_ENDED');
    // A remote verifier sees expiry, not revocation (README: keep ACCESS_TOKEN_TTL short).
    await expect(verifyElsewhere(account.accessToken)).resolves.toBeTruthy();
  });

  it('refuses forgeries: another key under our kid, and the public key used as an HS256 secret', async () => {
    const account = await registerAccount(server);
    const { payload } = await verifyElsewhere(account.accessToken);
    const kid = await kidOf(first.publicKey);
    const stranger = newKey();
    const forged = await new SignJWT(payload).setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt', kid }).sign(stranger.privateKey);
    const confused = await new SignJWT(payload)
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid })
      .sign(new TextEncoder().encode(pem(first.publicKey, 'spki')));
    const unnamed = await new SignJWT(payload).setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt' }).sign(first.privateKey);
    for (const token of [forged, confused]) {
      expect((await server.graphql(ME, {}, { token })).errors?.[0].extensions?.reason).toBe('TOKEN_INVALID');
      await expect(verifyElsewhere(token)).rejects.toThrow();
    }
    // Our own key without a kid: this server only takes tokens that name their key.
    expect((await server.graphql(ME, {}, { token: unnamed })).errors?.[0].extensions?.reason).toBe('TOKEN_INVALID');
  });

  it('rotates in two phases (README) without signing anyone out, and without a verifier refusing a new token', async () => {
    const account = await registerAccount(server);
    await verifyElsewhere(account.accessToken);
    // Another service that fetched the key set just before the rotation began (see the end).
    const hasty = createRemoteJWKSet(jwksUrl());
    await verifyElsewhere(account.accessToken, hasty);
    const [firstKid, secondKid] = [await kidOf(first.publicKey), await kidOf(second.publicKey)];
    // JWT_VERIFY_KEYS may list the signing key's own public key: it is published once.
    const bothPublicKeys = `${pem(first.publicKey, 'spki')}\n${pem(second.publicKey, 'spki')}`;

    // 1. Publish the new public key on every instance; tokens are still signed with the old key.
    await server.restart({ JWT_PRIVATE_KEY: pem(first.privateKey, 'pkcs8'), JWT_VERIFY_KEYS: bothPublicKeys });
    expect(await publishedKids()).toEqual([firstKid, secondKid]);
    const login = await server.graphql(LOGIN, { input: { identifier: account.user.email, password: account.password } });
    expect(decodeProtectedHeader(login.data!.login.accessToken).kid).toBe(firstKid);
    await expect(verifyElsewhere(account.accessToken)).resolves.toBeTruthy();

    // 2. Wait past the key set's max-age (5 minutes): every verifier has fetched it again since.
    // (The verifier's own refresh, without the wait.)
    await verifier.reload();

    // 3. Sign with the new key, keeping JWT_VERIFY_KEYS: the old key still verifies.
    await server.restart({ JWT_PRIVATE_KEY: pem(second.privateKey, 'pkcs8'), JWT_VERIFY_KEYS: bothPublicKeys });
    expect(await publishedKids()).toEqual([secondKid, firstKid]);
    // The token signed before the switch still works, here and for the verifier.
    expect((await server.graphql(ME, {}, { token: account.accessToken })).errors).toBeUndefined();
    await expect(verifyElsewhere(account.accessToken)).resolves.toBeTruthy();
    // What the refresh token gets is signed with the new key, and the verifier takes it at once:
    // its copy of the key set has the new key, so it need not fetch the set again.
    const refreshed = await server.graphql(REFRESH, { refreshToken: account.refreshToken });
    const next = refreshed.data!.refreshToken.accessToken as string;
    expect(decodeProtectedHeader(next).kid).toBe(secondKid);
    await expect(verifyElsewhere(next)).resolves.toBeTruthy();
    // Skipping the wait is what fails: a verifier whose copy predates step 1 and was fetched less
    // than 30 s ago refuses the new tokens until that cooldown is over.
    await expect(verifyElsewhere(next, hasty)).rejects.toMatchObject({ code: 'ERR_JWKS_NO_MATCHING_KEY' });
    // During a rolling restart, an instance not switched yet takes the new tokens too.
    await server.restart({ JWT_PRIVATE_KEY: pem(first.privateKey, 'pkcs8'), JWT_VERIFY_KEYS: bothPublicKeys });
    expect((await server.graphql(ME, {}, { token: next })).errors).toBeUndefined();
    await server.restart({ JWT_PRIVATE_KEY: pem(second.privateKey, 'pkcs8'), JWT_VERIFY_KEYS: bothPublicKeys });

    // 4. After ACCESS_TOKEN_TTL, drop the old key: its tokens stop working (TOKEN_INVALID: refresh once).
    await server.restart({ JWT_PRIVATE_KEY: pem(second.privateKey, 'pkcs8'), JWT_VERIFY_KEYS: pem(second.publicKey, 'spki') });
    expect(await publishedKids()).toEqual([secondKid]);
    expect((await server.graphql(ME, {}, { token: account.accessToken })).errors?.[0].extensions?.reason).toBe('TOKEN_INVALID');
    expect((await server.graphql(ME, {}, { token: next })).errors).toBeUndefined();
    await expect(verifyElsewhere(next)).resolves.toBeTruthy();
  });
});

describe('HS256 (the default)', () => {
  it('publishes an empty key set and signs tokens without a kid', async () => {
    const server = await startTestServer();
    try {
      expect(JSON.parse((await server.raw('/.well-known/jwks.json')).text)).toEqual({ keys: [] });
      const account = await registerAccount(server);
      expect(decodeProtectedHeader(account.accessToken)).toEqual({ alg: 'HS256', typ: 'at+jwt' });
    } finally {
      await server.stop();
    }
  });
});

describe('signing-key configuration', () => {
  const dataDir = () => mkdtempSync(join(tmpdir(), 'jwt-keys-'));
  const SECRET = 'a-production-secret-of-at-least-32-bytes!';
  const problemsOf = (env: Record<string, string>): readonly string[] => {
    try {
      loadConfig(env);
      return [];
    } catch (error) {
      if (error instanceof ConfigError) return error.problems;
      throw error;
    }
  };

  it('requires JWT_PRIVATE_KEY in production, and names what is wrong with a bad one', () => {
    const base = { NODE_ENV: 'production', JWT_SECRET: SECRET, DATA_DIR: dataDir(), JWT_ALGORITHM: 'EdDSA' };
    expect(problemsOf(base)).toEqual([expect.stringMatching(/^JWT_PRIVATE_KEY is required in production/)]);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    expect(problemsOf({ ...base, JWT_PRIVATE_KEY: pem(rsa.privateKey, 'pkcs8') })).toEqual(['JWT_PRIVATE_KEY must be an Ed25519 key (got rsa): EdDSA here means Ed25519']);
    const ed448 = generateKeyPairSync('ed448');
    expect(problemsOf({ ...base, JWT_PRIVATE_KEY: pem(ed448.privateKey, 'pkcs8') })).toEqual(['JWT_PRIVATE_KEY must be an Ed25519 key (got ed448): EdDSA here means Ed25519']);
    expect(problemsOf({ ...base, JWT_PRIVATE_KEY: 'not a key' })).toEqual([expect.stringMatching(/^JWT_PRIVATE_KEY must be an Ed25519 private key in PKCS#8 PEM/)]);
    expect(problemsOf({ ...base, JWT_PRIVATE_KEY: pem(newKey().publicKey, 'spki') })).toEqual([expect.stringMatching(/^JWT_PRIVATE_KEY must be an Ed25519 private key/)]);
    expect(problemsOf({ ...base, JWT_ALGORITHM: 'RS256' })).toEqual(['JWT_ALGORITHM must be HS256 or EdDSA (got "RS256")']);
    // With its line breaks escaped, as some environments hold a PEM, it is accepted.
    expect(problemsOf({ ...base, JWT_PRIVATE_KEY: pem(newKey().privateKey, 'pkcs8').replace(/\n/g, '\\n') })).toEqual([]);
    // Exactly one key: a second block, or text around the key, would otherwise be ignored unseen.
    const two = `${pem(newKey().privateKey, 'pkcs8')}\n${pem(newKey().privateKey, 'pkcs8')}`;
    expect(problemsOf({ ...base, JWT_PRIVATE_KEY: two })).toEqual([expect.stringMatching(/^JWT_PRIVATE_KEY holds 2 PEM blocks/)]);
    expect(problemsOf({ ...base, JWT_PRIVATE_KEY: `${pem(newKey().privateKey, 'pkcs8')}\ntrailing junk` })).toEqual([expect.stringMatching(/^JWT_PRIVATE_KEY holds text before or after its PEM key/)]);
  });

  it('refuses a generated key file that holds no Ed25519 key, saying what to do', () => {
    const directory = dataDir();
    writeFileSync(join(directory, 'jwt-ed25519-key.pem'), pem(generateKeyPairSync('ed448').privateKey, 'pkcs8'));
    expect(problemsOf({ DATA_DIR: directory, JWT_ALGORITHM: 'EdDSA' })).toEqual([expect.stringMatching(/jwt-ed25519-key\.pem cannot be used: it holds an ed448 key, not Ed25519: delete it/)]);
  });

  it('generates a new key over an empty key file, as over an empty secret file, and writes it whole with mode 0600', () => {
    for (const empty of ['', '\n  \n']) {
      const directory = dataDir();
      const path = join(directory, 'jwt-ed25519-key.pem');
      writeFileSync(path, empty, { mode: 0o644 });
      const config = loadConfig({ DATA_DIR: directory, JWT_ALGORITHM: 'EdDSA' });
      if (config.jwtSigning.algorithm !== 'EdDSA') throw new Error('expected EdDSA');
      expect(config.jwtSigning.generated).toBe(true);
      expect(readFileSync(path, 'utf8')).toBe(pem(config.jwtSigning.privateKey, 'pkcs8'));
      expect(statSync(path).mode & 0o777).toBe(0o600);
      // Written through a temporary file renamed into place: nothing else is left in the folder.
      expect(readdirSync(directory).filter((name) => name.includes('ed25519'))).toEqual(['jwt-ed25519-key.pem']);
    }
  });

  it('refuses a key file cut short or damaged, saying that deleting it has a new key generated', () => {
    const whole = pem(newKey().privateKey, 'pkcs8');
    for (const damaged of [whole.slice(0, whole.length / 2), 'garbage', whole.replace(/\n[^-]+\n/, '\nMC4CAQAwBQYDK2VwBCIEI\n')]) {
      const directory = dataDir();
      writeFileSync(join(directory, 'jwt-ed25519-key.pem'), damaged);
      expect(problemsOf({ DATA_DIR: directory, JWT_ALGORITHM: 'EdDSA' })).toEqual([
        `${join(directory, 'jwt-ed25519-key.pem')} cannot be used: it holds no private key that can be read (damaged or cut short): delete it to have a new key generated (tokens signed with it stop working)`,
      ]);
      // Left as it was, for the operator to look at.
      expect(readFileSync(join(directory, 'jwt-ed25519-key.pem'), 'utf8')).toBe(damaged);
    }
  });

  it('refuses private keys and non-keys in JWT_VERIFY_KEYS', () => {
    const base = { DATA_DIR: dataDir() };
    expect(problemsOf({ ...base, JWT_VERIFY_KEYS: pem(newKey().privateKey, 'pkcs8') })).toEqual(['JWT_VERIFY_KEYS (key 1) must be a public key: a private key does not belong here']);
    expect(problemsOf({ ...base, JWT_VERIFY_KEYS: 'junk' })).toEqual([expect.stringMatching(/^JWT_VERIFY_KEYS must hold Ed25519 public keys/)]);
    expect(problemsOf({ ...base, JWT_VERIFY_KEYS: `${pem(newKey().publicKey, 'spki')}\n\n${pem(newKey().publicKey, 'spki')}` })).toEqual([]);
    expect(problemsOf({ ...base, JWT_VERIFY_KEYS: `\n${pem(newKey().publicKey, 'spki')}\r\n\n` })).toEqual([]);
  });

  it('refuses text beside the PEM blocks of JWT_VERIFY_KEYS, and a block cut short, rather than skipping them', () => {
    const base = { DATA_DIR: dataDir() };
    const [one, two] = [pem(newKey().publicKey, 'spki'), pem(newKey().publicKey, 'spki')];
    const leftover = (where: string) => `JWT_VERIFY_KEYS holds text ${where} that is not part of a PEM key: list only PEM public keys, separated by blank lines`;
    expect(problemsOf({ ...base, JWT_VERIFY_KEYS: `old key:\n${one}` })).toEqual([leftover('before key 1')]);
    expect(problemsOf({ ...base, JWT_VERIFY_KEYS: `${one}\nMCowBQYDK2VwAyEA\n${two}` })).toEqual([leftover('between keys 1 and 2')]);
    expect(problemsOf({ ...base, JWT_VERIFY_KEYS: `${one}\n${two}\n,` })).toEqual([leftover('after key 2')]);

    const cut = (where: string) => `JWT_VERIFY_KEYS has a "-----BEGIN PUBLIC KEY-----" line without its "-----END PUBLIC KEY-----" line${where}: the key is cut short; paste it whole`;
    const truncated = two.slice(0, two.indexOf('-----END'));
    expect(problemsOf({ ...base, JWT_VERIFY_KEYS: `${one}\n${truncated}` })).toEqual([cut(' after key 1')]);
    expect(problemsOf({ ...base, JWT_VERIFY_KEYS: `${truncated}\n${one}` })).toEqual([cut(' before key 1')]);
    expect(problemsOf({ ...base, JWT_VERIFY_KEYS: truncated })).toEqual([cut('')]);
    // Escaped line breaks, as some environments hold a PEM, are read the same way.
    expect(problemsOf({ ...base, JWT_VERIFY_KEYS: `${one}\n${truncated}`.replace(/\n/g, '\\n') })).toEqual([cut(' after key 1')]);
  });

  it('refuses JWT_PRIVATE_KEY with HS256, which would not use it', () => {
    const key = pem(newKey().privateKey, 'pkcs8');
    const fix = 'set JWT_ALGORITHM=EdDSA to sign with it, or unset JWT_PRIVATE_KEY (its public key in JWT_VERIFY_KEYS keeps its tokens valid)';
    expect(problemsOf({ DATA_DIR: dataDir(), JWT_PRIVATE_KEY: key })).toEqual([`JWT_PRIVATE_KEY is set but JWT_ALGORITHM is HS256 (the default), which does not use it: ${fix}`]);
    expect(problemsOf({ NODE_ENV: 'production', JWT_SECRET: SECRET, DATA_DIR: dataDir(), JWT_ALGORITHM: 'HS256', JWT_PRIVATE_KEY: key })).toEqual([
      `JWT_PRIVATE_KEY is set but JWT_ALGORITHM is HS256, which does not use it: ${fix}`,
    ]);
    // Public keys of a former EdDSA key keep verifying its tokens under HS256.
    expect(problemsOf({ DATA_DIR: dataDir(), JWT_VERIFY_KEYS: pem(newKey().publicKey, 'spki') })).toEqual([]);
  });

  it('names the curve of an EC key', () => {
    const base = { DATA_DIR: dataDir(), JWT_ALGORITHM: 'EdDSA' };
    const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expect(problemsOf({ ...base, JWT_PRIVATE_KEY: pem(p256.privateKey, 'pkcs8') })).toEqual(['JWT_PRIVATE_KEY must be an Ed25519 key (got ec P-256): EdDSA here means Ed25519']);
    const secp256k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
    expect(problemsOf({ ...base, JWT_VERIFY_KEYS: pem(secp256k1.publicKey, 'spki') })).toEqual(['JWT_VERIFY_KEYS (key 1) must be an Ed25519 key (got ec secp256k1): EdDSA here means Ed25519']);
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    expect(problemsOf({ ...base, JWT_VERIFY_KEYS: pem(p384.publicKey, 'spki') })).toEqual(['JWT_VERIFY_KEYS (key 1) must be an Ed25519 key (got ec P-384): EdDSA here means Ed25519']);
  });

  it('outside production generates the Ed25519 key once and keeps it in DATA_DIR', () => {
    const directory = dataDir();
    const one = loadConfig({ DATA_DIR: directory, JWT_ALGORITHM: 'EdDSA' });
    const two = loadConfig({ DATA_DIR: directory, JWT_ALGORITHM: 'EdDSA' });
    if (one.jwtSigning.algorithm !== 'EdDSA' || two.jwtSigning.algorithm !== 'EdDSA') throw new Error('expected EdDSA');
    expect(one.jwtSigning.generated).toBe(true);
    expect(pem(two.jwtSigning.privateKey, 'pkcs8')).toBe(pem(one.jwtSigning.privateKey, 'pkcs8'));
  });
});

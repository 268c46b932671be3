import { createHmac, randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ME, registerAccount, type SignedInAccount } from '../support/accounts.js';
import { type CallOptions, startTestServer, type TestServer } from '../support/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.stop());

interface AccessTokenPayload {
  sub: string;
  sid: string;
  iss: string;
  aud: string | string[];
  iat: number;
  exp: number;
  [claim: string]: unknown;
}

function base64url(value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

/** The payload of a compact JWT, without checking anything. */
function decodePayload(token: string): AccessTokenPayload {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

function hmacSignature(signingInput: string, key: string | Buffer): string {
  return createHmac('sha256', key).update(signingInput).digest('base64url');
}

/** A compact JWS built by hand: any header, any payload, HMAC-SHA256 over them with `key`. */
function handSigned(header: Record<string, unknown>, payload: Record<string, unknown>, key: string | Buffer): string {
  const signingInput = `${base64url(header)}.${base64url(payload)}`;
  return `${signingInput}.${hmacSignature(signingInput, key)}`;
}

interface SignOptions {
  secret?: string;
  header?: Record<string, unknown>;
  sub?: string;
  sid?: string | null;
  iss?: string;
  aud?: string;
  iat?: number;
  exp?: number;
}

/**
 * Signs an access token the way the server does (HS256, typ at+jwt, iss = aud = APP_URL, 15
 * minutes) for `account`'s live session, with `options` overriding one thing at a time.
 */
async function signAccessToken(account: SignedInAccount, options: SignOptions = {}): Promise<string> {
  const real = decodePayload(account.accessToken);
  const now = Math.floor(Date.now() / 1000);
  const sid = options.sid === undefined ? real.sid : options.sid;
  const jwt = new SignJWT(sid === null ? {} : { sid })
    .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', ...options.header } as { alg: string })
    .setSubject(options.sub ?? real.sub)
    .setIssuer(options.iss ?? server.config.appUrl)
    .setAudience(options.aud ?? server.config.appUrl)
    .setIssuedAt(options.iat ?? now)
    .setExpirationTime(options.exp ?? now + 15 * 60);
  return jwt.sign(new TextEncoder().encode(options.secret ?? server.config.jwtSecret));
}

/** Calls `me` with a raw `Authorization` header. */
function meWithAuthorization(authorization: string) {
  return server.graphql(ME, {}, { headers: { authorization } });
}

/** Asserts `me` refuses the call with UNAUTHENTICATED (never INTERNAL_SERVER_ERROR). */
async function expectRefused(options: CallOptions): Promise<void> {
  const response = await server.graphql(ME, {}, options);
  expect(response.errors?.[0]?.extensions?.code).not.toBe('INTERNAL_SERVER_ERROR');
  expect(response.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  expect(response.data ?? null).toBeNull();
}

async function expectAccepted(token: string, userId: string): Promise<void> {
  const response = await server.graphql(ME, {}, { token });
  expect(response.errors).toBeUndefined();
  expect(response.data?.me.id).toBe(userId);
}

describe('access tokens', () => {
  it('accepts a token signed with the right secret and claims for a live session (positive control)', async () => {
    const account = await registerAccount(server);
    await expectAccepted(account.accessToken, account.user.id);
    const now = Math.floor(Date.now() / 1000);
    const token = await signAccessToken(account, { iat: now - 10, exp: now + 10 * 60 });
    expect(token).not.toBe(account.accessToken);
    await expectAccepted(token, account.user.id);
    // The hand-built HMAC path used by the forgery tests below also produces an accepted token.
    const [headerPart, payloadPart] = account.accessToken.split('.');
    const resigned = `${headerPart}.${payloadPart}.${hmacSignature(`${headerPart}.${payloadPart}`, server.config.jwtSecret)}`;
    expect(resigned).toBe(account.accessToken);
  });

  it('refuses a token with alg "none"', async () => {
    const account = await registerAccount(server);
    const [, payload] = account.accessToken.split('.');
    for (const alg of ['none', 'None', 'NONE']) {
      await expectRefused({ token: `${base64url({ alg, typ: 'at+jwt' })}.${payload}.` });
    }
    // Also without the trailing dot and with the original signature left on.
    await expectRefused({ headers: { authorization: `Bearer ${base64url({ alg: 'none', typ: 'at+jwt' })}.${payload}` } });
    await expectRefused({ token: `${base64url({ alg: 'none', typ: 'at+jwt' })}.${payload}.${account.accessToken.split('.')[2]}` });
  });

  it('refuses a token signed with a different secret', async () => {
    const account = await registerAccount(server);
    await expectRefused({ token: await signAccessToken(account, { secret: randomBytes(48).toString('base64url') }) });
    await expectRefused({ token: await signAccessToken(account, { secret: `${server.config.jwtSecret}x` }) });
  });

  it('refuses a real token whose payload was edited, keeping the original signature', async () => {
    const account = await registerAccount(server);
    const other = await registerAccount(server);
    const [header, , signature] = account.accessToken.split('.');
    const payload = decodePayload(account.accessToken);
    const otherPayload = decodePayload(other.accessToken);

    await expectRefused({ token: `${header}.${base64url({ ...payload, sub: other.user.id })}.${signature}` });
    await expectRefused({ token: `${header}.${base64url({ ...payload, sub: other.user.id, sid: otherPayload.sid })}.${signature}` });
    await expectRefused({ token: `${header}.${base64url({ ...payload, exp: payload.exp + 365 * 24 * 3600 })}.${signature}` });
    await expectRefused({ token: `${header}.${base64url({ ...payload, role: 'ADMIN' })}.${signature}` });
    // The untouched token still works: the edit is what was refused.
    await expectAccepted(account.accessToken, account.user.id);
  });

  it('refuses an expired token', async () => {
    const account = await registerAccount(server);
    const now = Math.floor(Date.now() / 1000);
    await expectRefused({ token: await signAccessToken(account, { iat: now - 3600, exp: now - 60 }) });
    await expectRefused({ token: await signAccessToken(account, { iat: now - 16 * 60, exp: now - 1 }) });
  });

  it('refuses a token of type "JWT" instead of "at+jwt"', async () => {
    const account = await registerAccount(server);
    await expectRefused({ token: await signAccessToken(account, { header: { typ: 'JWT' } }) });
    const real = decodePayload(account.accessToken);
    await expectRefused({ token: handSigned({ alg: 'HS256' }, real, server.config.jwtSecret) });
  });

  it('refuses a token with the wrong issuer', async () => {
    const account = await registerAccount(server);
    await expectRefused({ token: await signAccessToken(account, { iss: 'https://evil.example.com' }) });
  });

  it('refuses a token with the wrong audience', async () => {
    const account = await registerAccount(server);
    await expectRefused({ token: await signAccessToken(account, { aud: 'https://other-service.example.com' }) });
  });

  it('refuses a token without a sid claim', async () => {
    const account = await registerAccount(server);
    await expectRefused({ token: await signAccessToken(account, { sid: null }) });
  });

  it('refuses a token whose sid or sub is not a real session of that user', async () => {
    const account = await registerAccount(server);
    const other = await registerAccount(server);
    await expectRefused({ token: await signAccessToken(account, { sid: decodePayload(other.accessToken).sid }) });
    await expectRefused({ token: await signAccessToken(account, { sid: 'not-a-uuid' }) });
    await expectRefused({ token: await signAccessToken(account, { sub: 'not-a-uuid' }) });
    const real = decodePayload(account.accessToken);
    await expectRefused({ token: handSigned({ alg: 'HS256', typ: 'at+jwt' }, { ...real, sid: 12345 }, server.config.jwtSecret) });
    await expectRefused({ token: handSigned({ alg: 'HS256', typ: 'at+jwt' }, { ...real, sub: { id: real.sub } }, server.config.jwtSecret) });
  });

  it('refuses an RS256 header on a token signed with HMAC (algorithm confusion)', async () => {
    const account = await registerAccount(server);
    const real = decodePayload(account.accessToken);
    await expectRefused({ token: handSigned({ alg: 'RS256', typ: 'at+jwt' }, real, server.config.jwtSecret) });
    await expectRefused({ token: handSigned({ alg: 'HS512', typ: 'at+jwt' }, real, server.config.jwtSecret) });
  });

  it('refuses a forged token whose kid header points at a file', async () => {
    const account = await registerAccount(server);
    const real = decodePayload(account.accessToken);
    for (const key of ['', randomBytes(32).toString('base64url'), 'root:x:0:0:root:/root:/bin/bash\n']) {
      await expectRefused({ token: handSigned({ alg: 'HS256', typ: 'at+jwt', kid: '../../etc/passwd' }, real, key) });
    }
    await expectRefused({ token: handSigned({ alg: 'HS256', typ: 'at+jwt', kid: '/dev/null' }, real, '') });
  });

  it('refuses malformed Authorization headers', async () => {
    const account = await registerAccount(server);
    const malformed = [
      'Bearer',
      'Bearer ',
      'Basic xxx',
      `Basic ${Buffer.from(`${account.user.email}:${account.password}`).toString('base64')}`,
      `Token ${account.accessToken}`,
      `${account.accessToken}`,
      `Bearer ${account.accessToken} ${account.accessToken}`,
      `Bearer ${account.accessToken}.extra`,
      'Bearer garbage',
      'Bearer a.b.c',
      'Bearer ...',
      `Bearer ${base64url('not json')}.${base64url('not json')}.${base64url('sig')}`,
      `Bearer ${base64url('null')}.${base64url('null')}.`,
      `Bearer ${base64url('[]')}.${base64url('[]')}.AAAA`,
      `Bearer ${randomBytes(300).toString('base64url')}`,
      'Bearer \u00e9\u00e9\u00e9',
    ];
    for (const authorization of malformed) {
      const response = await meWithAuthorization(authorization);
      expect(response.errors?.[0]?.extensions?.code, authorization).toBe('UNAUTHENTICATED');
      expect(response.data ?? null).toBeNull();
    }
  });

  it('stops accepting the token of a user who was deactivated, on the next request', async () => {
    const account = await registerAccount(server);
    await expectAccepted(account.accessToken, account.user.id);
    await server.sql('update users set active = false where id = ?', [account.user.id]);
    await expectRefused({ token: account.accessToken });
    await expectRefused({ token: await signAccessToken(account) });
  });

  it('stops accepting the token of a user who was deleted, on the next request', async () => {
    const account = await registerAccount(server);
    await expectAccepted(account.accessToken, account.user.id);
    await server.sql('delete from users where id = ?', [account.user.id]);
    await expectRefused({ token: account.accessToken });
    await expectRefused({ token: await signAccessToken(account) });
  });
});

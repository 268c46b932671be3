import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH_PAYLOAD_FIELDS, newAccountInput, REGISTER } from './support/accounts.js';
import { type RawResponse, startTestServer, type TestServer } from './support/server.js';

// The opt-in browser mode: a client sending `Refresh-Token-Transport: cookie` gets its refresh token
// only as an HttpOnly cookie and presents it the same way, so page script (and whatever XSS runs in
// it) never sees it. Driven here as a browser and as an attacker's page would drive it; the example
// SPA's Chromium test (test/example-spa.browser.test.ts) drives it in a real browser.
const SPA = 'http://spa.example.test';
const STRANGER = 'http://evil.example.test';
const COOKIE_MODE = { 'refresh-token-transport': 'cookie' };
const COOKIE = '__Host-refresh_token';
const LOGIN = `mutation Login($input: LoginInput!) { login(input: $input) { ${AUTH_PAYLOAD_FIELDS} } }`;
const REFRESH = `mutation Refresh($refreshToken: String!) { refreshToken(refreshToken: $refreshToken) { ${AUTH_PAYLOAD_FIELDS} } }`;

let server: TestServer;
let open: TestServer;
beforeAll(async () => {
  [server, open] = await Promise.all([startTestServer({ CORS_ORIGINS: SPA }), startTestServer()]);
});
afterAll(() => Promise.all([server?.stop(), open?.stop()]));

/** POSTs one operation as a browser page at `origin` would, with extra headers. */
function post(target: TestServer, query: string, variables: Record<string, unknown>, headers: Record<string, string> = {}): Promise<RawResponse> {
  return target.postJson(JSON.stringify({ query, variables }), headers);
}

/** The refresh-token cookie a response sets, with its attributes, or undefined. */
function refreshCookieOf(response: RawResponse): { value: string; attributes: string[] } | undefined {
  const header = response.headers.getSetCookie().find((cookie) => cookie.startsWith(`${COOKIE}=`));
  if (!header) return undefined;
  const [pair, ...attributes] = header.split(';').map((part) => part.trim());
  return { value: pair.slice(COOKIE.length + 1), attributes };
}

/** Registers an account through `target` and returns its identifier and password. */
async function account(target: TestServer): Promise<{ identifier: string; password: string }> {
  const input = newAccountInput();
  const response = await post(target, REGISTER, { input });
  expect(response.json.errors).toBeUndefined();
  return { identifier: input.email as string, password: input.password as string };
}

async function sessionRows(target: TestServer, email: string): Promise<number> {
  const [row] = await target.sql<{ count: string }>('select count(*) from sessions s join users u on u.id = s.user_id where u.email = ?', [email]);
  return Number(row.count);
}

describe('cookie mode', () => {
  it('hands the refresh token over only as an HttpOnly, Secure, SameSite=Strict, host-only (__Host-) cookie', async () => {
    const { identifier, password } = await account(server);
    const response = await post(server, LOGIN, { input: { identifier, password } }, { ...COOKIE_MODE, origin: SPA });
    const payload = response.json.data.login;
    expect(payload.refreshToken).toBe('');
    expect(payload.accessToken).toEqual(expect.any(String));
    const cookie = refreshCookieOf(response);
    expect(cookie?.value).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(cookie?.attributes).toEqual(expect.arrayContaining(['HttpOnly', 'Secure', 'SameSite=Strict', 'Path=/']));
    expect(cookie?.attributes.some((attribute) => /^domain=/i.test(attribute))).toBe(false);
    const maxAge = Number(cookie?.attributes.find((attribute) => attribute.startsWith('Max-Age='))?.slice(8));
    expect(Math.abs(Date.now() + maxAge * 1000 - Date.parse(payload.refreshTokenExpiresAt))).toBeLessThan(2000);
    // The credentialed CORS answer names the origin, never `*`.
    expect(response.headers.get('access-control-allow-origin')).toBe(SPA);
    expect(response.headers.get('access-control-allow-credentials')).toBe('true');
  });

  it('refreshes from the cookie alone, rotating it; a dead cookie is cleared', async () => {
    const { identifier, password } = await account(server);
    const login = await post(server, LOGIN, { input: { identifier, password } }, { ...COOKIE_MODE, origin: SPA });
    const first = refreshCookieOf(login)!.value;
    const refreshed = await post(server, REFRESH, { refreshToken: '' }, { ...COOKIE_MODE, origin: SPA, cookie: `${COOKIE}=${first}` });
    expect(refreshed.json.errors).toBeUndefined();
    expect(refreshed.json.data.refreshToken.refreshToken).toBe('');
    const second = refreshCookieOf(refreshed)!.value;
    expect(second).not.toBe(first);

    await server.sql("update sessions set revoked_at = now(), revoked_reason = 'REVOKED' where revoked_at is null and user_id = (select id from users where email = ?)", [identifier]);
    const dead = await post(server, REFRESH, { refreshToken: '' }, { ...COOKIE_MODE, origin: SPA, cookie: `${COOKIE}=${second}` });
    expect(dead.json.errors[0].extensions.code).toBe('UNAUTHENTICATED');
    expect(refreshCookieOf(dead)).toMatchObject({ value: '', attributes: expect.arrayContaining(['Max-Age=0', 'Path=/']) });
  });

  it('ignores the cookie of a request that did not ask for cookie mode', async () => {
    const { identifier, password } = await account(server);
    const login = await post(server, LOGIN, { input: { identifier, password } }, { ...COOKIE_MODE, origin: SPA });
    const cookie = `${COOKIE}=${refreshCookieOf(login)!.value}`;
    const refreshed = await post(server, REFRESH, { refreshToken: '' }, { origin: SPA, cookie });
    expect(refreshed.json.errors[0].extensions.code).toBe('UNAUTHENTICATED');
    expect(refreshCookieOf(refreshed)).toBeUndefined();
  });

  it('clears the cookie on logout', async () => {
    const { identifier, password } = await account(server);
    const login = await post(server, LOGIN, { input: { identifier, password } }, { ...COOKIE_MODE, origin: SPA });
    const logout = await post(server, 'mutation { logout }', {}, { ...COOKIE_MODE, origin: SPA, authorization: `Bearer ${login.json.data.login.accessToken}` });
    expect(logout.json.data.logout).toBe(true);
    expect(refreshCookieOf(logout)).toMatchObject({ value: '', attributes: expect.arrayContaining(['Max-Age=0']) });
  });

  it('native clients keep the body field and get no cookie', async () => {
    const { identifier, password } = await account(server);
    const login = await post(server, LOGIN, { input: { identifier, password } });
    expect(login.json.data.login.refreshToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(refreshCookieOf(login)).toBeUndefined();
  });
});

describe('who may use the cookie', () => {
  it('refuses cookie mode to an origin outside CORS_ORIGINS before signing anyone in', async () => {
    const { identifier, password } = await account(server);
    const before = await sessionRows(server, identifier);
    const response = await post(server, LOGIN, { input: { identifier, password } }, { ...COOKIE_MODE, origin: STRANGER });
    expect(response.json.errors[0].extensions.code).toBe('FORBIDDEN');
    expect(response.json.data).toBeNull();
    expect(refreshCookieOf(response)).toBeUndefined();
    expect(response.headers.get('access-control-allow-origin')).toBeNull();
    expect(await sessionRows(server, identifier)).toBe(before);
  });

  it('a stranger page presenting the cookie (same site, other origin) cannot refresh with it', async () => {
    const { identifier, password } = await account(server);
    const login = await post(server, LOGIN, { input: { identifier, password } }, { ...COOKIE_MODE, origin: SPA });
    const cookie = `${COOKIE}=${refreshCookieOf(login)!.value}`;
    const stolen = await post(server, REFRESH, { refreshToken: '' }, { ...COOKIE_MODE, origin: STRANGER, cookie });
    expect(stolen.json.errors[0].extensions.code).toBe('FORBIDDEN');
    expect(refreshCookieOf(stolen)).toBeUndefined();
  });

  it('a second cookie of the same name (planted by a sibling subdomain in a browser without prefix checks) makes the server trust neither', async () => {
    const { identifier, password } = await account(server);
    const victim = refreshCookieOf(await post(server, LOGIN, { input: { identifier, password } }, { ...COOKIE_MODE, origin: SPA }))!.value;
    const attacker = await account(server);
    const planted = refreshCookieOf(await post(server, LOGIN, { input: { identifier: attacker.identifier, password: attacker.password } }, { ...COOKIE_MODE, origin: SPA }))!.value;
    for (const cookie of [`${COOKIE}=${planted}; ${COOKIE}=${victim}`, `${COOKIE}=${victim}; other=1; ${COOKIE}=${planted}`]) {
      const answer = await post(server, REFRESH, { refreshToken: '' }, { ...COOKIE_MODE, origin: SPA, cookie });
      expect(answer.json.data).toBeNull();
      expect(answer.json.errors[0].extensions.code).toBe('UNAUTHENTICATED');
    }
    // Control: the victim's cookie alone still works (refusing the pair spent nothing).
    const alone = await post(server, REFRESH, { refreshToken: '' }, { ...COOKIE_MODE, origin: SPA, cookie: `${COOKIE}=${victim}` });
    expect(alone.json.errors).toBeUndefined();
  });

  it('a cross-site form post (no preflight, no JSON) is refused by CSRF prevention, cookie or not', async () => {
    const { identifier, password } = await account(server);
    const login = await post(server, LOGIN, { input: { identifier, password } }, { ...COOKIE_MODE, origin: SPA });
    const cookie = `${COOKIE}=${refreshCookieOf(login)!.value}`;
    const body = new URLSearchParams({ query: 'mutation { refreshToken(refreshToken: "") { accessToken } }' }).toString();
    const forged = await server.raw('/graphql', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: STRANGER, cookie }, body });
    expect(forged.status).toBe(400);
    expect(refreshCookieOf(forged)).toBeUndefined();
  });

  it('without CORS_ORIGINS: only this server\'s own origin and clients without an Origin get the cookie', async () => {
    const { identifier, password } = await account(open);
    const crossOrigin = await post(open, LOGIN, { input: { identifier, password } }, { ...COOKIE_MODE, origin: SPA });
    expect(crossOrigin.json.errors[0].extensions.code).toBe('FORBIDDEN');
    const sameOrigin = await post(open, LOGIN, { input: { identifier, password } }, { ...COOKIE_MODE, origin: open.origin });
    expect(refreshCookieOf(sameOrigin)?.value).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const noOrigin = await post(open, LOGIN, { input: { identifier, password } }, COOKIE_MODE);
    expect(refreshCookieOf(noOrigin)?.value).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });
});

describe('CORS', () => {
  const preflight = (target: TestServer, origin: string) =>
    target.raw('/graphql', {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type, authorization, refresh-token-transport' },
    });

  it('with CORS_ORIGINS: listed origins get a credentialed preflight; others get no CORS headers', async () => {
    const listed = await preflight(server, SPA);
    expect(listed.status).toBe(204);
    expect(listed.headers.get('access-control-allow-origin')).toBe(SPA);
    expect(listed.headers.get('access-control-allow-credentials')).toBe('true');
    expect(listed.headers.get('access-control-allow-headers')).toContain('refresh-token-transport');
    expect(listed.headers.get('vary')).toMatch(/origin/i);
    const other = await preflight(server, STRANGER);
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    expect(other.headers.get('access-control-allow-credentials')).toBeNull();
  });

  it('without CORS_ORIGINS: any origin, never credentials', async () => {
    const answer = await preflight(open, STRANGER);
    expect(answer.headers.get('access-control-allow-origin')).toBe('*');
    expect(answer.headers.get('access-control-allow-credentials')).toBeNull();
  });
});

import { createHash } from 'node:crypto';
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
// Path-limited: only the GraphQL endpoint ever receives it (not pages, assets or other backends of the host).
const COOKIE = '__Secure-refresh_token';
// A __Host- cookie (which no other host can set) holding the token's SHA-256: COOKIE counts only with it.
const BINDING = '__Host-refresh_binding';
// The cookie of earlier versions (Path=/): still read when COOKIE is absent, and expired when seen.
const LEGACY = '__Host-refresh_token';
const bindingOf = (token: string) => createHash('sha256').update(token).digest('base64url');
/** The Cookie header a browser sends with the refresh-token cookie `token` this server set: the token and its binding. */
const sent = (token: string) => `${COOKIE}=${token}; ${BINDING}=${bindingOf(token)}`;
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

/** The refresh-token cookie (or the cookie `name`) a response sets, with its attributes, or undefined. */
function refreshCookieOf(response: RawResponse, name = COOKIE): { value: string; attributes: string[] } | undefined {
  const headers = response.headers.getSetCookie().filter((cookie) => cookie.startsWith(`${name}=`));
  expect(headers.length).toBeLessThanOrEqual(1);
  if (!headers[0]) return undefined;
  const [pair, ...attributes] = headers[0].split(';').map((part) => part.trim());
  return { value: pair.slice(name.length + 1), attributes };
}

/** A cookie's attributes but Max-Age, in a fixed order. */
const withoutMaxAge = (attributes: string[] | undefined) => (attributes ?? []).filter((attribute) => !attribute.startsWith('Max-Age=')).sort();
/** Exactly what the server's refresh-token cookie carries besides its value and Max-Age: no Domain (host-only), no Expires. */
const COOKIE_ATTRIBUTES = ['HttpOnly', 'Path=/graphql', 'SameSite=Strict', 'Secure'];
/** What expires a legacy cookie: the same name, Path=/ and prefix attributes, Max-Age=0. */
const LEGACY_EXPIRY = `${LEGACY}=; Max-Age=0; Path=/; HttpOnly; Secure; SameSite=Strict`;

/** Signs `who` in through cookie mode from the SPA and returns the refresh token its cookie holds. */
async function cookieLogin(who: { identifier: string; password: string }): Promise<string> {
  const login = await post(server, LOGIN, { input: who }, { ...COOKIE_MODE, origin: SPA });
  expect(login.json.errors).toBeUndefined();
  return refreshCookieOf(login)!.value;
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
  it('hands the refresh token over only as an HttpOnly, Secure, SameSite=Strict, host-only __Secure- cookie for the GraphQL path', async () => {
    const { identifier, password } = await account(server);
    const response = await post(server, LOGIN, { input: { identifier, password } }, { ...COOKIE_MODE, origin: SPA });
    const payload = response.json.data.login;
    expect(payload.refreshToken).toBe('');
    expect(payload.accessToken).toEqual(expect.any(String));
    const cookie = refreshCookieOf(response);
    expect(cookie?.value).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // Exactly these attributes: HttpOnly, Secure, SameSite=Strict, Path=/graphql, Max-Age; no Domain.
    expect(withoutMaxAge(cookie?.attributes)).toEqual(COOKIE_ATTRIBUTES);
    expect(cookie?.attributes.filter((attribute) => attribute.startsWith('Max-Age='))).toHaveLength(1);
    expect(cookie?.attributes.some((attribute) => /^domain=/i.test(attribute))).toBe(false);
    const maxAge = Number(cookie?.attributes.find((attribute) => attribute.startsWith('Max-Age='))?.slice(8));
    expect(Math.abs(Date.now() + maxAge * 1000 - Date.parse(payload.refreshTokenExpiresAt))).toBeLessThan(2000);
    // The binding beside it: the same lifetime, on Path=/, host-only; no legacy cookie was presented, so none is expired.
    const binding = refreshCookieOf(response, BINDING);
    expect(binding?.value).toBe(bindingOf(cookie!.value));
    expect(withoutMaxAge(binding?.attributes)).toEqual(['HttpOnly', 'Path=/', 'SameSite=Strict', 'Secure']);
    expect(binding?.attributes.find((attribute) => attribute.startsWith('Max-Age='))).toBe(`Max-Age=${maxAge}`);
    expect(response.headers.getSetCookie()).toHaveLength(2);
    // The credentialed CORS answer names the origin, never `*`.
    expect(response.headers.get('access-control-allow-origin')).toBe(SPA);
    expect(response.headers.get('access-control-allow-credentials')).toBe('true');
    expect(response.headers.get('vary')).toBe('Origin');
  });

  it('refreshes from the cookie alone, rotating it; a dead cookie is cleared', async () => {
    const { identifier, password } = await account(server);
    const login = await post(server, LOGIN, { input: { identifier, password } }, { ...COOKIE_MODE, origin: SPA });
    const first = refreshCookieOf(login)!.value;
    const refreshed = await post(server, REFRESH, { refreshToken: '' }, { ...COOKIE_MODE, origin: SPA, cookie: sent(first) });
    expect(refreshed.json.errors).toBeUndefined();
    expect(refreshed.json.data.refreshToken.refreshToken).toBe('');
    const second = refreshCookieOf(refreshed)!.value;
    expect(second).not.toBe(first);

    await server.sql("update sessions set revoked_at = now(), revoked_reason = 'REVOKED' where revoked_at is null and user_id = (select id from users where email = ?)", [identifier]);
    const dead = await post(server, REFRESH, { refreshToken: '' }, { ...COOKIE_MODE, origin: SPA, cookie: sent(second) });
    expect(dead.json.errors[0].extensions.code).toBe('UNAUTHENTICATED');
    expect(refreshCookieOf(dead)).toMatchObject({ value: '', attributes: expect.arrayContaining(['Max-Age=0']) });
    expect(withoutMaxAge(refreshCookieOf(dead)?.attributes)).toEqual(COOKIE_ATTRIBUTES);
    expect(refreshCookieOf(dead, BINDING)).toMatchObject({ value: '', attributes: expect.arrayContaining(['Max-Age=0', 'Path=/']) });
    expect(dead.headers.getSetCookie()).toHaveLength(2);
  });

  it('ignores the cookie of a request that did not ask for cookie mode', async () => {
    const { identifier, password } = await account(server);
    const login = await post(server, LOGIN, { input: { identifier, password } }, { ...COOKIE_MODE, origin: SPA });
    const cookie = sent(refreshCookieOf(login)!.value);
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
    expect(withoutMaxAge(refreshCookieOf(logout)?.attributes)).toEqual(COOKIE_ATTRIBUTES);
  });

  it('native clients keep the body field and get no cookie', async () => {
    const { identifier, password } = await account(server);
    const login = await post(server, LOGIN, { input: { identifier, password } });
    expect(login.json.data.login.refreshToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(refreshCookieOf(login)).toBeUndefined();
  });
});

describe('the cookie of earlier versions (__Host-refresh_token, Path=/)', () => {
  it('is still accepted when the new cookie is absent; the answer sets the new one and expires the old', async () => {
    const who = await account(server);
    const token = await cookieLogin(who);
    const refreshed = await post(server, REFRESH, { refreshToken: '' }, { ...COOKIE_MODE, origin: SPA, cookie: `other=1; ${LEGACY}=${token}` });
    expect(refreshed.json.errors).toBeUndefined();
    expect(refreshed.json.data.refreshToken.user.email).toBe(who.identifier);
    expect(refreshed.json.data.refreshToken.refreshToken).toBe('');
    const renewed = refreshCookieOf(refreshed);
    expect(renewed?.value).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(renewed?.value).not.toBe(token);
    expect(withoutMaxAge(renewed?.attributes)).toEqual(COOKIE_ATTRIBUTES);
    expect(refreshed.headers.getSetCookie()).toEqual(expect.arrayContaining([LEGACY_EXPIRY]));
    expect(refreshed.headers.getSetCookie()).toHaveLength(3);
    // The new cookie (with its binding) alone works from then on.
    const next = await post(server, REFRESH, { refreshToken: '' }, { ...COOKIE_MODE, origin: SPA, cookie: sent(renewed!.value) });
    expect(next.json.errors).toBeUndefined();
    expect(next.headers.getSetCookie()).toHaveLength(2);
  });

  it('is expired by a sign-in, a logout and a refused refresh that carried it', async () => {
    const who = await account(server);
    const token = await cookieLogin(who);
    const login = await post(server, LOGIN, { input: who }, { ...COOKIE_MODE, origin: SPA, cookie: `${LEGACY}=stale` });
    expect(refreshCookieOf(login)?.value).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(login.headers.getSetCookie()).toEqual(expect.arrayContaining([LEGACY_EXPIRY]));

    const logout = await post(server, 'mutation { logout }', {}, { ...COOKIE_MODE, origin: SPA, authorization: `Bearer ${login.json.data.login.accessToken}`, cookie: `${LEGACY}=${token}` });
    expect(logout.json.data.logout).toBe(true);
    expect(refreshCookieOf(logout)).toMatchObject({ value: '', attributes: expect.arrayContaining(['Max-Age=0']) });
    expect(logout.headers.getSetCookie()).toEqual(expect.arrayContaining([LEGACY_EXPIRY]));

    const dead = await post(server, REFRESH, { refreshToken: '' }, { ...COOKIE_MODE, origin: SPA, cookie: `${LEGACY}=${'x'.repeat(43)}` });
    expect(dead.json.errors[0].extensions.code).toBe('UNAUTHENTICATED');
    expect(refreshCookieOf(dead)).toMatchObject({ value: '', attributes: expect.arrayContaining(['Max-Age=0']) });
    expect(dead.headers.getSetCookie()).toEqual(expect.arrayContaining([LEGACY_EXPIRY]));
    expect(dead.headers.getSetCookie()).toHaveLength(3);
  });

  it('the new cookie wins over the old one; two old ones are refused, and of two new ones the bound one is used, never the old', async () => {
    const mine = await account(server);
    const other = await account(server);
    const [current, legacy] = [await cookieLogin(mine), await cookieLogin(other)];
    const both = await post(server, REFRESH, { refreshToken: '' }, { ...COOKIE_MODE, origin: SPA, cookie: `${LEGACY}=${legacy}; ${sent(current)}` });
    expect(both.json.errors).toBeUndefined();
    expect(both.json.data.refreshToken.user.email).toBe(mine.identifier);
    expect(both.headers.getSetCookie()).toEqual(expect.arrayContaining([LEGACY_EXPIRY]));

    const [first, second] = [await cookieLogin(mine), await cookieLogin(other)];
    const twoOld = await post(server, REFRESH, { refreshToken: '' }, { ...COOKIE_MODE, origin: SPA, cookie: `${LEGACY}=${first}; ${LEGACY}=${second}` });
    expect(twoOld.json.data).toBeNull();
    expect(twoOld.json.errors[0].extensions.code).toBe('UNAUTHENTICATED');
    const twoNew = await post(server, REFRESH, { refreshToken: '' }, { ...COOKIE_MODE, origin: SPA, cookie: `${COOKIE}=${second}; ${sent(first)}; ${LEGACY}=${legacy}` });
    expect(twoNew.json.data.refreshToken.user.email).toBe(mine.identifier);
    const third = await cookieLogin(mine);
    // Refusing spent nothing: each token still works alone.
    for (const token of [third, second]) {
      const alone = await post(server, REFRESH, { refreshToken: '' }, { ...COOKIE_MODE, origin: SPA, cookie: sent(token) });
      expect(alone.json.errors).toBeUndefined();
    }
  });

  it('is ignored without cookie mode, and no answer expires it there', async () => {
    const who = await account(server);
    const token = await cookieLogin(who);
    const refreshed = await post(server, REFRESH, { refreshToken: '' }, { origin: SPA, cookie: `${LEGACY}=${token}` });
    expect(refreshed.json.errors[0].extensions.code).toBe('UNAUTHENTICATED');
    expect(refreshed.headers.getSetCookie()).toEqual([]);
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
    // A refusal varies by Origin too: a shared cache never hands it to a listed origin.
    expect(response.headers.get('vary')).toBe('Origin');
    expect(await sessionRows(server, identifier)).toBe(before);
  });

  it('a stranger page presenting the cookie (same site, other origin) cannot refresh with it', async () => {
    const { identifier, password } = await account(server);
    const login = await post(server, LOGIN, { input: { identifier, password } }, { ...COOKIE_MODE, origin: SPA });
    const cookie = sent(refreshCookieOf(login)!.value);
    const stolen = await post(server, REFRESH, { refreshToken: '' }, { ...COOKIE_MODE, origin: STRANGER, cookie });
    expect(stolen.json.errors[0].extensions.code).toBe('FORBIDDEN');
    expect(refreshCookieOf(stolen)).toBeUndefined();
  });

  it('a second cookie of the same name (planted by a sibling subdomain) is ignored: the one the binding matches refreshes, before or after it, reload after reload', async () => {
    const { identifier, password } = await account(server);
    let victim = refreshCookieOf(await post(server, LOGIN, { input: { identifier, password } }, { ...COOKIE_MODE, origin: SPA }))!.value;
    const attacker = await account(server);
    const planted = refreshCookieOf(await post(server, LOGIN, { input: { identifier: attacker.identifier, password: attacker.password } }, { ...COOKIE_MODE, origin: SPA }))!.value;
    // The planted cookie (Domain= the parent, so the server's answers never replace it) travels
    // beside the victim's on every request; before, each reload signed the victim out.
    for (const cookie of [(token: string) => `${COOKIE}=${planted}; ${sent(token)}`, (token: string) => `${sent(token)}; other=1; ${COOKIE}=${planted}`]) {
      const answer = await post(server, REFRESH, { refreshToken: '' }, { ...COOKIE_MODE, origin: SPA, cookie: cookie(victim) });
      expect(answer.json.errors).toBeUndefined();
      expect(answer.json.data.refreshToken.user.email).toBe(identifier);
      victim = refreshCookieOf(answer)!.value;
    }
    // The attacker's session was not touched: its token still refreshes where it belongs.
    expect((await post(server, REFRESH, { refreshToken: '' }, { ...COOKIE_MODE, origin: SPA, cookie: sent(planted) })).json.data.refreshToken.user.email).toBe(attacker.identifier);
  });

  // Cookie tossing: a page on a sibling subdomain can set a __Secure- cookie for the whole domain,
  // not a __Host- one. A token cookie without its binding, or with another token's, is nobody's.
  it("a token cookie planted alone, or beside a binding that is not its own, signs nobody in (cookie tossing)", async () => {
    const { identifier, password } = await account(server);
    const victim = refreshCookieOf(await post(server, LOGIN, { input: { identifier, password } }, { ...COOKIE_MODE, origin: SPA }))!.value;
    const attacker = await account(server);
    const planted = refreshCookieOf(await post(server, LOGIN, { input: { identifier: attacker.identifier, password: attacker.password } }, { ...COOKIE_MODE, origin: SPA }))!.value;
    for (const cookie of [`${COOKIE}=${planted}`, `${COOKIE}=${planted}; ${BINDING}=${bindingOf(victim)}`, `${COOKIE}=${planted}; ${BINDING}=${bindingOf(planted)}; ${BINDING}=${bindingOf(victim)}`]) {
      const answer = await post(server, REFRESH, { refreshToken: '' }, { ...COOKIE_MODE, origin: SPA, cookie });
      expect(answer.json.data).toBeNull();
      expect(answer.json.errors[0].extensions.code).toBe('UNAUTHENTICATED');
    }
    // Refusing spent nothing: the attacker's token still works where it belongs, with its own binding.
    expect((await post(server, REFRESH, { refreshToken: '' }, { ...COOKIE_MODE, origin: SPA, cookie: sent(planted) })).json.errors).toBeUndefined();
  });

  it('a cross-site form post (no preflight, no JSON) is refused by CSRF prevention, cookie or not', async () => {
    const { identifier, password } = await account(server);
    const login = await post(server, LOGIN, { input: { identifier, password } }, { ...COOKIE_MODE, origin: SPA });
    const cookie = sent(refreshCookieOf(login)!.value);
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

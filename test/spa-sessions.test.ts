import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processEnv } from '../src/config/config.js';
import {
  CHANGE_PASSWORD,
  DELETE_ME,
  DELETE_USER,
  FORGOT_PASSWORD,
  LOGIN,
  LOGOUT_ALL,
  ME,
  REFRESH,
  registerAccount,
  RESET_PASSWORD,
  REVOKE_SESSION,
  SESSIONS,
  type SignedInAccount,
  START_UP_ADMIN,
  UPDATE_USER,
} from './support/accounts.js';
import { LOCK_ACCOUNT } from './support/mfa.js';
import { errorCode, type GraphQLResponse, startTestServer, type TestServer } from './support/server.js';
import { resetTokenOf, startSmtpServer, type TestSmtpServer } from './support/smtp.js';

// What single-page and mobile apps do to a session that the server must survive: two tabs (or a
// reload, or React StrictMode) presenting one refresh token at once, tabs holding access tokens of
// one device session while another tab rotates it, and clients deciding from `extensions.reason`
// whether to refresh or to sign in again. Concurrency matters most on PostgreSQL, where requests
// really run side by side; the same tests run on the embedded database too.
const ON_POSTGRESQL = Boolean(processEnv().DATABASE_URL);
/** Trials of each concurrent burst: a failure one time in ten survives 20 trials with probability 12 %. */
const TRIALS = ON_POSTGRESQL ? 20 : 5;
const LOGOUT = 'mutation { logout }';
const { ADMIN_EMAIL, ADMIN_PASSWORD } = START_UP_ADMIN;

let server: TestServer;
let smtp: TestSmtpServer;
let adminToken: string;

beforeAll(async () => {
  smtp = await startSmtpServer();
  server = await startTestServer({ SMTP_URL: smtp.url, ADMIN_EMAIL, ADMIN_PASSWORD });
  const admin = await server.graphql(LOGIN, { input: { identifier: ADMIN_EMAIL, password: ADMIN_PASSWORD } });
  adminToken = admin.data!.login.accessToken;
});
afterAll(async () => {
  await server?.stop();
  await smtp?.stop();
});

type Pair = { accessToken: string; refreshToken: string };

const refresh = (refreshToken: string, target = server) => target.graphql(REFRESH, { refreshToken });
const me = (accessToken: string, target = server) => target.graphql(ME, {}, { token: accessToken });
const reasonOf = (response: GraphQLResponse) => response.errors?.[0]?.extensions?.reason as string | undefined;

/** Fails with what the server said unless the call succeeded. */
function ok<T extends GraphQLResponse>(response: T): T {
  expect(response.errors, JSON.stringify(response.errors)).toBeUndefined();
  return response;
}

/** The device sessions `accessToken`'s user has, as ids. */
async function sessionIds(accessToken: string): Promise<string[]> {
  return (ok(await server.graphql(SESSIONS, {}, { token: accessToken })).data!.sessions as Array<{ id: string }>).map((session) => session.id);
}

/** Presents one refresh token `count` times at once; returns the answers. */
function burst(refreshToken: string, count: number): Promise<GraphQLResponse[]> {
  return Promise.all(Array.from({ length: count }, () => refresh(refreshToken)));
}

describe('concurrent refreshes of one refresh token', () => {
  for (const count of [2, 10]) {
    it(`all ${count} succeed, every token they return works, and the device keeps one session (${TRIALS} trials)`, async () => {
      let failedTrials = 0;
      for (let trial = 0; trial < TRIALS; trial += 1) {
        const account = await registerAccount(server);
        const answers = await burst(account.refreshToken, count);
        const pairs = answers.filter((answer) => answer.data?.refreshToken).map((answer) => answer.data!.refreshToken as Pair);
        if (pairs.length !== count) {
          failedTrials += 1;
          continue;
        }
        // Every access token works — including the one the device had before the burst.
        for (const { accessToken } of [account, ...pairs]) expect((await me(accessToken)).data?.me.id).toBe(account.user.id);
        // Every refresh token handed out can be rotated in turn.
        for (const { refreshToken } of pairs) ok(await refresh(refreshToken));
        expect(await sessionIds(pairs[0].accessToken)).toHaveLength(1);
      }
      console.info(`${count} concurrent refreshes of one token: ${failedTrials}/${TRIALS} trials had a refresh refused`);
      expect(failedTrials).toBe(0);
    });
  }

  it('a refresh token presented again within the interval still ends with the device session (logout wins)', async () => {
    const account = await registerAccount(server);
    const rotated = ok(await refresh(account.refreshToken)).data!.refreshToken as Pair;
    ok(await server.graphql(LOGOUT, {}, { token: rotated.accessToken }));
    const replay = await refresh(account.refreshToken);
    expect(replay.data ?? null).toBeNull();
    expect(errorCode(replay)).toBe('UNAUTHENTICATED');
  });
});

describe('a form submitted twice', () => {
  it('changePassword twice at once from one device: one succeeds, the other is BAD_USER_INPUT, and the device stays signed in (' + TRIALS + ' trials)', async () => {
    let signedOut = 0;
    for (let trial = 0; trial < TRIALS; trial += 1) {
      const account = await registerAccount(server);
      const input = { currentPassword: account.password, newPassword: `${account.password} twice` };
      const answers = await Promise.all([0, 1].map(() => server.graphql(CHANGE_PASSWORD, { input }, { token: account.accessToken })));
      expect(answers.filter((answer) => answer.data?.changePassword === true)).toHaveLength(1);
      const refused = answers.find((answer) => !answer.data?.changePassword)!;
      if (errorCode(refused) === 'UNAUTHENTICATED') signedOut += 1;
      else expect([errorCode(refused), refused.errors?.[0]?.extensions?.field]).toEqual(['BAD_USER_INPUT', 'currentPassword']);
      expect((await me(account.accessToken)).data?.me.id).toBe(account.user.id);
    }
    console.info(`changePassword submitted twice: ${signedOut}/${TRIALS} trials told a signed-in device its session had ended`);
    expect(signedOut).toBe(0);
  });
});

describe('reuse after the interval', () => {
  let quick: TestServer;
  beforeAll(async () => {
    quick = await startTestServer({ REFRESH_TOKEN_REUSE_INTERVAL: '1' });
  });
  afterAll(() => quick?.stop());

  it('ends the device session: the replayed token, and every token rotated from it', async () => {
    const account = await registerAccount(quick);
    const first = ok(await refresh(account.refreshToken, quick)).data!.refreshToken as Pair;
    // Inside the interval a second presentation is a second tab: it works.
    const second = ok(await refresh(account.refreshToken, quick)).data!.refreshToken as Pair;
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const replay = await refresh(account.refreshToken, quick);
    expect(errorCode(replay)).toBe('UNAUTHENTICATED');
    for (const pair of [first, second]) {
      expect(reasonOf(await me(pair.accessToken, quick))).toBe('SESSION_ENDED');
      expect(errorCode(await refresh(pair.refreshToken, quick))).toBe('UNAUTHENTICATED');
    }
    const audit = await quick.sql<{ type: string }>('select type from audit_events where user_id = ? and type = ?', [account.user.id, 'REFRESH_REUSE_DETECTED']);
    expect(audit).toHaveLength(1);
  });

  it('gives a replay within the interval the same refresh token, so a thief cannot fork a chain of their own', async () => {
    const account = await registerAccount(quick);
    const owner = ok(await refresh(account.refreshToken, quick)).data!.refreshToken as Pair;
    // A thief replays the stolen token right after the owner's refresh: it looks like a second tab.
    const thief = ok(await refresh(account.refreshToken, quick)).data!.refreshToken as Pair;
    expect(thief.refreshToken).toBe(owner.refreshToken);
    const live = await quick.sql<{ n: number }>('select count(*)::int as n from sessions where user_id = ? and revoked_at is null', [account.user.id]);
    expect(live[0].n).toBe(1);
    // The owner refreshes on; the thief's copy is then a rotated token, and using it later is caught.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const ownerNext = ok(await refresh(owner.refreshToken, quick)).data!.refreshToken as Pair;
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(errorCode(await refresh(thief.refreshToken, quick))).toBe('UNAUTHENTICATED');
    expect(reasonOf(await me(ownerNext.accessToken, quick))).toBe('SESSION_ENDED');
  });
});

describe('rotation and the access tokens other tabs hold', () => {
  it('leaves every earlier access token of the device session working until the session ends', async () => {
    const account = await registerAccount(server);
    const tabs: Pair[] = [account];
    for (let rotation = 0; rotation < 3; rotation += 1) {
      tabs.push(ok(await refresh(tabs[tabs.length - 1].refreshToken)).data!.refreshToken as Pair);
    }
    for (const tab of tabs) expect((await me(tab.accessToken)).data?.me.id).toBe(account.user.id);
    expect(new Set(await Promise.all(tabs.map((tab) => sessionIds(tab.accessToken).then((ids) => ids.join()))))).toHaveProperty('size', 1);

    ok(await server.graphql(LOGOUT, {}, { token: tabs[0].accessToken }));
    for (const tab of tabs) expect(reasonOf(await me(tab.accessToken))).toBe('SESSION_ENDED');
  });

  it('answers refreshTokenExpiresAt with every pair', async () => {
    const account = (await registerAccount(server)) as SignedInAccount & { refreshTokenExpiresAt: string };
    const days = (Date.parse(account.refreshTokenExpiresAt) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29.9);
    expect(days).toBeLessThanOrEqual(30);
  });
});

describe('extensions.reason on UNAUTHENTICATED', () => {
  /** Signs an access token the way the server does, with `overrides` applied, using `secret`. */
  async function craft(claims: { sub: string; sid: string }, overrides: { exp?: number; iss?: string; secret?: string; jti?: boolean } = {}): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ sid: claims.sid, ...(overrides.jti === false ? {} : { jti: randomUUID() }) })
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt' })
      .setSubject(claims.sub)
      .setIssuer(overrides.iss ?? server.config.appUrl)
      .setAudience(server.config.appUrl)
      .setIssuedAt(now - 3600)
      .setExpirationTime(overrides.exp ?? now + 600)
      .sign(new TextEncoder().encode(overrides.secret ?? server.config.jwtSecret));
  }

  async function expectReason(reason: string, options: { token?: string; headers?: Record<string, string> }): Promise<void> {
    const answer = await server.graphql(ME, {}, options);
    expect(answer.data ?? null).toBeNull();
    expect(errorCode(answer)).toBe('UNAUTHENTICATED');
    expect(reasonOf(answer)).toBe(reason);
  }

  it('TOKEN_MISSING without a token, TOKEN_INVALID for a malformed, forged or foreign one', async () => {
    const account = await registerAccount(server);
    const sessionId = (await sessionIds(account.accessToken))[0];
    await expectReason('TOKEN_MISSING', {});
    await expectReason('TOKEN_MISSING', { headers: { authorization: 'Bearer ' } });
    await expectReason('TOKEN_INVALID', { headers: { authorization: 'Basic dXNlcjpwYXNz' } });
    await expectReason('TOKEN_INVALID', { token: 'not.a.jwt' });
    await expectReason('TOKEN_INVALID', { token: `${account.accessToken.slice(0, -2)}AA` });
    await expectReason('TOKEN_INVALID', { token: await craft({ sub: account.user.id, sid: sessionId }, { secret: 'another-secret-of-at-least-32-bytes-long' }) });
    await expectReason('TOKEN_INVALID', { token: await craft({ sub: account.user.id, sid: sessionId }, { iss: 'https://elsewhere.example.test' }) });
    // Sanity: the same crafting with the right key and claims is accepted.
    expect((await me(await craft({ sub: account.user.id, sid: sessionId }))).data?.me.id).toBe(account.user.id);
  });

  it('TOKEN_EXPIRED only for a genuine token past its lifetime; a forged expired one is TOKEN_INVALID', async () => {
    const account = await registerAccount(server);
    const sessionId = (await sessionIds(account.accessToken))[0];
    const past = Math.floor(Date.now() / 1000) - 60;
    await expectReason('TOKEN_EXPIRED', { token: await craft({ sub: account.user.id, sid: sessionId }, { exp: past }) });
    await expectReason('TOKEN_INVALID', { token: await craft({ sub: account.user.id, sid: sessionId }, { exp: past, secret: 'another-secret-of-at-least-32-bytes-long' }) });
  });

  it('SESSION_ENDED after logout, logoutAll, revokeSession, a password change, a reset, deactivation and deletion', async () => {
    const endings: Record<string, (account: SignedInAccount) => Promise<GraphQLResponse>> = {
      logout: (account) => server.graphql(LOGOUT, {}, { token: account.accessToken }),
      logoutAll: (account) => server.graphql(LOGOUT_ALL, {}, { token: account.accessToken }),
      revokeSession: async (account) => {
        const own = (await sessionIds(account.accessToken))[0];
        const other = ok(await server.graphql(LOGIN, { input: { identifier: account.user.email, password: account.password } })).data!.login as Pair;
        return ok(await server.graphql(REVOKE_SESSION, { id: own }, { token: other.accessToken }));
      },
      changePassword: async (account) => {
        const other = ok(await server.graphql(LOGIN, { input: { identifier: account.user.email, password: account.password } })).data!.login as Pair;
        return server.graphql(CHANGE_PASSWORD, { input: { currentPassword: account.password, newPassword: `${account.password} changed` } }, { token: other.accessToken });
      },
      resetPassword: async (account) => {
        ok(await server.graphql(FORGOT_PASSWORD, { input: { identifier: account.user.email } }));
        const token = resetTokenOf(await smtp.waitFor((mail) => mail.to === account.user.email && mail.subject === 'Reset your password'));
        return ok(await server.graphql(RESET_PASSWORD, { input: { token, newPassword: `${account.password} reset` } }));
      },
      deactivation: (account) => server.graphql(UPDATE_USER, { id: account.user.id, input: { active: false } }, { token: adminToken }),
      deleteMe: (account) => server.graphql(DELETE_ME, { password: account.password }, { token: account.accessToken }),
      deleteUser: (account) => server.graphql(DELETE_USER, { id: account.user.id }, { token: adminToken }),
    };
    for (const [name, end] of Object.entries(endings)) {
      const account = await registerAccount(server);
      // One more tab of the same device session, holding a rotated pair.
      const tab = ok(await refresh(account.refreshToken)).data!.refreshToken as Pair;
      ok(await end(account));
      for (const token of [account.accessToken, tab.accessToken]) {
        const answer = await me(token);
        expect(reasonOf(answer), `${name}: ${JSON.stringify(answer.errors)}`).toBe('SESSION_ENDED');
      }
    }
  });

  it('an access token signed before tokens named the device session (it names a rotated row) still works', async () => {
    const account = await registerAccount(server);
    const rotated = ok(await refresh(account.refreshToken)).data!.refreshToken as Pair;
    const [row] = await server.sql<{ id: string; family: string }>('select id, family from sessions where user_id = ? and id <> family', [account.user.id]);
    expect(row).toBeDefined();
    // Old tokens had no jti; a token of today's shape naming a row is not followed.
    expect((await me(await craft({ sub: account.user.id, sid: row.id }, { jti: false }))).data?.me.id).toBe(account.user.id);
    expect(reasonOf(await me(await craft({ sub: account.user.id, sid: row.id })))).toBe('SESSION_ENDED');
    ok(await server.graphql(LOGOUT, {}, { token: rotated.accessToken }));
    expect(reasonOf(await me(await craft({ sub: account.user.id, sid: row.id }, { jti: false })))).toBe('SESSION_ENDED');
  });

  it('login and refresh failures carry no reason', async () => {
    const account = await registerAccount(server);
    const wrong = await server.graphql(LOGIN, { input: { identifier: account.user.email, password: 'not the password at all' } });
    const unknown = await server.graphql(LOGIN, { input: { identifier: 'nobody-at-all@example.test', password: 'not the password at all' } });
    const badRefresh = await refresh('x'.repeat(43));
    for (const answer of [wrong, unknown, badRefresh]) {
      expect(errorCode(answer)).toBe('UNAUTHENTICATED');
      expect(answer.errors?.[0]?.extensions).not.toHaveProperty('reason');
    }
    expect(wrong.errors?.[0]?.message).toBe(unknown.errors?.[0]?.message);
  });
});

describe('configured lifetimes and links', () => {
  let custom: TestServer;
  const RESET_PASSWORD_URL = 'myapp://reset?from=mail';
  // Another origin than APP_URL (the tokens' issuer and audience), with a query of its own.
  const LOCKDOWN_URL = 'https://account.example.test/wasnt-me?via=mail';
  beforeAll(async () => {
    custom = await startTestServer({ ACCESS_TOKEN_TTL: '60', REFRESH_TOKEN_TTL: '3600', RESET_PASSWORD_URL, LOCKDOWN_URL, SMTP_URL: smtp.url });
  });
  afterAll(() => custom?.stop());

  it('RESET_PASSWORD_URL moves reset links (a deep link here) and nothing else: the token in it resets, issued tokens still work', async () => {
    const account = await registerAccount(custom);
    ok(await custom.graphql(FORGOT_PASSWORD, { input: { identifier: account.user.email } }));
    const mail = await smtp.waitFor((message) => message.to === account.user.email && message.subject === 'Reset your password');
    const link = mail.text.match(/myapp:\/\/reset\?\S+/)?.[0];
    expect(link, mail.text).toBeDefined();
    const url = new URL(link!);
    expect(url.searchParams.get('from')).toBe('mail');
    expect(mail.html).toContain(`href="${link!.replaceAll('&', '&#38;')}"`);
    expect((await me(account.accessToken, custom)).data?.me.id).toBe(account.user.id);
    ok(await custom.graphql(RESET_PASSWORD, { input: { token: url.searchParams.get('token'), newPassword: `${account.password} via app` } }));
  });

  it('LOCKDOWN_URL moves "this wasn\'t me" links and nothing else: the token in it locks, issued tokens keep their issuer and audience', async () => {
    const account = await registerAccount(custom);
    const changed = await custom.graphql(CHANGE_PASSWORD, { input: { currentPassword: account.password, newPassword: `${account.password} changed` } }, { token: account.accessToken });
    expect(ok(changed).data?.changePassword).toBe(true);
    const notice = await smtp.waitFor((message) => message.to === account.user.email && message.subject === 'Your password was changed');
    const link = notice.text.match(/This wasn't me:\n(\S+)/)?.[1];
    expect(link, notice.text).toBeDefined();
    // The target already has a query, so the token follows it with `&`.
    expect(link!.startsWith(`${LOCKDOWN_URL}&token=`), link).toBe(true);
    expect(notice.html).toContain(`href="${link!.replaceAll('&', '&#38;')}"`);
    const token = new URL(link!).searchParams.get('token');
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);

    // The access token issued before still names APP_URL as issuer and audience, and still works.
    const claims = JSON.parse(Buffer.from(account.accessToken.split('.')[1], 'base64url').toString('utf8')) as { iss: string; aud: string };
    expect(claims).toMatchObject({ iss: 'https://app.example.test', aud: 'https://app.example.test' });
    expect((await me(account.accessToken, custom)).data?.me.id).toBe(account.user.id);

    // The token in the link locks the account: the session ends, and the reset link sent then
    // still goes to RESET_PASSWORD_URL.
    expect(ok(await custom.graphql(LOCK_ACCOUNT, { token })).data?.lockAccount).toBe(true);
    expect(reasonOf(await me(account.accessToken, custom))).toBe('SESSION_ENDED');
    const locked = await smtp.waitFor((message) => message.to === account.user.email && message.subject === 'Your account is locked: choose a new password');
    expect(locked.text).toContain(`${RESET_PASSWORD_URL}&token=`);
    expect(locked.text).not.toContain(LOCKDOWN_URL);
  });

  it('ACCESS_TOKEN_TTL and REFRESH_TOKEN_TTL set the answered expiries and the token itself', async () => {
    const account = (await registerAccount(custom)) as SignedInAccount & { accessTokenExpiresAt: string; refreshTokenExpiresAt: string };
    const secondsLeft = (iso: string) => (Date.parse(iso) - Date.now()) / 1000;
    expect(secondsLeft(account.accessTokenExpiresAt)).toBeGreaterThan(50);
    expect(secondsLeft(account.accessTokenExpiresAt)).toBeLessThanOrEqual(60);
    expect(secondsLeft(account.refreshTokenExpiresAt)).toBeGreaterThan(3590);
    expect(secondsLeft(account.refreshTokenExpiresAt)).toBeLessThanOrEqual(3600);
    const claims = JSON.parse(Buffer.from(account.accessToken.split('.')[1], 'base64url').toString('utf8')) as { exp: number };
    expect(claims.exp * 1000).toBe(Date.parse(account.accessTokenExpiresAt));
    const [row] = await custom.sql<{ expires_at: Date }>('select expires_at from sessions where user_id = ?', [account.user.id]);
    expect(new Date(row.expires_at).toISOString()).toBe(account.refreshTokenExpiresAt);
  });
});

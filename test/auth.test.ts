import { randomBytes, randomUUID } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOGIN, LOGOUT_ALL, ME, newAccountInput, REFRESH, REGISTER, registerAccount, REVOKE_SESSION, type SignedInAccount } from './support/accounts.js';
import { type CallOptions, errorCode, errorField, startTestServer, type TestServer } from './support/server.js';

const SESSIONS = '{ sessions { id createdAt lastUsedAt expiresAt userAgent ip current } }';
const LOGOUT = 'mutation { logout }';
const LOGIN_WITH_LAST_LOGIN = `mutation Login($input: LoginInput!) {
  login(input: $input) { accessToken refreshToken user { id email username lastLoginAt } }
}`;
const ME_WITH_LAST_LOGIN = '{ me { id lastLoginAt } }';

let server: TestServer;
/** A server where a rotated refresh token dies at once (REFRESH_TOKEN_REUSE_INTERVAL=0). */
let strict: TestServer;
beforeAll(async () => {
  [server, strict] = await Promise.all([startTestServer(), startTestServer({ REFRESH_TOKEN_REUSE_INTERVAL: '0' })]);
});
afterAll(() => Promise.all([server?.stop(), strict?.stop()]));

function suffix(): string {
  return randomBytes(4).toString('hex');
}

function login(target: TestServer, identifier: string, password: string, options?: CallOptions) {
  return target.graphql(LOGIN, { input: { identifier, password } }, options);
}

function refresh(target: TestServer, refreshToken: string, options?: CallOptions) {
  return target.graphql(REFRESH, { refreshToken }, options);
}

/** Asserts `me` answers for `account`'s user with `token`. */
async function expectSignedIn(token: string, userId: string, target = server): Promise<void> {
  const response = await target.graphql(ME, {}, { token });
  expect(response.errors).toBeUndefined();
  expect(response.data?.me.id).toBe(userId);
}

/** Asserts `me` refuses `token` with UNAUTHENTICATED. */
async function expectSignedOut(token: string, target = server): Promise<void> {
  const response = await target.graphql(ME, {}, { token });
  expect(response.data ?? null).toBeNull();
  expect(errorCode(response)).toBe('UNAUTHENTICATED');
}

/** Asserts a refresh token can no longer be exchanged. */
async function expectRefreshRefused(refreshToken: string, target = server): Promise<void> {
  const response = await refresh(target, refreshToken);
  expect(response.data ?? null).toBeNull();
  expect(errorCode(response)).toBe('UNAUTHENTICATED');
}

/** Signs in again as `account` and returns the new tokens. */
async function signInAgain(account: SignedInAccount, options?: CallOptions) {
  const response = await login(server, account.user.email, account.password, options);
  expect(response.errors).toBeUndefined();
  return response.data!.login as { accessToken: string; refreshToken: string; user: { id: string } };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** `count` distinct letter-case variants of `word` (which must have enough letters). */
function caseVariants(word: string, count: number): string[] {
  const letters = [...word].map((char, index) => (/[a-z]/i.test(char) ? index : -1)).filter((index) => index >= 0);
  if (2 ** letters.length < count) throw new Error('not enough letters for that many variants');
  return Array.from({ length: count }, (_, variant) => {
    const chars = [...word.toLowerCase()];
    letters.forEach((position, bit) => {
      if (variant & (1 << bit)) chars[position] = chars[position].toUpperCase();
    });
    return chars.join('');
  });
}

describe('register', () => {
  it('returns tokens and the new user, with the email stored trimmed and lower-cased', async () => {
    const input = newAccountInput({ email: '  Mixed@Example.COM ' });
    const response = await server.graphql(REGISTER, { input });
    expect(response.errors).toBeUndefined();
    const payload = response.data?.register;
    expect(payload.accessToken).toEqual(expect.any(String));
    expect(payload.refreshToken).toEqual(expect.any(String));
    expect(new Date(payload.accessTokenExpiresAt).getTime()).toBeGreaterThan(Date.now());
    expect(payload.user).toMatchObject({ email: 'mixed@example.com', username: input.username, active: true });
    expect(payload.user.id).toEqual(expect.any(String));

    const me = await server.graphql(ME, {}, { token: payload.accessToken });
    expect(me.data?.me.email).toBe('mixed@example.com');
  });

  it('gives an access token that works for me', async () => {
    const account = await registerAccount(server);
    const response = await server.graphql(ME, {}, { token: account.accessToken });
    expect(response.errors).toBeUndefined();
    expect(response.data?.me).toMatchObject({ id: account.user.id, email: account.user.email, username: account.user.username });
  });

  it('creates the account with the USER role', async () => {
    const account = await registerAccount(server);
    expect(account.user.role).toBe('USER');
    const response = await server.graphql(ME, {}, { token: account.accessToken });
    expect(response.data?.me.role).toBe('USER');
  });

  it('refuses an email already taken in another letter case with CONFLICT on the email field', async () => {
    const email = `taken-${suffix()}@example.com`;
    await registerAccount(server, { email });
    const response = await server.graphql(REGISTER, { input: newAccountInput({ email: `  ${email.toUpperCase()}` }) });
    expect(response.data ?? null).toBeNull();
    expect(errorCode(response)).toBe('CONFLICT');
    expect(response.errors?.[0].extensions?.field).toBe('email');
  });

  it('refuses a username differing only in letter case with CONFLICT on the username field', async () => {
    const username = `Taken_${suffix()}`;
    await registerAccount(server, { username });
    const response = await server.graphql(REGISTER, { input: newAccountInput({ username: username.toLowerCase() }) });
    expect(response.data ?? null).toBeNull();
    expect(errorCode(response)).toBe('CONFLICT');
    expect(response.errors?.[0].extensions?.field).toBe('username');

    const upper = await server.graphql(REGISTER, { input: newAccountInput({ username: username.toUpperCase() }) });
    expect(errorCode(upper)).toBe('CONFLICT');
    expect(upper.errors?.[0].extensions?.field).toBe('username');
  });

  it('lets exactly one of 20 concurrent registrations of one email succeed, the others get CONFLICT', async () => {
    const email = `race-${suffix()}@example.com`;
    const inputs = Array.from({ length: 20 }, () => newAccountInput({ email }));
    const responses = await Promise.all(inputs.map((input) => server.graphql(REGISTER, { input })));

    const codes = responses.map(errorCode);
    expect(codes).not.toContain('INTERNAL_SERVER_ERROR');
    const winners = responses.flatMap((response, index) => (response.data?.register ? [index] : []));
    expect(winners).toHaveLength(1);
    expect(codes.filter((code) => code === 'CONFLICT')).toHaveLength(19);
    for (const [index, response] of responses.entries()) {
      if (index !== winners[0]) expect(response.errors?.[0].extensions?.field).toBe('email');
    }

    const winner = responses[winners[0]].data!.register;
    // Only the winner's account exists: its credentials work, those of every loser do not. The
    // losers' wrong passwords all count against that one account and soon put it into backoff, so
    // the winner signs in with its device token, as its own device would (see LoginGuard).
    const loserInputs = inputs.filter((_, index) => index !== winners[0]);
    for (const identifier of [email, winner.user.username]) {
      const own = await server.graphql(LOGIN, { input: { identifier, password: inputs[winners[0]].password, deviceToken: winner.deviceToken } });
      expect(own.data?.login.user.id, identifier).toBe(winner.user.id);
    }
    const byEmail = await Promise.all(loserInputs.map((input) => login(server, email, input.password)));
    const byUsername = await Promise.all(loserInputs.map((input) => login(server, input.username, input.password)));
    for (const response of [...byEmail, ...byUsername]) {
      expect(response.data ?? null).toBeNull();
      expect(['UNAUTHENTICATED', 'RATE_LIMITED']).toContain(errorCode(response));
    }
    // A loser's username names no account at all: only the shared per-account budget of the
    // winner is ever in play, so those are plain UNAUTHENTICATED.
    expect(byUsername.map(errorCode).filter((code) => code === 'UNAUTHENTICATED')).toHaveLength(19);
  });

  it('lets exactly one of 20 concurrent registrations of one username in different letter cases succeed', async () => {
    const variants = caseVariants(`racer${suffix()}`, 20);
    expect(new Set(variants).size).toBe(20);
    const inputs = variants.map((username) => newAccountInput({ username }));
    const responses = await Promise.all(inputs.map((input) => server.graphql(REGISTER, { input })));

    const codes = responses.map(errorCode);
    expect(codes).not.toContain('INTERNAL_SERVER_ERROR');
    const winners = responses.flatMap((response, index) => (response.data?.register ? [index] : []));
    expect(winners).toHaveLength(1);
    expect(codes.filter((code) => code === 'CONFLICT')).toHaveLength(19);
    for (const [index, response] of responses.entries()) {
      if (index !== winners[0]) expect(response.errors?.[0].extensions?.field).toBe('username');
    }

    const winner = responses[winners[0]].data!.register;
    expect(winner.user.username).toBe(variants[winners[0]]);
    const byEmail = await Promise.all(inputs.map((input) => login(server, input.email, input.password)));
    expect(byEmail.filter((response) => response.data?.login)).toHaveLength(1);
    expect(byEmail[winners[0]].data?.login.user.id).toBe(winner.user.id);
    // Every variant names the winner's account: its password signs in with any of them, the losers' never.
    // (The winner goes first: the losers' wrong passwords would otherwise start the account's backoff.)
    const winnerByUsername = await login(server, inputs[(winners[0] + 1) % inputs.length].username, inputs[winners[0]].password);
    expect(winnerByUsername.data?.login.user.id).toBe(winner.user.id);
    const losersByUsername = await Promise.all(inputs.filter((_, index) => index !== winners[0]).map((input) => login(server, input.username, input.password)));
    expect(losersByUsername.filter((response) => response.data?.login)).toHaveLength(0);
  });
});

describe('login', () => {
  it('accepts the email in any letter case with surrounding spaces', async () => {
    const account = await registerAccount(server);
    for (const identifier of [account.user.email, account.user.email.toUpperCase(), `  ${account.user.email.toUpperCase()}  `, `\t${account.user.email}\n`]) {
      const response = await login(server, identifier, account.password);
      expect(response.errors, identifier).toBeUndefined();
      expect(response.data?.login.user.id).toBe(account.user.id);
      await expectSignedIn(response.data!.login.accessToken, account.user.id);
    }
  });

  it('upgrades an imported plain bcrypt hash at sign-in, also when several sign-ins with it arrive at once', async () => {
    const account = await registerAccount(server);
    // A hash from another system: plain bcrypt of the password as typed.
    await server.sql('update users set password_hash = ? where id = ?', [await bcrypt.hash(account.password, 4), account.user.id]);
    const responses = await Promise.all(Array.from({ length: 5 }, () => login(server, account.user.email, account.password)));
    // Each sign-in rehashes the same password; none of them takes another's rehash for a new password.
    for (const response of responses) expect(response.errors, JSON.stringify(response.errors)).toBeUndefined();
    const [row] = await server.sql<{ password_hash: string }>('select password_hash from users where id = ?', [account.user.id]);
    expect(row.password_hash).toMatch(/^hmac-bcrypt:/);
    expect((await login(server, account.user.email, account.password)).errors).toBeUndefined();
  });

  it('accepts the username in any letter case', async () => {
    const account = await registerAccount(server, { username: `Mixed_Case_${suffix()}` });
    const { username } = account.user;
    for (const identifier of [username, username.toLowerCase(), username.toUpperCase(), ` ${username} `]) {
      const response = await login(server, identifier, account.password);
      expect(response.errors, identifier).toBeUndefined();
      expect(response.data?.login.user.id).toBe(account.user.id);
    }
  });

  it('sets lastLoginAt', async () => {
    const account = await registerAccount(server);
    const before = await server.graphql(ME_WITH_LAST_LOGIN, {}, { token: account.accessToken });
    expect(before.data?.me.lastLoginAt).toBeNull();

    const startedAt = Date.now();
    const response = await server.graphql(LOGIN_WITH_LAST_LOGIN, { input: { identifier: account.user.email, password: account.password } });
    expect(response.errors).toBeUndefined();
    const lastLoginAt = new Date(response.data?.login.user.lastLoginAt).getTime();
    expect(lastLoginAt).toBeGreaterThanOrEqual(startedAt - 1000);
    expect(lastLoginAt).toBeLessThanOrEqual(Date.now() + 1000);

    const after = await server.graphql(ME_WITH_LAST_LOGIN, {}, { token: response.data!.login.accessToken });
    expect(new Date(after.data?.me.lastLoginAt).getTime()).toBe(lastLoginAt);
  });

  it('answers a wrong password, an unknown email and an unknown username with the same UNAUTHENTICATED message', async () => {
    const account = await registerAccount(server);
    const wrongPassword = await login(server, account.user.email, `${account.password} but wrong`);
    const unknownEmail = await login(server, `nobody-${suffix()}@example.com`, account.password);
    const unknownUsername = await login(server, `nobody_${suffix()}`, account.password);
    for (const response of [wrongPassword, unknownEmail, unknownUsername]) {
      expect(response.data ?? null).toBeNull();
      expect(errorCode(response)).toBe('UNAUTHENTICATED');
    }
    const message = wrongPassword.errors?.[0].message;
    expect(message).toEqual(expect.any(String));
    expect(unknownEmail.errors?.[0].message).toBe(message);
    expect(unknownUsername.errors?.[0].message).toBe(message);
  });

  it('answers junk identifiers (over-long, look-alike letters, SQL) like unknown ones, never with an internal error', async () => {
    const account = await registerAccount(server);
    const reference = await login(server, `nobody_${suffix()}`, account.password);
    const message = reference.errors?.[0].message;
    const junk = [
      'a'.repeat(300),
      `${'a'.repeat(250)}@example.com`,
      account.user.username.replace(/a/g, '\u0430').replace(/e/g, '\u0435'),
      "' or '1'='1",
    ];
    for (const identifier of junk) {
      const response = await login(server, identifier, account.password);
      expect(response.data ?? null, JSON.stringify(identifier.slice(0, 40))).toBeNull();
      expect(errorCode(response), JSON.stringify(identifier.slice(0, 40))).toBe('UNAUTHENTICATED');
      expect(response.errors?.[0].message).toBe(message);
    }
  });

  it('refuses identifiers with NUL bytes or broken Unicode as bad input, whether or not they name an account', async () => {
    const account = await registerAccount(server);
    const junk = ['abc\u0000def', `${account.user.username}\u0000`, `${account.user.email}\u0000`, `\u0000${account.user.email}`, 'ab\ud800cd', `${account.user.username}\udc00`];
    const answers = await Promise.all(junk.map((identifier) => login(server, identifier, account.password)));
    for (const response of answers) {
      expect(response.data ?? null).toBeNull();
      expect(errorCode(response)).toBe('BAD_USER_INPUT');
      expect(errorField(response)).toBe('identifier');
    }
    // The answer says nothing about the account: an account's identifier gets the one nobody's gets.
    const shape = (response: (typeof answers)[number]) => JSON.stringify(response.errors?.map((error) => [error.message, error.extensions]));
    expect(shape(answers[2])).toBe(shape(answers[0]));
    expect(shape(answers[5])).toBe(shape(answers[4]));
  });

  describe('timing', () => {
    let slowServer: TestServer;
    beforeAll(async () => {
      slowServer = await startTestServer({ BCRYPT_COST: '10' });
    });
    afterAll(() => slowServer?.stop());

    it('takes about as long for an unknown identifier as for a wrong password', async () => {
      // Six wrong passwords for one account would start its brute-force backoff (RATE_LIMITED
      // without a bcrypt comparison), so the wrong-password side rotates over several accounts.
      const accounts = await Promise.all(Array.from({ length: 4 }, () => registerAccount(slowServer)));
      const [account] = accounts;
      const timed = async (identifier: string): Promise<number> => {
        const startedAt = performance.now();
        const response = await login(slowServer, identifier, `${account.password} but wrong`);
        const elapsed = performance.now() - startedAt;
        expect(errorCode(response)).toBe('UNAUTHENTICATED');
        return elapsed;
      };
      // Warm up both paths (connections, query plans) before measuring.
      await timed(account.user.email);
      await timed(`nobody-${suffix()}@example.com`);

      const unknown: number[] = [];
      const wrongPassword: number[] = [];
      for (let round = 0; round < 5; round += 1) {
        const unknownIdentifier = round % 2 === 0 ? `nobody-${suffix()}@example.com` : `nobody_${suffix()}`;
        unknown.push(await timed(unknownIdentifier));
        const target = accounts[round % accounts.length];
        wrongPassword.push(await timed(round % 2 === 0 ? target.user.email : target.user.username));
      }
      expect(median(unknown)).toBeGreaterThanOrEqual(0.5 * median(wrongPassword));
    });
  });
});

describe('refreshToken', () => {
  it('returns a new access token and a new refresh token, and the new access token works', async () => {
    const account = await registerAccount(server);
    const response = await refresh(server, account.refreshToken);
    expect(response.errors).toBeUndefined();
    const payload = response.data!.refreshToken;
    expect(payload.accessToken).toEqual(expect.any(String));
    expect(payload.refreshToken).toEqual(expect.any(String));
    expect(payload.accessToken).not.toBe(account.accessToken);
    expect(payload.refreshToken).not.toBe(account.refreshToken);
    expect(payload.user.id).toBe(account.user.id);
    await expectSignedIn(payload.accessToken, account.user.id);
  });

  // With REFRESH_TOKEN_REUSE_INTERVAL=0 a rotated token is dead at once (test/spa-sessions.test.ts
  // covers the default interval).
  it('refuses a refresh token that was already used (no reuse interval)', async () => {
    const account = await registerAccount(strict);
    const first = await refresh(strict, account.refreshToken);
    expect(first.errors).toBeUndefined();
    await expectRefreshRefused(account.refreshToken, strict);
  });

  it('ends the whole session when an already-rotated refresh token is presented again (no reuse interval)', async () => {
    const account = await registerAccount(strict);
    const rotated = await refresh(strict, account.refreshToken);
    expect(rotated.errors).toBeUndefined();
    const b = rotated.data!.refreshToken;
    await expectSignedIn(b.accessToken, account.user.id, strict);

    // Token A again: reuse. It fails, and so does everything issued after it in that session.
    await expectRefreshRefused(account.refreshToken, strict);
    await expectRefreshRefused(b.refreshToken, strict);
    await expectSignedOut(b.accessToken, strict);
  });

  it('refuses garbage refresh tokens with UNAUTHENTICATED', async () => {
    for (const garbage of ['garbage', '', ' ', randomBytes(32).toString('base64url'), 'x'.repeat(10_000), "' or 1=1 --"]) {
      const response = await refresh(server, garbage);
      expect(response.data ?? null).toBeNull();
      expect(errorCode(response), JSON.stringify(garbage.slice(0, 20))).toBe('UNAUTHENTICATED');
    }
  });

  it('lets at most one of two parallel refreshes of one token succeed (no reuse interval)', async () => {
    const account = await registerAccount(strict);
    const responses = await Promise.all([refresh(strict, account.refreshToken), refresh(strict, account.refreshToken)]);
    expect(responses.map(errorCode)).not.toContain('INTERNAL_SERVER_ERROR');
    expect(responses.filter((response) => response.data?.refreshToken).length).toBeLessThanOrEqual(1);
    for (const response of responses) {
      if (!response.data?.refreshToken) expect(errorCode(response)).toBe('UNAUTHENTICATED');
    }
  });

  it('keeps the session id across a refresh', async () => {
    const account = await registerAccount(server);
    const before = await server.graphql(SESSIONS, {}, { token: account.accessToken });
    expect(before.errors).toBeUndefined();
    expect(before.data?.sessions).toHaveLength(1);

    const rotated = await refresh(server, account.refreshToken);
    expect(rotated.errors).toBeUndefined();
    const after = await server.graphql(SESSIONS, {}, { token: rotated.data!.refreshToken.accessToken });
    expect(after.errors).toBeUndefined();
    expect(after.data?.sessions).toHaveLength(1);
    expect(after.data?.sessions[0].id).toBe(before.data?.sessions[0].id);
    expect(after.data?.sessions[0].current).toBe(true);
    expect(after.data?.sessions[0].createdAt).toBe(before.data?.sessions[0].createdAt);
  });
});

describe('logout', () => {
  it('ends the access token at once and the refresh token of that session', async () => {
    const account = await registerAccount(server);
    const response = await server.graphql(LOGOUT, {}, { token: account.accessToken });
    expect(response.errors).toBeUndefined();
    expect(response.data?.logout).toBe(true);
    await expectSignedOut(account.accessToken);
    await expectRefreshRefused(account.refreshToken);
  });

  it('ends the session even after its tokens were refreshed', async () => {
    const account = await registerAccount(server);
    const rotated = (await refresh(server, account.refreshToken)).data!.refreshToken;
    const response = await server.graphql(LOGOUT, {}, { token: rotated.accessToken });
    expect(response.data?.logout).toBe(true);
    await expectSignedOut(rotated.accessToken);
    await expectRefreshRefused(rotated.refreshToken);
  });

  it('leaves the other sessions of the same user signed in', async () => {
    const account = await registerAccount(server);
    const second = await signInAgain(account);
    const response = await server.graphql(LOGOUT, {}, { token: account.accessToken });
    expect(response.data?.logout).toBe(true);
    await expectSignedOut(account.accessToken);

    await expectSignedIn(second.accessToken, account.user.id);
    const rotated = await refresh(server, second.refreshToken);
    expect(rotated.errors).toBeUndefined();
    await expectSignedIn(rotated.data!.refreshToken.accessToken, account.user.id);
  });
});

describe('logoutAll', () => {
  it('ends every session of the caller', async () => {
    const account = await registerAccount(server);
    const second = await signInAgain(account);
    const third = await signInAgain(account);
    const response = await server.graphql(LOGOUT_ALL, {}, { token: second.accessToken });
    expect(response.errors).toBeUndefined();
    expect(response.data?.logoutAll).toBe(true);
    for (const session of [account, second, third]) {
      await expectSignedOut(session.accessToken);
      await expectRefreshRefused(session.refreshToken);
    }
  });

  it('leaves other users signed in', async () => {
    const caller = await registerAccount(server);
    const other = await registerAccount(server);
    const response = await server.graphql(LOGOUT_ALL, {}, { token: caller.accessToken });
    expect(response.data?.logoutAll).toBe(true);
    await expectSignedOut(caller.accessToken);
    await expectSignedIn(other.accessToken, other.user.id);
    const rotated = await refresh(server, other.refreshToken);
    expect(rotated.errors).toBeUndefined();
  });
});

describe('sessions', () => {
  it('lists one entry per signed-in device, marking only the caller\'s as current', async () => {
    const account = await registerAccount(server);
    await signInAgain(account);
    const third = await signInAgain(account);
    const response = await server.graphql(SESSIONS, {}, { token: third.accessToken });
    expect(response.errors).toBeUndefined();
    const sessions = response.data?.sessions as Array<{ id: string; current: boolean }>;
    expect(sessions).toHaveLength(3);
    expect(new Set(sessions.map((session) => session.id)).size).toBe(3);
    expect(sessions.filter((session) => session.current)).toHaveLength(1);

    // Each device sees the same list with its own entry as current.
    const fromFirst = await server.graphql(SESSIONS, {}, { token: account.accessToken });
    const firstCurrent = (fromFirst.data?.sessions as typeof sessions).filter((session) => session.current);
    expect(firstCurrent).toHaveLength(1);
    expect(firstCurrent[0].id).not.toBe(sessions.find((session) => session.current)!.id);
    expect(new Set((fromFirst.data?.sessions as typeof sessions).map((session) => session.id))).toEqual(new Set(sessions.map((session) => session.id)));
  });

  it('records the User-Agent header sent at sign-in', async () => {
    const account = await registerAccount(server);
    const phone = await signInAgain(account, { headers: { 'user-agent': 'TestPhone/1.0 (sessions test)' } });
    const laptop = await signInAgain(account, { headers: { 'user-agent': 'TestLaptop/2.0' } });
    const response = await server.graphql(SESSIONS, {}, { token: laptop.accessToken });
    expect(response.errors).toBeUndefined();
    const sessions = response.data?.sessions as Array<{ userAgent: string | null; current: boolean }>;
    expect(sessions).toHaveLength(3);
    expect(sessions.map((session) => session.userAgent)).toEqual(expect.arrayContaining(['TestPhone/1.0 (sessions test)', 'TestLaptop/2.0']));
    expect(sessions.find((session) => session.current)?.userAgent).toBe('TestLaptop/2.0');
    expect(phone.accessToken).toEqual(expect.any(String));
  });

  it('revokeSession of another own session returns true and ends that session', async () => {
    const account = await registerAccount(server);
    const other = await signInAgain(account, { headers: { 'user-agent': 'to-be-revoked' } });
    const listed = await server.graphql(SESSIONS, {}, { token: account.accessToken });
    const target = (listed.data?.sessions as Array<{ id: string; userAgent: string | null; current: boolean }>).find(
      (session) => session.userAgent === 'to-be-revoked',
    );
    expect(target?.current).toBe(false);

    const response = await server.graphql(REVOKE_SESSION, { id: target!.id }, { token: account.accessToken });
    expect(response.errors).toBeUndefined();
    expect(response.data?.revokeSession).toBe(true);
    await expectSignedOut(other.accessToken);
    await expectRefreshRefused(other.refreshToken);
    await expectSignedIn(account.accessToken, account.user.id);

    const after = await server.graphql(SESSIONS, {}, { token: account.accessToken });
    expect((after.data?.sessions as Array<{ id: string }>).map((session) => session.id)).not.toContain(target!.id);
  });

  it('revokeSession with another user\'s session id returns false and leaves that session alone', async () => {
    const attacker = await registerAccount(server);
    const victim = await registerAccount(server);
    const victimSessions = await server.graphql(SESSIONS, {}, { token: victim.accessToken });
    const victimSessionId = victimSessions.data?.sessions[0].id as string;

    const response = await server.graphql(REVOKE_SESSION, { id: victimSessionId }, { token: attacker.accessToken });
    expect(response.errors).toBeUndefined();
    expect(response.data?.revokeSession).toBe(false);
    await expectSignedIn(victim.accessToken, victim.user.id);
    const rotated = await refresh(server, victim.refreshToken);
    expect(rotated.errors).toBeUndefined();
  });

  it('revokeSession of an unknown id returns false', async () => {
    const account = await registerAccount(server);
    const response = await server.graphql(REVOKE_SESSION, { id: randomUUID() }, { token: account.accessToken });
    expect(response.errors).toBeUndefined();
    expect(response.data?.revokeSession).toBe(false);
    await expectSignedIn(account.accessToken, account.user.id);
  });

  it('revokeSession of something that is not a UUID is not an internal error', async () => {
    const account = await registerAccount(server);
    for (const id of ['not-a-uuid', '', '1', "' or 1=1 --"]) {
      const response = await server.graphql(REVOKE_SESSION, { id }, { token: account.accessToken });
      expect(errorCode(response), id).not.toBe('INTERNAL_SERVER_ERROR');
      if (!response.errors) expect(response.data?.revokeSession).toBe(false);
    }
    await expectSignedIn(account.accessToken, account.user.id);
  });
});

describe('operations that need a signed-in caller', () => {
  const operations: Array<[string, string, Record<string, unknown>]> = [
    ['me', ME, {}],
    ['sessions', SESSIONS, {}],
    ['logout', LOGOUT, {}],
    ['logoutAll', LOGOUT_ALL, {}],
    ['revokeSession', REVOKE_SESSION, { id: randomUUID() }],
  ];

  it.each(operations)('%s without a token is UNAUTHENTICATED', async (_name, query, variables) => {
    const response = await server.graphql(query, variables);
    expect(response.data ?? null).toBeNull();
    expect(errorCode(response)).toBe('UNAUTHENTICATED');
  });
});

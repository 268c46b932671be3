import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHANGE_PASSWORD, DELETE_ME, FORGOT_PASSWORD, LOGIN, ME, registerAccount, RESET_PASSWORD, type SignedInAccount } from '../support/accounts.js';
import { errorCode, errorField, type GraphQLResponse, startTestServer, type TestServer } from '../support/server.js';
import { resetTokenOf, startSmtpServer, type TestSmtpServer } from '../support/smtp.js';

// The per-account backoff of src/modules/sign-in/login-backoff.ts, alone: RATE_LIMIT_SCALE=0 turns
// the per-IP and per-identifier limits off, so every RATE_LIMITED here comes from the backoff.
const FREE_FAILURES = 5;
const MAX_DELAY_SECONDS = 15 * 60;
const FAILURES_BEFORE_RESET = 100;

const INVALID_CREDENTIALS = 'Invalid email, username or password.';

let server: TestServer;
let smtp: TestSmtpServer;
beforeAll(async () => {
  smtp = await startSmtpServer();
  server = await startTestServer({ RATE_LIMIT_SCALE: '0', SMTP_URL: smtp.url });
});
afterAll(async () => {
  await server?.stop();
  await smtp?.stop();
});

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function wrongPassword(): string {
  return `not the password ${randomBytes(4).toString('hex')}`;
}

function login(identifier: string, password: string): Promise<GraphQLResponse> {
  return server.graphql(LOGIN, { input: { identifier, password } });
}

interface BackoffState {
  failed_login_count: number;
  login_blocked_until: string | null;
  /** Seconds from now until login_blocked_until (null when not blocked). */
  wait: number | null;
  /** 100 consecutive failures: only a password reset opens the account. */
  reset_required: boolean;
}

async function backoffOf(userId: string): Promise<BackoffState> {
  const [row] = await server.sql<BackoffState>(
    `select failed_login_count, login_blocked_until::text as login_blocked_until,
            extract(epoch from (login_blocked_until - now()))::float8 as wait,
            failed_login_count >= ? as reset_required
       from users where id = ?`,
    [FAILURES_BEFORE_RESET, userId],
  );
  return { ...row, failed_login_count: Number(row.failed_login_count), wait: row.wait === null ? null : Number(row.wait) };
}

/** Moves the account's delay into the past, as if the user had waited it out. */
async function waitOutDelay(userId: string): Promise<void> {
  await server.sql("update users set login_blocked_until = now() - interval '1 second' where id = ?", [userId]);
}

/** `times` failed logins in a row; each must be UNAUTHENTICATED (delays are waited out via SQL). */
async function failLogins(account: SignedInAccount, times: number): Promise<void> {
  for (let attempt = 1; attempt <= times; attempt += 1) {
    const response = await login(account.user.email, wrongPassword());
    expect(errorCode(response), `failure ${attempt}: ${JSON.stringify(response.errors)}`).toBe('UNAUTHENTICATED');
  }
}

function expectBackoff(response: GraphQLResponse): number {
  expect(errorCode(response), JSON.stringify(response.errors)).toBe('RATE_LIMITED');
  expect(response.data ?? null).toBeNull();
  const retryAfter = response.errors![0].extensions!.retryAfter;
  expect(Number.isInteger(retryAfter)).toBe(true);
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  return retryAfter;
}

async function sessionCount(userId: string): Promise<number> {
  const [row] = await server.sql<{ n: string }>('select count(*) as n from sessions where user_id = ?', [userId]);
  return Number(row.n);
}

async function passwordHashOf(userId: string): Promise<string> {
  const [row] = await server.sql<{ password_hash: string }>('select password_hash from users where id = ?', [userId]);
  return row.password_hash;
}

// ---------------------------------------------------------------------------------------------
// login
// ---------------------------------------------------------------------------------------------

describe('backoff at login', () => {
  it('answers 5 wrong passwords with UNAUTHENTICATED each, then refuses the 6th attempt right away with RATE_LIMITED even with the right password, without checking it', async () => {
    const account = await registerAccount(server);
    await failLogins(account, FREE_FAILURES);
    const sessionsBefore = await sessionCount(account.user.id);

    const sixth = await login(account.user.email, account.password);
    expect(expectBackoff(sixth)).toBeLessThanOrEqual(1);
    expect(sixth.errors![0].message).not.toBe(INVALID_CREDENTIALS);
    expect(await sessionCount(account.user.id)).toBe(sessionsBefore);
    // A refused attempt is not counted again: the delay is not extended by knocking.
    expect((await backoffOf(account.user.id)).failed_login_count).toBe(FREE_FAILURES);
  });

  it('lets the right password in once the delay has passed, and puts the count back to 0', async () => {
    const account = await registerAccount(server);
    await failLogins(account, FREE_FAILURES);
    expect(errorCode(await login(account.user.email, account.password))).toBe('RATE_LIMITED');

    await waitOutDelay(account.user.id);
    const response = await login(account.user.email, account.password);
    expect(response.errors, JSON.stringify(response.errors)).toBeUndefined();
    expect(response.data?.login.user.id).toBe(account.user.id);
    expect(await backoffOf(account.user.id)).toMatchObject({ failed_login_count: 0, login_blocked_until: null });
  });

  it('doubles the delay with each further failure: 1, 2, 4 and 8 seconds after the 5th, 6th, 7th and 8th', async () => {
    const account = await registerAccount(server);
    await failLogins(account, FREE_FAILURES - 1);
    for (const [failure, expected] of [
      [5, 1],
      [6, 2],
      [7, 4],
      [8, 8],
    ]) {
      await waitOutDelay(account.user.id);
      expect(errorCode(await login(account.user.email, wrongPassword())), `failure ${failure}`).toBe('UNAUTHENTICATED');
      const state = await backoffOf(account.user.id);
      expect(state.failed_login_count).toBe(failure);
      expect(state.wait, `delay after failure ${failure}`).toBeGreaterThan(expected - 1);
      expect(state.wait).toBeLessThanOrEqual(expected + 0.5);
      const refused = await login(account.user.email, account.password);
      expect(expectBackoff(refused)).toBeLessThanOrEqual(expected);
    }
  });

  it('caps the delay at 15 minutes: after 20 failures the next one waits 900 s, not 2^16 s', async () => {
    const account = await registerAccount(server);
    await server.sql('update users set failed_login_count = 20, login_blocked_until = null where id = ?', [account.user.id]);
    expect(errorCode(await login(account.user.email, wrongPassword()))).toBe('UNAUTHENTICATED');
    const state = await backoffOf(account.user.id);
    expect(state.failed_login_count).toBe(21);
    expect(state.reset_required).toBe(false);
    expect(state.wait).toBeGreaterThan(MAX_DELAY_SECONDS - 5);
    expect(state.wait).toBeLessThanOrEqual(MAX_DELAY_SECONDS + 1);
    const retryAfter = expectBackoff(await login(account.user.email, account.password));
    expect(retryAfter).toBeGreaterThan(MAX_DELAY_SECONDS - 5);
    expect(retryAfter).toBeLessThanOrEqual(MAX_DELAY_SECONDS);
  });

  it('lets at most 5 of 20 wrong passwords fired in parallel at a fresh account be compared; the rest are RATE_LIMITED', async () => {
    const account = await registerAccount(server);
    const responses = await Promise.all(Array.from({ length: 20 }, () => login(account.user.email, wrongPassword())));
    const codes = responses.map(errorCode);
    const compared = codes.filter((code) => code === 'UNAUTHENTICATED').length;
    expect(compared, codes.join(', ')).toBeLessThanOrEqual(FREE_FAILURES);
    expect(codes.filter((code) => code === 'RATE_LIMITED')).toHaveLength(20 - compared);
    expect((await backoffOf(account.user.id)).failed_login_count).toBeLessThanOrEqual(FREE_FAILURES + 1);
  });

  it('never adds up failures separated by successful logins: an owner\'s occasional typos never lead to a delay', async () => {
    const account = await registerAccount(server);
    for (let round = 1; round <= 3; round += 1) {
      await failLogins(account, FREE_FAILURES - 1);
      const success = await login(account.user.email, account.password);
      expect(success.errors, `round ${round}: ${JSON.stringify(success.errors)}`).toBeUndefined();
      expect((await backoffOf(account.user.id)).failed_login_count).toBe(0);
    }
  });

  it('after 100 consecutive failures refuses even the right password, with a message telling to reset the password, for good', async () => {
    const account = await registerAccount(server);
    await server.sql('update users set failed_login_count = ?, login_blocked_until = null where id = ?', [FAILURES_BEFORE_RESET - 1, account.user.id]);
    expect(errorCode(await login(account.user.email, wrongPassword()))).toBe('UNAUTHENTICATED');
    expect(await backoffOf(account.user.id)).toMatchObject({ failed_login_count: FAILURES_BEFORE_RESET, reset_required: true });

    const response = await login(account.user.email, account.password);
    expectBackoff(response);
    expect(response.errors![0].message).toMatch(/reset the password/i);
    // Waiting does not help: the block has no end.
    await waitOutDelay(account.user.id);
    expect(errorCode(await login(account.user.username, account.password))).toBe('RATE_LIMITED');
  });

  it('lifts the reset-required block with a password reset through the emailed link, and the new password signs in', async () => {
    const account = await registerAccount(server);
    await server.sql('update users set failed_login_count = ?, login_blocked_until = null where id = ?', [FAILURES_BEFORE_RESET - 1, account.user.id]);
    expect(errorCode(await login(account.user.email, wrongPassword()))).toBe('UNAUTHENTICATED');
    expect((await backoffOf(account.user.id)).reset_required).toBe(true);

    const forgot = await server.graphql(FORGOT_PASSWORD, { input: { identifier: account.user.email } });
    expect(forgot.data?.forgotPassword).toBe(true);
    const mail = await smtp.waitFor((message) => message.to === account.user.email && message.subject === 'Reset your password', 5000);
    const newPassword = `a fresh start ${randomBytes(4).toString('hex')}`;
    const reset = await server.graphql(RESET_PASSWORD, { input: { token: resetTokenOf(mail), newPassword } });
    expect(reset.errors, JSON.stringify(reset.errors)).toBeUndefined();
    expect(await backoffOf(account.user.id)).toMatchObject({ failed_login_count: 0, login_blocked_until: null });

    const signedIn = await login(account.user.email, newPassword);
    expect(signedIn.errors, JSON.stringify(signedIn.errors)).toBeUndefined();
    expect(signedIn.data?.login.user.id).toBe(account.user.id);
  });

  it('never RATE_LIMITs an unknown identifier: with no account row there is nothing to count (by design; the per-identifier rate limit covers it)', async () => {
    // By design: the backoff lives on the account row. Unknown identifiers are left to the
    // per-identifier rate limit (10 per 15 min, see rate-limits.test.ts), which is off here.
    const identifier = `nobody-${randomBytes(4).toString('hex')}@example.com`;
    for (let attempt = 1; attempt <= 20; attempt += 1) {
      const response = await login(identifier, wrongPassword());
      expect(errorCode(response), `attempt ${attempt}`).toBe('UNAUTHENTICATED');
      expect(response.errors![0].message).toBe(INVALID_CREDENTIALS);
    }
    const [row] = await server.sql<{ n: string }>('select count(*) as n from users where email = ?', [identifier]);
    expect(Number(row.n)).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Re-authentication of a signed-in user
// ---------------------------------------------------------------------------------------------

describe('backoff when a signed-in user re-enters the password', () => {
  // A signed-in session re-authenticates on a budget of its own (10 an hour, and 100 across the
  // account's own devices until one succeeds: test/security/device-tokens.test.ts, where the limits
  // are at their real size; here they are off). The account's backoff is the sign-in's.
  it("keeps wrong passwords at changePassword and deleteMe out of the account's backoff: the owner signing in elsewhere is not held back by a stolen session's guesses", async () => {
    const account = await registerAccount(server);
    const hashBefore = await passwordHashOf(account.user.id);
    for (let attempt = 1; attempt <= FREE_FAILURES + 1; attempt += 1) {
      const changed = await server.graphql(CHANGE_PASSWORD, { input: { currentPassword: wrongPassword(), newPassword: wrongPassword() } }, { token: account.accessToken });
      expect(errorField(changed), `attempt ${attempt}`).toBe('currentPassword');
      const deleted = await server.graphql(DELETE_ME, { password: wrongPassword() }, { token: account.accessToken });
      expect(errorField(deleted), `attempt ${attempt}`).toBe('password');
    }
    expect(await passwordHashOf(account.user.id)).toBe(hashBefore);
    expect((await server.graphql(ME, {}, { token: account.accessToken })).data?.me.id).toBe(account.user.id);
    expect(await backoffOf(account.user.id)).toMatchObject({ failed_login_count: 0, login_blocked_until: null });
    const signedIn = await login(account.user.email, account.password);
    expect(signedIn.errors, JSON.stringify(signedIn.errors)).toBeUndefined();
  });
});

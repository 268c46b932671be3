import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHANGE_PASSWORD, fromFreshAddress, LOGIN, ME, REFRESH, type SignedInAccount } from '../support/accounts.js';
import { errorCode, type GraphQLResponse, startTestServer, type TestServer } from '../support/server.js';
import { resetTokenOf, startSmtpServer, type TestSmtpServer } from '../support/smtp.js';

// Strangers cannot turn brute-force protection against the owner (OWASP Authentication Cheat
// Sheet, "device cookies"; ASVS V2.2.1). Limits at their real size (RATE_LIMIT_SCALE=1); TRUST_PROXY=1
// lets the strangers of each test speak from addresses of their own, as a botnet would.
const LOGIN_PER_IDENTIFIER = 10;
const DEVICE_ATTEMPTS = 10;
const FAILURES_BEFORE_RESET = 100;

let server: TestServer;
let smtp: TestSmtpServer;
beforeAll(async () => {
  smtp = await startSmtpServer();
  server = await startTestServer({ RATE_LIMIT_SCALE: '1', TRUST_PROXY: '1', SMTP_URL: smtp.url });
});
afterAll(async () => {
  await server?.stop();
  await smtp?.stop();
});

function login(identifier: string, password: string, deviceToken?: string | null): Promise<GraphQLResponse> {
  return server.graphql(LOGIN, { input: { identifier, password, ...(deviceToken === undefined ? {} : { deviceToken }) } }, { headers: fromFreshAddress() });
}

function wrongPassword(): string {
  return `not the password ${randomBytes(4).toString('hex')}`;
}

/** Registers from an address of its own (registration is limited per IP). */
async function newOwner(): Promise<SignedInAccount> {
  const input = { email: `owner-${randomBytes(4).toString('hex')}@example.com`, username: `owner_${randomBytes(4).toString('hex')}`, password: `the owner's passphrase ${randomBytes(4).toString('hex')}` };
  const response = await server.graphql(`mutation R($input: RegisterInput!) { register(input: $input) { accessToken refreshToken deviceToken user { id email username role } } }`, { input }, { headers: fromFreshAddress() });
  if (!response.data?.register) throw new Error(JSON.stringify(response.errors));
  return { ...response.data.register, password: input.password };
}

async function failedLoginCount(userId: string): Promise<number> {
  const [row] = await server.sql<{ failed_login_count: number }>('select failed_login_count from users where id = ?', [userId]);
  return Number(row.failed_login_count);
}

function expectSignedIn(response: GraphQLResponse, owner: SignedInAccount): void {
  expect(response.errors, JSON.stringify(response.errors)).toBeUndefined();
  expect(response.data?.login.user.id).toBe(owner.user.id);
}

describe('device tokens', () => {
  it('are answered by every sign-in and stay the same for one user on one device', async () => {
    const owner = await newOwner();
    expect(owner.deviceToken).toMatch(/^[0-9a-f-]{36}\.[A-Za-z0-9_-]{43}$/);
    const again = await login(owner.user.email, owner.password, owner.deviceToken);
    expectSignedIn(again, owner);
    expect(again.data!.login.deviceToken).toBe(owner.deviceToken);
    const refreshed = await server.graphql(REFRESH, { refreshToken: again.data!.login.refreshToken });
    expect(refreshed.data?.refreshToken.deviceToken).toBe(owner.deviceToken);

    // Another device (no token) gets a token of its own; another account's token counts as none.
    const elsewhere = await login(owner.user.username, owner.password);
    expectSignedIn(elsewhere, owner);
    expect(elsewhere.data!.login.deviceToken).not.toBe(owner.deviceToken);
    const stranger = await newOwner();
    const borrowed = await login(owner.user.email, owner.password, stranger.deviceToken);
    expectSignedIn(borrowed, owner);
    expect([owner.deviceToken, stranger.deviceToken, elsewhere.data!.login.deviceToken]).not.toContain(borrowed.data!.login.deviceToken);
  });

  it('let the owner\'s device sign in at once while strangers from many addresses keep the account locked for everyone else', async () => {
    const owner = await newOwner();
    // Strangers name the account from a fresh address each time, until the account's shared budget
    // is spent (the backoff starts answering RATE_LIMITED after five; the per-identifier limit after ten).
    for (let attempt = 0; attempt < LOGIN_PER_IDENTIFIER; attempt += 1) {
      expect(['UNAUTHENTICATED', 'RATE_LIMITED']).toContain(errorCode(await login(owner.user.username, wrongPassword())));
    }
    // The account is now closed to anyone without the device token, the owner's right password included …
    expect(errorCode(await login(owner.user.username, owner.password))).toBe('RATE_LIMITED');
    expect(errorCode(await login(owner.user.username, owner.password, 'forged'))).toBe('RATE_LIMITED');
    // … but the owner's device signs in right away: the stranger kept it out for 0 s.
    const startedAt = Date.now();
    const fromDevice = await login(owner.user.username, owner.password, owner.deviceToken);
    expectSignedIn(fromDevice, owner);
    expect(Date.now() - startedAt).toBeLessThan(5_000);
  });

  it('keep working when strangers have driven the account to the 100-failure cap that only a reset lifts', async () => {
    const owner = await newOwner();
    // What 100 strangers' failures leave behind (the backoff tests reach it through the API).
    await server.sql('update users set failed_login_count = ? where id = ?', [FAILURES_BEFORE_RESET, owner.user.id]);
    const untrusted = await login(owner.user.email, owner.password);
    expect(errorCode(untrusted)).toBe('RATE_LIMITED');
    expect(untrusted.errors![0].message).toMatch(/reset the password/);
    expectSignedIn(await login(owner.user.email, owner.password, owner.deviceToken), owner);
    // The device's success does not forgive the strangers' failures.
    expect(await failedLoginCount(owner.user.id)).toBe(FAILURES_BEFORE_RESET);
  });

  it("keep strangers from blocking the signed-in owner's password change; a thief with the session gets the session's 10 guesses", async () => {
    const owner = await newOwner();
    const changePassword = (currentPassword: string, newPassword = `a fresh passphrase ${randomBytes(4).toString('hex')}`) =>
      server.graphql(CHANGE_PASSWORD, { input: { currentPassword, newPassword } }, { token: owner.accessToken, headers: fromFreshAddress() });
    // Strangers hold the account in its backoff (the owner's right password from a new device waits).
    for (let attempt = 0; attempt < LOGIN_PER_IDENTIFIER; attempt += 1) await login(owner.user.username, wrongPassword());
    expect(errorCode(await login(owner.user.username, owner.password))).toBe('RATE_LIMITED');

    // Someone holding the owner's session (not the password) guesses on the session's own budget.
    const guesses: Array<string | undefined> = [];
    for (let attempt = 0; attempt <= DEVICE_ATTEMPTS; attempt += 1) guesses.push(errorCode(await changePassword(wrongPassword())));
    expect(guesses.slice(0, DEVICE_ATTEMPTS).every((code) => code === 'BAD_USER_INPUT')).toBe(true);
    expect(guesses.at(-1)).toBe('RATE_LIMITED');

    // Another session of the owner's (a device that signed in with its token) changes the password at
    // once: before, it answered RATE_LIMITED for as long as the strangers kept guessing.
    const signedIn = (await login(owner.user.username, owner.password, owner.deviceToken)).data!.login;
    const changed = await server.graphql(CHANGE_PASSWORD, { input: { currentPassword: owner.password, newPassword: `the owner's new passphrase ${randomBytes(4).toString('hex')}` } }, { token: signedIn.accessToken, headers: fromFreshAddress() });
    expect(changed.errors, JSON.stringify(changed.errors)).toBeUndefined();
  });

  it("give a stolen session 100 guesses at the password in all, hour after hour, then only a reset goes on; the reset's credentials start over", async () => {
    const owner = await newOwner();
    const changePassword = (token: string, currentPassword: string) =>
      server.graphql(CHANGE_PASSWORD, { input: { currentPassword, newPassword: `a fresh passphrase ${randomBytes(4).toString('hex')}` } }, { token, headers: fromFreshAddress() });
    // Ten guesses an hour; the hours pass here by expiring the sessions' hourly windows (the cap under
    // test is not aged). Before, the session's guesses came back with every 30-day window, and its
    // own failures kept the account waiting so that it could go on past the account's cap.
    const answers: Array<string | undefined> = [];
    for (let hour = 0; hour < 11 && !answers.includes('RATE_LIMITED'); hour += 1) {
      await server.sql("update rate_limits set expire = 0 where key like 'loginPerDevice:session:%'");
      for (let guess = 0; guess < DEVICE_ATTEMPTS; guess += 1) {
        const answer = await changePassword(owner.accessToken, wrongPassword());
        answers.push(errorCode(answer));
        if (errorCode(answer) === 'RATE_LIMITED') {
          expect(answer.errors![0].message).toMatch(/reset the password/);
          break;
        }
      }
    }
    expect(answers.filter((code) => code === 'BAD_USER_INPUT')).toHaveLength(FAILURES_BEFORE_RESET);
    expect(answers.at(-1)).toBe('RATE_LIMITED');
    // Even the right password waits for the reset; the account's sign-in was never touched.
    expect(errorCode(await changePassword(owner.accessToken, owner.password))).toBe('RATE_LIMITED');
    expect(await failedLoginCount(owner.user.id)).toBe(0);

    // The owner resets the password: new credentials, a cap of their own.
    await server.graphql('mutation F($input: ForgotPasswordInput!) { forgotPassword(input: $input) }', { input: { identifier: owner.user.email } }, { headers: fromFreshAddress() });
    const token = resetTokenOf(await smtp.waitFor((mail) => mail.to === owner.user.email && mail.subject === 'Reset your password'));
    const newPassword = `the owner's own again ${randomBytes(4).toString('hex')}`;
    expect((await server.graphql('mutation R($input: ResetPasswordInput!) { resetPassword(input: $input) }', { input: { token, newPassword } }, { headers: fromFreshAddress() })).errors).toBeUndefined();
    const signedIn = await login(owner.user.email, newPassword, owner.deviceToken);
    expect(errorCode(await changePassword(signedIn.data!.login.accessToken, newPassword))).toBeUndefined();
  });

  it('make failures count against that device only, never against the account', async () => {
    const owner = await newOwner();
    const other = await login(owner.user.email, owner.password);
    const otherDevice = other.data!.login.deviceToken as string;
    for (let attempt = 0; attempt < DEVICE_ATTEMPTS; attempt += 1) {
      expect(errorCode(await login(owner.user.email, wrongPassword(), owner.deviceToken))).toBe('UNAUTHENTICATED');
    }
    const locked = await login(owner.user.email, owner.password, owner.deviceToken);
    expect(errorCode(locked)).toBe('RATE_LIMITED');
    expect(locked.errors![0].extensions!.retryAfter).toBeGreaterThan(0);
    expect(await failedLoginCount(owner.user.id)).toBe(0);
    // Other devices and untrusted clients are untouched by that device's failures.
    expectSignedIn(await login(owner.user.email, owner.password, otherDevice), owner);
    expectSignedIn(await login(owner.user.email, owner.password), owner);
  });

  it('let 20 wrong passwords fired at once from one device be compared at most 10 times', async () => {
    const owner = await newOwner();
    const responses = await Promise.all(Array.from({ length: 20 }, () => login(owner.user.email, wrongPassword(), owner.deviceToken)));
    const codes = responses.map(errorCode);
    expect(codes.filter((code) => code === 'UNAUTHENTICATED').length).toBeLessThanOrEqual(DEVICE_ATTEMPTS);
    expect(codes.filter((code) => code === 'RATE_LIMITED').length).toBeGreaterThanOrEqual(20 - DEVICE_ATTEMPTS);
  });

  it('start the device\'s count over after a successful sign-in on it', async () => {
    const owner = await newOwner();
    for (let round = 0; round < 3; round += 1) {
      for (let attempt = 0; attempt < DEVICE_ATTEMPTS - 1; attempt += 1) {
        expect(errorCode(await login(owner.user.email, wrongPassword(), owner.deviceToken))).toBe('UNAUTHENTICATED');
      }
      expectSignedIn(await login(owner.user.email, owner.password, owner.deviceToken), owner);
    }
  });

  it.each([
    ['another account\'s token', async (_owner: SignedInAccount) => (await newOwner()).deviceToken],
    ['a forged token', async (owner: SignedInAccount) => `${owner.deviceToken.split('.')[0]}.${'A'.repeat(43)}`],
    ['the owner\'s token with "=" appended', async (owner: SignedInAccount) => `${owner.deviceToken}=`],
    ['the owner\'s token with a space appended', async (owner: SignedInAccount) => `${owner.deviceToken} `],
    ['the owner\'s token in upper case', async (owner: SignedInAccount) => owner.deviceToken.toUpperCase()],
  ])('are not trusted when a stranger presents %s: the failure counts against the account', async (_name, tokenFor) => {
    const owner = await newOwner();
    const token = await tokenFor(owner);
    expect(errorCode(await login(owner.user.email, wrongPassword(), token))).toBe('UNAUTHENTICATED');
    expect(await failedLoginCount(owner.user.id)).toBe(1);
  });

  it('are disowned by a password change: a former token pays in a budget all former devices share, the next sign-in gets a current one', async () => {
    const owner = await newOwner();
    const newPassword = `${owner.password} changed`;
    const changed = await server.graphql('mutation C($input: ChangePasswordInput!) { changePassword(input: $input) }', { input: { currentPassword: owner.password, newPassword } }, { token: owner.accessToken, headers: fromFreshAddress() });
    expect(changed.data?.changePassword).toBe(true);
    const signedIn = await login(owner.user.email, newPassword, owner.deviceToken);
    expectSignedIn(signedIn, owner);
    expect(signedIn.data!.login.deviceToken).not.toBe(owner.deviceToken);
    expect(signedIn.data!.login.deviceToken.split('.')[0]).toBe(owner.deviceToken.split('.')[0]);
    const again = await login(owner.user.email, newPassword, signedIn.data!.login.deviceToken);
    expect(again.data!.login.deviceToken).toBe(signedIn.data!.login.deviceToken);
  });

  it('let whoever collected tokens under the old password guess the new one within one shared budget, not one per token', async () => {
    const owner = await newOwner();
    // A thief who knew the old password signed in from many "devices".
    const collected: string[] = [];
    for (let device = 0; device < 4; device += 1) collected.push((await login(owner.user.email, owner.password)).data!.login.deviceToken);
    const newPassword = `${owner.password} changed`;
    await server.graphql('mutation C($input: ChangePasswordInput!) { changePassword(input: $input) }', { input: { currentPassword: owner.password, newPassword } }, { token: owner.accessToken, headers: fromFreshAddress() });
    for (let guess = 0; guess < LOGIN_PER_IDENTIFIER; guess += 1) {
      expect(errorCode(await login(owner.user.email, wrongPassword(), collected[guess % collected.length]))).toBe('UNAUTHENTICATED');
    }
    // None of it touched the strangers' budget.
    expect(await failedLoginCount(owner.user.id)).toBe(0);
    // Beyond the shared budget they guess like strangers: in the account's backoff, towards its cap.
    const answers: string[] = [];
    for (let guess = 0; guess < 10; guess += 1) answers.push(errorCode(await login(owner.user.email, wrongPassword(), collected[guess % collected.length]))!);
    expect(await failedLoginCount(owner.user.id)).toBeGreaterThan(0);
    expect(answers).toContain('RATE_LIMITED');
  });

  it("keep strangers from locking the owner's device out after a password reset", async () => {
    const owner = await newOwner();
    await server.graphql('mutation F($input: ForgotPasswordInput!) { forgotPassword(input: $input) }', { input: { identifier: owner.user.email } }, { headers: fromFreshAddress() });
    const newPassword = `${owner.password} after the reset`;
    const resetToken = resetTokenOf(await smtp.waitFor((mail) => mail.to === owner.user.email && mail.subject === 'Reset your password'));
    const reset = await server.graphql('mutation R($input: ResetPasswordInput!) { resetPassword(input: $input) }', { input: { token: resetToken, newPassword } }, { headers: fromFreshAddress() });
    expect(reset.data?.resetPassword).toBe(true);
    // Strangers exhaust the account's budget from many addresses.
    for (let attempt = 0; attempt < LOGIN_PER_IDENTIFIER + 2; attempt += 1) await login(owner.user.email, wrongPassword());
    expect(errorCode(await login(owner.user.email, newPassword))).toBe('RATE_LIMITED');
    // The owner's device, known from before the reset, signs in at once.
    expectSignedIn(await login(owner.user.email, newPassword, owner.deviceToken), owner);
  });

  // A thief who knew the old password kept device tokens; after the owner's reset they spend the
  // budget all former devices share, and strangers hold the account's backoff. The device that
  // presented its token with the reset still signs in at once; one that did not, does not.
  it('keep the device that reset the password in, however a thief with former tokens and strangers guess', async () => {
    const owner = await newOwner();
    const elsewhere = (await login(owner.user.email, owner.password)).data!.login.deviceToken as string;
    const collected: string[] = [];
    for (let device = 0; device < 4; device += 1) collected.push((await login(owner.user.email, owner.password)).data!.login.deviceToken);
    await server.graphql('mutation F($input: ForgotPasswordInput!) { forgotPassword(input: $input) }', { input: { identifier: owner.user.email } }, { headers: fromFreshAddress() });
    const newPassword = `${owner.password} after the reset`;
    const resetToken = resetTokenOf(await smtp.waitFor((mail) => mail.to === owner.user.email && mail.subject === 'Reset your password'));
    const reset = await server.graphql('mutation R($input: ResetPasswordInput!) { resetPassword(input: $input) }', { input: { token: resetToken, newPassword, deviceToken: owner.deviceToken } }, { headers: fromFreshAddress() });
    expect(reset.data?.resetPassword).toBe(true);
    // The thief spends the former devices' budget (and more), strangers the account's.
    for (let guess = 0; guess < LOGIN_PER_IDENTIFIER + 2; guess += 1) await login(owner.user.email, wrongPassword(), collected[guess % collected.length]);
    for (let attempt = 0; attempt < LOGIN_PER_IDENTIFIER + 2; attempt += 1) await login(owner.user.email, wrongPassword());
    // Another of the owner's former devices is out with everyone else (it presented nothing at the reset)...
    expect(errorCode(await login(owner.user.email, newPassword, elsewhere))).toBe('RATE_LIMITED');
    // ...the device that reset the password signs in, and gets a token of the new credentials.
    const back = await login(owner.user.email, newPassword, owner.deviceToken);
    expectSignedIn(back, owner);
    expect(back.data!.login.deviceToken.split('.')[0]).toBe(owner.deviceToken.split('.')[0]);
    expect(back.data!.login.deviceToken).not.toBe(owner.deviceToken);
    // Its failures count against that device only, never the account.
    const failuresBefore = await failedLoginCount(owner.user.id);
    expect(errorCode(await login(owner.user.email, wrongPassword(), owner.deviceToken))).toBe('UNAUTHENTICATED');
    expect(await failedLoginCount(owner.user.id)).toBe(failuresBefore);
  });

  it('trust the device that reset the password only until the credentials change again', async () => {
    const owner = await newOwner();
    await server.graphql('mutation F($input: ForgotPasswordInput!) { forgotPassword(input: $input) }', { input: { identifier: owner.user.email } }, { headers: fromFreshAddress() });
    const newPassword = `${owner.password} after the reset`;
    const resetToken = resetTokenOf(await smtp.waitFor((mail) => mail.to === owner.user.email && mail.subject === 'Reset your password'));
    await server.graphql('mutation R($input: ResetPasswordInput!) { resetPassword(input: $input) }', { input: { token: resetToken, newPassword, deviceToken: owner.deviceToken } }, { headers: fromFreshAddress() });
    const signedIn = (await login(owner.user.email, newPassword, owner.deviceToken)).data!.login;
    const third = `${newPassword} and again`;
    await server.graphql('mutation C($input: ChangePasswordInput!) { changePassword(input: $input) }', { input: { currentPassword: newPassword, newPassword: third } }, { token: signedIn.accessToken, headers: fromFreshAddress() });
    // The old token is former now (one of many); the token from the sign-in after the reset is too.
    for (let attempt = 0; attempt < LOGIN_PER_IDENTIFIER + 2; attempt += 1) await login(owner.user.email, wrongPassword());
    for (let guess = 0; guess < LOGIN_PER_IDENTIFIER + 2; guess += 1) await login(owner.user.email, wrongPassword(), signedIn.deviceToken);
    expect(errorCode(await login(owner.user.email, third, owner.deviceToken))).toBe('RATE_LIMITED');
  });

  it('are not accepted where an access token is expected', async () => {
    const owner = await newOwner();
    expect(errorCode(await server.graphql(ME, {}, { token: owner.deviceToken }))).toBe('UNAUTHENTICATED');
    expect(errorCode(await server.graphql(REFRESH, { refreshToken: owner.deviceToken }))).toBe('UNAUTHENTICATED');
  });
});

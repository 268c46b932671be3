import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FORGOT_PASSWORD, LOGIN, ME, registerAccount, type SignedInAccount, RESET_PASSWORD, tokenLifetimesOf } from './support/accounts.js';
import { CONFIRM_EMAIL_CHANGE, enableMfa, lockdownTokenOf, ME_MFA, REQUEST_EMAIL_CHANGE } from './support/mfa.js';
import { errorCode, errorField, startTestServer, type TestServer } from './support/server.js';
import { type CapturedMail, resetTokenOf, startSmtpServer, type TestSmtpServer, verificationCodeOf } from './support/smtp.js';

let smtp: TestSmtpServer;
let server: TestServer;
beforeAll(async () => {
  smtp = await startSmtpServer();
  server = await startTestServer({ SMTP_URL: smtp.url });
});
afterAll(async () => {
  await server?.stop();
  await smtp?.stop();
});

const QUIET_PERIOD_MS = 1_000;
let addressCounter = 0;
const newAddress = () => `moved-${Date.now()}-${(addressCounter += 1)}@example.org`;

function request(account: SignedInAccount, newEmail: string, password = account.password, code?: string) {
  return server.graphql(REQUEST_EMAIL_CHANGE, { newEmail, password, code }, { token: account.accessToken });
}
function confirm(account: SignedInAccount, code: string) {
  return server.graphql(CONFIRM_EMAIL_CHANGE, { code }, { token: account.accessToken });
}
const codeMailTo = (address: string) => smtp.waitFor((mail) => mail.to === address && mail.subject.startsWith('Confirm your new email address'));
const noticeTo = (address: string, subject: string) => smtp.waitFor((mail) => mail.to === address && mail.subject === subject);
const mailsTo = (address: string): CapturedMail[] => smtp.messages.filter((mail) => mail.to === address);

describe('requestEmailChange', () => {
  it('checks the password first: a wrong one sends nothing', async () => {
    const account = await registerAccount(server);
    const target = newAddress();
    const response = await request(account, target, 'not the password at all');
    expect(errorCode(response)).toBe('BAD_USER_INPUT');
    expect(errorField(response)).toBe('password');
    await new Promise((resolve) => setTimeout(resolve, QUIET_PERIOD_MS));
    expect(mailsTo(target)).toEqual([]);
  });

  it('refuses an invalid address, the current one, and one another account has (CONFLICT)', async () => {
    const account = await registerAccount(server);
    const other = await registerAccount(server);
    expect(errorField(await request(account, 'not an address'))).toBe('newEmail');
    expect(errorCode(await request(account, account.user.email.toUpperCase()))).toBe('BAD_USER_INPUT');
    const taken = await request(account, ` ${other.user.email.toUpperCase()} `);
    expect(errorCode(taken)).toBe('CONFLICT');
    expect(errorField(taken)).toBe('newEmail');
  });

  it('mails a code to the new address and a notice with a lockdown link to the current one, and changes nothing yet', async () => {
    const account = await registerAccount(server);
    const target = newAddress();
    expect((await request(account, target)).data?.requestEmailChange).toBe(true);
    expect(verificationCodeOf(await codeMailTo(target))).toMatch(/^\d{6}$/);
    // The code lives 15 minutes (CONTRACT.md), counted from its issue.
    const lifetimes = await tokenLifetimesOf(server, account.user.id, 'EMAIL_CHANGE');
    expect(lifetimes).toHaveLength(1);
    expect(lifetimes[0]).toBeGreaterThanOrEqual(15 * 60_000 - 2_000);
    expect(lifetimes[0]).toBeLessThanOrEqual(15 * 60_000 + 2_000);
    const notice = await noticeTo(account.user.email, 'Someone asked to change your email address');
    expect(notice.text).toContain(target);
    expect(lockdownTokenOf(notice)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // Not reserved, not switched: the old address still signs in, the new one does not, and
    // someone else may still take the new address.
    expect((await server.graphql(ME, {}, { token: account.accessToken })).data!.me.email).toBe(account.user.email);
    expect(errorCode(await server.graphql(LOGIN, { input: { identifier: target, password: account.password } }))).toBe('UNAUTHENTICATED');
    expect((await server.graphql(LOGIN, { input: { identifier: account.user.email, password: account.password } })).data?.login).toBeTruthy();
  });

  it('lets a newer request void the older code', async () => {
    const account = await registerAccount(server);
    const first = newAddress();
    const second = newAddress();
    await request(account, first);
    const firstCode = verificationCodeOf(await codeMailTo(first));
    await request(account, second);
    const secondCode = verificationCodeOf(await codeMailTo(second));
    if (firstCode !== secondCode) expect(errorField(await confirm(account, firstCode))).toBe('code');
    expect((await confirm(account, secondCode)).data?.confirmEmailChange.email).toBe(second);
  });
});

describe('confirmEmailChange', () => {
  it('switches the address (verified), ends the other sessions, kills links sent to the old address, and tells the old address', async () => {
    const account = await registerAccount(server);
    const elsewhere = (await server.graphql(LOGIN, { input: { identifier: account.user.email, password: account.password } })).data!.login;
    // A reset link mailed to the old address before the change.
    await server.graphql(FORGOT_PASSWORD, { input: { identifier: account.user.email } });
    const resetToken = resetTokenOf(await smtp.waitFor((mail) => mail.to === account.user.email && mail.subject === 'Reset your password'));

    const target = newAddress();
    await request(account, target);
    const code = verificationCodeOf(await codeMailTo(target));
    const confirmed = await confirm(account, code);
    expect(confirmed.errors).toBeUndefined();
    expect(confirmed.data!.confirmEmailChange).toEqual({ id: account.user.id, email: target, emailVerified: true });

    expect((await server.graphql(ME_MFA, {}, { token: account.accessToken })).data!.me).toMatchObject({ email: target, emailVerified: true });
    const ended = await server.graphql(ME, {}, { token: elsewhere.accessToken });
    expect(ended.errors?.[0].extensions?.reason).toBe('SESSION_ENDED');
    expect(errorCode(await server.graphql(LOGIN, { input: { identifier: account.user.email, password: account.password } }))).toBe('UNAUTHENTICATED');
    expect((await server.graphql(LOGIN, { input: { identifier: target, password: account.password } })).data?.login).toBeTruthy();

    const reset = await server.graphql(RESET_PASSWORD, { input: { token: resetToken, newPassword: 'a brand new passphrase 9' } });
    expect(errorField(reset)).toBe('token');

    const notice = await noticeTo(account.user.email, 'Your email address was changed');
    expect(notice.text).toContain(target);
    expect(lockdownTokenOf(notice)).toBeTruthy();
    // The code works once.
    expect(errorField(await confirm(account, code))).toBe('code');
  });

  it('allows five tries: after five wrong codes the right one is refused', async () => {
    const account = await registerAccount(server);
    const target = newAddress();
    await request(account, target);
    const code = verificationCodeOf(await codeMailTo(target));
    const wrong = String((Number(code) + 1) % 1_000_000).padStart(6, '0');
    for (let attempt = 0; attempt < 5; attempt += 1) expect(errorField(await confirm(account, wrong))).toBe('code');
    expect(errorField(await confirm(account, code))).toBe('code');
    expect((await server.graphql(ME, {}, { token: account.accessToken })).data!.me.email).toBe(account.user.email);
  });

  it('answers CONFLICT when the address was taken between request and confirmation, and keeps the old address', async () => {
    const account = await registerAccount(server);
    const target = newAddress();
    await request(account, target);
    const code = verificationCodeOf(await codeMailTo(target));
    await registerAccount(server, { email: target });
    const response = await confirm(account, code);
    expect(errorCode(response)).toBe('CONFLICT');
    expect(errorField(response)).toBe('code');
    expect((await server.graphql(ME, {}, { token: account.accessToken })).data!.me.email).toBe(account.user.email);
  });

  it('keeps the replaced address for its owner while its lockdown links live (7 days): nobody may register it or change to it meanwhile', async () => {
    const account = await registerAccount(server);
    const old = account.user.email;
    const target = newAddress();
    await request(account, target);
    await confirm(account, verificationCodeOf(await codeMailTo(target)));
    const squatter = await server.graphql('mutation R($input: RegisterInput!) { register(input: $input) { accessToken } }', {
      input: { email: old, username: `squat_${Date.now() % 1_000_000}`, password: 'a long squatting passphrase' },
    });
    expect(errorCode(squatter)).toBe('CONFLICT');
    const other = await registerAccount(server);
    expect(errorCode(await request(other, old))).toBe('CONFLICT');
    // Once the old address's lockdown links have expired (7 days), it is free again.
    await server.sql(`update "one_time_tokens" set "expires_at" = now() - interval '1 second' where "user_id" = ? and "purpose" = 'LOCKDOWN'`, [account.user.id]);
    expect((await request(other, old)).data?.requestEmailChange).toBe(true);
  });

  it('asks for a code as well when MFA is on', async () => {
    const account = await enableMfa(server, await registerAccount(server));
    const target = newAddress();
    expect(errorField(await request(account, target))).toBe('code');
    expect(errorField(await request(account, target, account.password, '000000'))).toBe('code');
    expect((await request(account, target, account.password, await account.authenticator.next())).data?.requestEmailChange).toBe(true);
  });

  it('counts no failure against the owner for an address that is taken: six tries, then the owner still signs in (with MFA too)', async () => {
    const plain = await registerAccount(server);
    const withMfa = await enableMfa(server, await registerAccount(server));
    const taken = (await registerAccount(server)).user.email;
    for (const account of [plain, withMfa]) {
      // Each answer proved the right password: before, the fifth opened the backoff's delays and
      // the owner's own sign-in answered RATE_LIMITED (after 100, only a reset would open it).
      for (let attempt = 0; attempt < 6; attempt += 1) expect(errorCode(await request(account, taken, account.password, account === withMfa ? '000000' : undefined))).toBe('CONFLICT');
      const [row] = await server.sql<{ failed_login_count: number; login_blocked_until: Date | null }>('select failed_login_count, login_blocked_until from users where id = ?', [account.user.id]);
      expect(row).toEqual({ failed_login_count: 0, login_blocked_until: null });
    }
    expect((await server.graphql(LOGIN, { input: { identifier: plain.user.email, password: plain.password } })).data?.login).toBeTruthy();
    expect(errorCode(await server.graphql(LOGIN, { input: { identifier: withMfa.user.email, password: withMfa.password } }))).toBe('MFA_REQUIRED');
  });

  it('spends no code on an address that is taken', async () => {
    const account = await enableMfa(server, await registerAccount(server));
    const taken = (await registerAccount(server)).user.email;
    const [recoveryCode] = account.recoveryCodes;
    const refused = await request(account, taken, account.password, recoveryCode);
    expect(errorCode(refused)).toBe('CONFLICT');
    expect((await request(account, newAddress(), account.password, recoveryCode)).data?.requestEmailChange).toBe(true);
  });
});

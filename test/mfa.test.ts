import { createHash } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { auditEventsOf, CHANGE_PASSWORD, LOGIN, ME, registerAccount, type SignedInAccount, START_UP_ADMIN, startUpAdminToken, tokenLifetimesOf } from './support/accounts.js';
import {
  Authenticator,
  CONFIRM_TOTP,
  DELETE_ME_WITH_CODE,
  DISABLE_TOTP,
  DISABLE_USER_MFA,
  enableMfa,
  lockdownTokenOf,
  ME_MFA,
  type MfaAccount,
  REGENERATE_CODES,
  REQUEST_EMAIL_CHANGE,
  START_TOTP,
  VERIFY_MFA,
} from './support/mfa.js';
import { errorCode, errorField, type GraphQLResponse, startTestServer, type TestServer } from './support/server.js';
import { startSmtpServer, type TestSmtpServer } from './support/smtp.js';

let smtp: TestSmtpServer;
let server: TestServer;
let adminToken: string;
beforeAll(async () => {
  smtp = await startSmtpServer();
  // TRUST_PROXY with a fresh address per sign-in would hide the per-IP limit; these tests stay
  // below it, and the per-account backoff is what they exercise.
  server = await startTestServer({ SMTP_URL: smtp.url, ...START_UP_ADMIN });
  adminToken = await startUpAdminToken(server);
});
afterAll(async () => {
  await server?.stop();
  await smtp?.stop();
});

/** A login of `account`; the MFA challenge token when it answered MFA_REQUIRED. */
async function challenge(account: SignedInAccount): Promise<string> {
  const response = await server.graphql(LOGIN, { input: { identifier: account.user.email, password: account.password } });
  expect(errorCode(response)).toBe('MFA_REQUIRED');
  expect(response.data ?? null).toBeNull();
  const mfaToken = response.errors![0].extensions!.mfaToken as string;
  expect(mfaToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
  return mfaToken;
}

function verify(mfaToken: string, code: string, deviceToken?: string) {
  return server.graphql(VERIFY_MFA, { mfaToken, code, deviceToken });
}

/** Asserts a refused verifyMfa: BAD_USER_INPUT on `code`, and no tokens. */
function expectRefused(response: GraphQLResponse): void {
  expect(errorCode(response)).toBe('BAD_USER_INPUT');
  expect(errorField(response)).toBe('code');
  expect(response.data ?? null).toBeNull();
}

async function signedIn(response: GraphQLResponse): Promise<string> {
  expect(response.errors).toBeUndefined();
  const { accessToken } = response.data!.verifyMfa;
  const me = await server.graphql(ME, {}, { token: accessToken });
  expect(me.errors).toBeUndefined();
  return accessToken;
}

const eventsOf = (userId: string) => auditEventsOf(server, adminToken, userId);
const countOf = async (userId: string, type: string) => (await eventsOf(userId)).filter((event) => event.type === type).length;

/** The account's recovery-code rows as stored. */
const recoveryCodeRowsOf = (userId: string) => server.sql<{ id: string; code_hash: string; used_at: Date | null }>('select "id", "code_hash", "used_at" from "recovery_codes" where "user_id" = ? order by "id"', [userId]);

describe('TOTP enrollment', () => {
  it('needs the password, changes nothing until a code confirms it, then hands out ten recovery codes once and emails a notice', async () => {
    const account = await registerAccount(server);
    const auth = { token: account.accessToken };
    const wrong = await server.graphql(START_TOTP, { password: 'not the password at all' }, auth);
    expect(errorCode(wrong)).toBe('BAD_USER_INPUT');
    expect(errorField(wrong)).toBe('password');

    const started = await server.graphql(START_TOTP, { password: account.password }, auth);
    expect(started.errors).toBeUndefined();
    const { secret, otpauthUri } = started.data!.startTotpEnrollment;
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    const uri = new URL(otpauthUri);
    expect(uri.protocol).toBe('otpauth:');
    expect(uri.host).toBe('totp');
    const issuer = new URL(server.config.appUrl).hostname; // no port: a colon would split the label
    expect(decodeURIComponent(uri.pathname)).toBe(`/${issuer}:${account.user.email}`);
    expect(Object.fromEntries(uri.searchParams)).toEqual({ issuer, secret, algorithm: 'SHA1', digits: '6', period: '30' });

    // Pending: sign-in still needs only the password, and the user reads as MFA off.
    expect((await server.graphql(ME_MFA, {}, auth)).data!.me.mfaEnabled).toBe(false);
    const plain = await server.graphql(LOGIN, { input: { identifier: account.user.email, password: account.password } });
    expect(plain.data?.login.accessToken).toBeTruthy();

    const authenticator = new Authenticator(secret);
    const badCode = await server.graphql(CONFIRM_TOTP, { code: authenticator.at(-3) }, auth);
    expect(errorCode(badCode)).toBe('BAD_USER_INPUT');
    expect(errorField(badCode)).toBe('code');

    const confirmed = await server.graphql(CONFIRM_TOTP, { code: await authenticator.next() }, auth);
    expect(confirmed.errors).toBeUndefined();
    const codes: string[] = confirmed.data!.confirmTotpEnrollment;
    expect(codes).toHaveLength(10);
    expect(new Set(codes).size).toBe(10);
    for (const code of codes) expect(code).toMatch(/^[a-z2-9]{5}-[a-z2-9]{5}$/);
    expect((await server.graphql(ME_MFA, {}, auth)).data!.me.mfaEnabled).toBe(true);

    // Shown once: a second confirmation hands out nothing.
    const again = await server.graphql(CONFIRM_TOTP, { code: await authenticator.next() }, auth);
    expect(errorCode(again)).toBe('BAD_USER_INPUT');
    // And a second enrollment is refused while one is on.
    expect(errorCode(await server.graphql(START_TOTP, { password: account.password }, auth))).toBe('BAD_USER_INPUT');

    const notice = await smtp.waitFor((mail) => mail.to === account.user.email && mail.subject === 'Two-factor sign-in was turned on');
    expect(lockdownTokenOf(notice)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(notice.text).not.toContain(secret);
    // The audit log tells the whole enrollment: started, a wrong code, on.
    expect((await eventsOf(account.user.id)).map((event) => event.type)).toEqual(expect.arrayContaining(['MFA_ENROLLMENT_STARTED', 'MFA_FAILED', 'MFA_ENABLED']));
    // The secret is stored sealed, never in clear.
    const [row] = await server.sql<{ totp_secret: string }>('select "totp_secret" from "users" where "id" = ?', [account.user.id]);
    expect(row.totp_secret).not.toContain(secret);
  });
});

describe('recovery codes at rest', () => {
  it('are stored only as keyed hashes: no row holds a code shown to the user, in any form it is typed in, nor its plain SHA-256', async () => {
    const account = await enableMfa(server, await registerAccount(server));
    const rows = await recoveryCodeRowsOf(account.user.id);
    expect(rows).toHaveLength(10);
    expect(new Set(rows.map((row) => row.code_hash)).size).toBe(10);
    const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
    for (const code of account.recoveryCodes) {
      // As shown, and as the server normalises what is typed (letter case, dash and spaces gone).
      const forms = [code, code.replace('-', ''), code.toUpperCase(), code.toUpperCase().replace('-', '')];
      // Unkeyed digests of each form, alone and bound to the account the way the keyed hash binds it.
      const digests = forms.flatMap((form) => [sha256(form), sha256(`${account.user.id}\0${form}`), sha256(`${account.user.id}${form}`)]);
      for (const { code_hash: stored } of rows) {
        for (const form of forms) expect(stored.toLowerCase()).not.toContain(form.toLowerCase());
        for (const digest of digests) expect(stored.trim().toLowerCase()).not.toBe(digest);
      }
    }
  });
});

/**
 * Forgets the account's failed attempts, so a test can look at one mechanism (the challenge's
 * five tries, replay) without the per-account backoff, which counts the same attempts and is
 * tested on its own below.
 */
async function forgiveBackoff(account: SignedInAccount): Promise<void> {
  await server.sql('update "users" set "failed_login_count" = 0, "login_blocked_until" = null where "id" = ?', [account.user.id]);
}

describe('sign-in with MFA', () => {
  // Each test has an account of its own: every sign-in and wrong code counts in its backoff.
  let account: MfaAccount;
  beforeEach(async () => {
    account = await enableMfa(server, await registerAccount(server));
  });

  it('answers the right password with MFA_REQUIRED and no tokens, and a wrong one exactly like any wrong password', async () => {
    await challenge(account);
    // The challenge lives 5 minutes (CONTRACT.md), counted from its issue.
    const lifetimes = await tokenLifetimesOf(server, account.user.id, 'MFA_CHALLENGE');
    expect(lifetimes).toHaveLength(1);
    expect(lifetimes[0]).toBeGreaterThanOrEqual(5 * 60_000 - 2_000);
    expect(lifetimes[0]).toBeLessThanOrEqual(5 * 60_000 + 2_000);
    const plain = await registerAccount(server);
    const wrongMfa = await server.graphql(LOGIN, { input: { identifier: account.user.email, password: 'wrong password entirely' } });
    const wrongPlain = await server.graphql(LOGIN, { input: { identifier: plain.user.email, password: 'wrong password entirely' } });
    expect(wrongMfa.errors).toEqual(wrongPlain.errors);
    expect(errorCode(wrongMfa)).toBe('UNAUTHENTICATED');
    expect(wrongMfa.status).toBe(wrongPlain.status);
    // The log has the one challenge the right password earned, and none for the wrong password.
    expect(await countOf(account.user.id, 'MFA_CHALLENGED')).toBe(1);
  });

  it('finishes with a TOTP code once: the same code is refused on a new challenge (no replay inside its window)', async () => {
    const code = await account.authenticator.next();
    await signedIn(await verify(await challenge(account), code));
    expectRefused(await verify(await challenge(account), code));
  });

  it('refuses a code two steps behind or ahead of the clock', async () => {
    expectRefused(await verify(await challenge(account), account.authenticator.at(-2)));
    expectRefused(await verify(await challenge(account), account.authenticator.at(+2)));
  });

  it('accepts a clock one step ahead, and nothing older afterwards', async () => {
    // One step ahead (a fast phone): accepted; afterwards nothing older works.
    const now = Date.now();
    const ahead = account.authenticator.at(+1, now);
    await signedIn(await verify(await challenge(account), ahead));
    account.authenticator.used(Math.floor(now / 30_000) + 1);
    expectRefused(await verify(await challenge(account), account.authenticator.at(0, now)));
  });

  it('spends a challenge once, and kills it after five wrong codes even for the right one', async () => {
    const mfaToken = await challenge(account);
    await signedIn(await verify(mfaToken, await account.authenticator.next()));
    expectRefused(await verify(mfaToken, account.recoveryCodes[0]));

    const worn = await challenge(account);
    for (let attempt = 0; attempt < 5; attempt += 1) {
      await forgiveBackoff(account);
      expectRefused(await verify(worn, '000000'));
    }
    await forgiveBackoff(account);
    expectRefused(await verify(worn, account.recoveryCodes[9]));
    // The recovery code was not spent by the dead challenge: it still works on a live one.
    await signedIn(await verify(await challenge(account), account.recoveryCodes[9]));
  });

  it("keeps each sign-in's challenge: a second sign-in (another device, or someone with the password) does not void the first", async () => {
    const first = await challenge(account);
    const second = await challenge(account);
    await signedIn(await verify(first, account.recoveryCodes[7]));
    await signedIn(await verify(second, account.recoveryCodes[6]));
  });

  it('refuses forged, expired and foreign challenge tokens alike', async () => {
    expectRefused(await verify('A'.repeat(43), await account.authenticator.next()));
    expectRefused(await verify('not a token', '123456'));
    const mfaToken = await challenge(account);
    await server.sql(`update "one_time_tokens" set "expires_at" = now() - interval '1 second' where "user_id" = ? and "purpose" = 'MFA_CHALLENGE'`, [account.user.id]);
    expectRefused(await verify(mfaToken, account.recoveryCodes[8]));
  });

  it('takes each recovery code once, in any letter case and with or without the dash', async () => {
    const [code] = account.recoveryCodes;
    await signedIn(await verify(await challenge(account), ` ${code.toUpperCase().replace('-', '')} `));
    expectRefused(await verify(await challenge(account), code));
    expect((await eventsOf(account.user.id)).map((event) => event.type)).toContain('MFA_RECOVERY_CODE_USED');
  });

  it('keeps a device: the device token given back to verifyMfa is the device the session runs on', async () => {
    const first = (await verify(await challenge(account), await account.authenticator.next())).data!.verifyMfa;
    const second = (await verify(await challenge(account), account.recoveryCodes[0], first.deviceToken)).data!.verifyMfa;
    expect(second.deviceToken).toBe(first.deviceToken);
  });
});

describe('MFA and the per-account backoff', () => {
  it('counts wrong codes like wrong passwords: a thief with the password runs into RATE_LIMITED, the owner gets in after the wait', async () => {
    const account = await enableMfa(server, await registerAccount(server));
    const answers: string[] = [];
    // Each sign-in and each code counts; five challenges of five codes would be 30 guesses without the backoff.
    for (let round = 0; round < 5 && !answers.includes('RATE_LIMITED'); round += 1) {
      const login = await server.graphql(LOGIN, { input: { identifier: account.user.email, password: account.password } });
      answers.push(errorCode(login)!);
      if (errorCode(login) !== 'MFA_REQUIRED') continue;
      const mfaToken = login.errors![0].extensions!.mfaToken as string;
      for (let guess = 0; guess < 5; guess += 1) {
        const code = String(100_000 + round * 10 + guess);
        const response = await verify(mfaToken, code);
        answers.push(errorCode(response)!);
        if (errorCode(response) === 'RATE_LIMITED') {
          expect(response.errors![0].extensions!.retryAfter).toBeGreaterThan(0);
          break;
        }
      }
    }
    expect(answers).toContain('RATE_LIMITED');
    // At most five free failures before the first delay.
    expect(answers.indexOf('RATE_LIMITED')).toBeLessThanOrEqual(6);
  });
});

describe('operations that ask for a code where MFA is on', () => {
  it('deleteMe refuses a missing or wrong code, and deletes with password and code', async () => {
    const account = await enableMfa(server, await registerAccount(server));
    const auth = { token: account.accessToken };
    const missing = await server.graphql(DELETE_ME_WITH_CODE, { password: account.password }, auth);
    expect(errorCode(missing)).toBe('BAD_USER_INPUT');
    expect(errorField(missing)).toBe('code');
    const wrong = await server.graphql(DELETE_ME_WITH_CODE, { password: account.password, code: '000000' }, auth);
    expect(errorField(wrong)).toBe('code');
    // A wrong password is still the password's fault, whatever the code.
    const badPassword = await server.graphql(DELETE_ME_WITH_CODE, { password: 'wrong password entirely', code: account.authenticator.at(0) }, auth);
    expect(errorField(badPassword)).toBe('password');
    const deleted = await server.graphql(DELETE_ME_WITH_CODE, { password: account.password, code: await account.authenticator.next() }, auth);
    expect(deleted.data?.deleteMe).toBe(true);
  });

  it('requestEmailChange refuses a missing code', async () => {
    const account = await enableMfa(server, await registerAccount(server));
    const missing = await server.graphql(REQUEST_EMAIL_CHANGE, { newEmail: `moved-${account.user.username}@example.com`, password: account.password }, { token: account.accessToken });
    expect(errorField(missing)).toBe('code');
  });

  // With a stolen session and the password alone, changePassword would end the owner's other
  // sessions and take the password away from them: where MFA is on, it asks for a code too.
  it('changePassword refuses a missing or wrong code, and changes the password with password and code', async () => {
    const account = await enableMfa(server, await registerAccount(server));
    const auth = { token: account.accessToken };
    const input = (code?: string) => ({ input: { currentPassword: account.password, newPassword: 'a brand new passphrase 5', ...(code === undefined ? {} : { code }) } });
    const missing = await server.graphql(CHANGE_PASSWORD, input(), auth);
    expect(errorCode(missing)).toBe('BAD_USER_INPUT');
    expect(errorField(missing)).toBe('code');
    expect(errorField(await server.graphql(CHANGE_PASSWORD, input('000000'), auth))).toBe('code');
    expect((await server.graphql(LOGIN, { input: { identifier: account.user.email, password: account.password } })).errors?.[0].extensions?.code).toBe('MFA_REQUIRED');
    const changed = await server.graphql(CHANGE_PASSWORD, input(await account.authenticator.next()), auth);
    expect(changed.data?.changePassword).toBe(true);
    expect((await server.graphql(LOGIN, { input: { identifier: account.user.email, password: 'a brand new passphrase 5' } })).errors?.[0].extensions?.code).toBe('MFA_REQUIRED');
  });

  it('regenerateRecoveryCodes replaces the codes: the old ones stop working, the new ones work', async () => {
    const account = await enableMfa(server, await registerAccount(server));
    const auth = { token: account.accessToken };
    expect(errorField(await server.graphql(REGENERATE_CODES, { password: account.password, code: '000000' }, auth))).toBe('code');
    const regenerated = await server.graphql(REGENERATE_CODES, { password: account.password, code: account.recoveryCodes[0] }, auth);
    expect(regenerated.errors).toBeUndefined();
    const fresh: string[] = regenerated.data!.regenerateRecoveryCodes;
    expect(fresh).toHaveLength(10);
    expectRefused(await verify(await challenge(account), account.recoveryCodes[1]));
    await signedIn(await verify(await challenge(account), fresh[0]));
    // Audited once: for the regeneration, not for the refused wrong code.
    expect(await countOf(account.user.id, 'MFA_RECOVERY_CODES_REGENERATED')).toBe(1);
  });

  it('regenerateRecoveryCodes refuses a wrong password even with the right code, and keeps the old codes', async () => {
    const account = await enableMfa(server, await registerAccount(server));
    const auth = { token: account.accessToken };
    const before = await recoveryCodeRowsOf(account.user.id);
    const refused = await server.graphql(REGENERATE_CODES, { password: 'wrong password entirely', code: await account.authenticator.next() }, auth);
    expect(errorCode(refused)).toBe('BAD_USER_INPUT');
    expect(errorField(refused)).toBe('password');
    expect(refused.data ?? null).toBeNull();
    // Nothing regenerated: the same rows, no event, and an old code still signs in.
    expect(await recoveryCodeRowsOf(account.user.id)).toEqual(before);
    expect(await countOf(account.user.id, 'MFA_RECOVERY_CODES_REGENERATED')).toBe(0);
    await signedIn(await verify(await challenge(account), account.recoveryCodes[1]));
  });

  it('disableTotp needs password and code; sign-in then needs only the password, and a notice goes out', async () => {
    const account = await enableMfa(server, await registerAccount(server));
    const auth = { token: account.accessToken };
    expect(errorField(await server.graphql(DISABLE_TOTP, { password: account.password, code: '000000' }, auth))).toBe('code');
    expect(errorField(await server.graphql(DISABLE_TOTP, { password: 'wrong password entirely', code: account.authenticator.at(0) }, auth))).toBe('password');
    const disabled = await server.graphql(DISABLE_TOTP, { password: account.password, code: await account.authenticator.next() }, auth);
    expect(disabled.data?.disableTotp).toBe(true);
    const login = await server.graphql(LOGIN, { input: { identifier: account.user.email, password: account.password } });
    expect(login.data?.login.accessToken).toBeTruthy();
    const notice = await smtp.waitFor((mail) => mail.to === account.user.email && mail.subject === 'Two-factor sign-in was turned off');
    expect(lockdownTokenOf(notice)).toBeTruthy();
    // The recovery codes went with it.
    const [{ count }] = await server.sql<{ count: string }>('select count(*) from "recovery_codes" where "user_id" = ?', [account.user.id]);
    expect(Number(count)).toBe(0);
  });
});

describe('admin disableUserMfa', () => {
  it('is for admins only, turns MFA off for a lost device, is audited with the admin as actor, and tells the user', async () => {
    const account = await enableMfa(server, await registerAccount(server));
    const bystander = await registerAccount(server);
    expect(errorCode(await server.graphql(DISABLE_USER_MFA, { id: account.user.id }, { token: bystander.accessToken }))).toBe('FORBIDDEN');
    expect(errorCode(await server.graphql(DISABLE_USER_MFA, { id: '00000000-0000-4000-8000-000000000000' }, { token: adminToken }))).toBe('NOT_FOUND');

    const response = await server.graphql(DISABLE_USER_MFA, { id: account.user.id }, { token: adminToken });
    expect(response.data?.disableUserMfa).toEqual({ id: account.user.id, mfaEnabled: false });
    const login = await server.graphql(LOGIN, { input: { identifier: account.user.email, password: account.password } });
    expect(login.data?.login.accessToken).toBeTruthy();

    const admin = await server.graphql(ME, {}, { token: adminToken });
    const disabled = (await eventsOf(account.user.id)).find((event) => event.type === 'MFA_DISABLED');
    expect(disabled?.actorId).toBe(admin.data!.me.id);
    await smtp.waitFor((mail) => mail.to === account.user.email && mail.subject === 'Two-factor sign-in was turned off');
  });
});

describe('replay under concurrency (PostgreSQL: every trial reported)', () => {
  it('accepts one TOTP code on exactly one of several challenges raced at once', async () => {
    const trials = 20;
    const racers = 4;
    let survivors = 0;
    const accounts = await Promise.all(Array.from({ length: trials }, async () => enableMfa(server, await registerAccount(server))));
    for (const account of accounts) {
      const challenges: string[] = [];
      for (let index = 0; index < racers; index += 1) challenges.push(await challenge(account));
      const code = await account.authenticator.next();
      const answers = await Promise.all(challenges.map((mfaToken) => verify(mfaToken, code)));
      const winners = answers.filter((answer) => answer.data?.verifyMfa);
      if (winners.length !== 1) survivors += 1;
      // The losers are refused: the code was spent, or (the sign-ins and tries all count in the
      // account's backoff) the account is waiting.
      for (const loser of answers.filter((answer) => !answer.data?.verifyMfa)) expect(['BAD_USER_INPUT', 'RATE_LIMITED']).toContain(errorCode(loser));
    }
    console.log(`one TOTP code raced on ${racers} challenges: ${survivors}/${trials} trials let more or fewer than one in`);
    expect(survivors).toBe(0);
  });
});

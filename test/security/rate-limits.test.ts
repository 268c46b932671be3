import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FORGOT_PASSWORD, LOGIN, newAccountInput, REGISTER, RESET_PASSWORD } from '../support/accounts.js';
import { errorCode, errorField, type GraphQLResponse, startTestServer, type TestServer } from '../support/server.js';
import { resetTokenOf, startSmtpServer, type TestSmtpServer, verificationCodeOf } from '../support/smtp.js';
import { waitUntil } from '../support/wait.js';

// The limits of src/rate-limits.ts at their real size (RATE_LIMIT_SCALE=1). TRUST_PROXY=1 lets each
// test speak from IP addresses of its own (the last X-Forwarded-For entry), so the per-IP counters
// of one test never touch another's; only the last describe block turns TRUST_PROXY off again.
const LOGIN_PER_IP = 50;
const LOGIN_PER_IDENTIFIER = 10;
const LOGIN_WINDOW_SECONDS = 15 * 60;
const REGISTER_PER_IP = 10;
const MAIL_REQUESTS_PER_IP = 20;
const MAIL_REQUESTS_PER_IDENTIFIER = 5;
const CODE_ATTEMPTS_PER_IP = 30;
const CODE_ATTEMPTS_PER_ACCOUNT = 10;

const VERIFY_EMAIL = 'mutation Verify($code: String!) { verifyEmail(code: $code) { id emailVerified } }';
const SEND_VERIFICATION = 'mutation { sendVerificationEmail }';
const RESET_SUBJECT = 'Reset your password';
const VERIFICATION_SUBJECT = /^Your verification code/;

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

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

let ipCounter = 0;
/** An IP address no other call of this file has used. */
function freshIp(): string {
  ipCounter += 1;
  return `10.${Math.floor(ipCounter / 250) % 250}.${ipCounter % 250}.7`;
}

function suffix(): string {
  return randomBytes(4).toString('hex');
}

interface From {
  ip: string;
  token?: string;
}

/** A GraphQL call that the server sees as coming from `from.ip` (TRUST_PROXY=1). */
function call(query: string, variables: Record<string, unknown>, from: From): Promise<GraphQLResponse> {
  return server.graphql(query, variables, { token: from.token, headers: { 'x-forwarded-for': from.ip } });
}

function login(identifier: string, password: string, ip: string) {
  return call(LOGIN, { input: { identifier, password } }, { ip });
}

interface Account {
  id: string;
  email: string;
  username: string;
  password: string;
  accessToken: string;
}

/** Registers a fresh account from an IP address of its own. */
async function newAccount(): Promise<Account> {
  const input = newAccountInput();
  const response = await call(REGISTER, { input }, { ip: freshIp() });
  if (!response.data?.register) throw new Error(`register failed: ${JSON.stringify(response.errors)}`);
  const { user, accessToken } = response.data.register;
  return { id: user.id, email: user.email, username: user.username, password: input.password, accessToken };
}

/** Asserts a RATE_LIMITED answer with a sensible `retryAfter`; returns it. */
function expectRateLimited(response: GraphQLResponse, windowSeconds: number): number {
  expect(errorCode(response), JSON.stringify(response.errors)).toBe('RATE_LIMITED');
  expect(response.status).toBeLessThan(500);
  const retryAfter = response.errors![0].extensions!.retryAfter;
  expect(Number.isInteger(retryAfter), `retryAfter ${retryAfter}`).toBe(true);
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(windowSeconds);
  return retryAfter;
}

async function count(query: string, params: unknown[] = []): Promise<number> {
  const [row] = await server.sql<{ n: number | string }>(query, params);
  return Number(row.n);
}

/** The count rate-limiter-flexible keeps for `name` and `key`, or 0. */
async function limiterPoints(name: string, key: string): Promise<number> {
  const rows = await server.sql<{ points: number }>('select points from rate_limits where key = ?', [`${name}:${key}`]);
  return rows.length === 0 ? 0 : Number(rows[0].points);
}

/** `count` aliased login fields for the same input, in one mutation document. */
function aliasedLogins(howMany: number): string {
  const fields = Array.from({ length: howMany }, (_, index) => `l${index}: login(input: $input) { accessToken }`);
  return `mutation Aliased($input: LoginInput!) {\n${fields.join('\n')}\n}`;
}

function mailsTo(email: string, subject: string | RegExp) {
  return smtp.messages.filter(
    (mail) => mail.to.toLowerCase() === email.toLowerCase() && (typeof subject === 'string' ? mail.subject === subject : subject.test(mail.subject)),
  );
}

/** Waits for the `n`-th email of `subject` to `email` and returns it. */
async function nthMail(email: string, subject: string | RegExp, n: number) {
  const mails = await waitUntil(() => (mailsTo(email, subject).length >= n ? mailsTo(email, subject) : null), `email #${n} "${subject}" to ${email}`);
  return mails[n - 1];
}

/** Lets the one-email-a-minute throttle pass again for `userId`, by ageing their tokens. */
async function ageTokens(userId: string): Promise<void> {
  await server.sql("update one_time_tokens set created_at = created_at - interval '61 seconds' where user_id = ?", [userId]);
}

/** A reset token from a real reset email for `account`. */
async function resetTokenFor(account: Account): Promise<string> {
  const seen = mailsTo(account.email, RESET_SUBJECT).length;
  const response = await call(FORGOT_PASSWORD, { input: { identifier: account.email } }, { ip: freshIp() });
  expect(response.data?.forgotPassword).toBe(true);
  return resetTokenOf(await nthMail(account.email, RESET_SUBJECT, seen + 1));
}

/** A string shaped like a reset token (43 base64url characters) that was never issued. */
function garbageToken(): string {
  return randomBytes(32).toString('base64url');
}

// ---------------------------------------------------------------------------------------------
// login
// ---------------------------------------------------------------------------------------------

describe('login', () => {
  it('counts aliased login fields one by one: 15 successful aliases in a document count 15 toward the per-IP limit of 50, so the 4th such document is cut off at its 6th field', async () => {
    const account = await newAccount();
    const ip = freshIp();
    const document = aliasedLogins(15);
    const input = { identifier: account.email, password: account.password };
    for (let round = 1; round <= 3; round += 1) {
      const response = await call(document, { input }, { ip });
      expect(response.errors, `document ${round}: ${JSON.stringify(response.errors)}`).toBeUndefined();
      expect(Object.keys(response.data!)).toHaveLength(15);
    }
    expect(await limiterPoints('loginPerIp', ip)).toBe(45);

    const fourth = await call(document, { input }, { ip });
    expect(fourth.errors).toHaveLength(1);
    expect(fourth.errors![0].path).toEqual(['l5']);
    expectRateLimited(fourth, LOGIN_WINDOW_SECONDS);
    // Exactly 50 fields signed in from that IP: 45 + the first five of the 4th document.
    expect(await count('select count(*) as n from sessions where user_id = ? and ip = ?', [account.id, ip])).toBe(LOGIN_PER_IP);

    // A plain login from that IP, for somebody else entirely, is refused too.
    expectRateLimited(await login(`nobody-${suffix()}@example.com`, 'a long passphrase 1', ip), LOGIN_WINDOW_SECONDS);
  });

  it('makes only one guess for a document of 15 aliased wrong-password logins: execution stops at the first refused field', async () => {
    // login is a non-null mutation field: its error nulls the whole result and GraphQL runs
    // mutation fields one after another, so nothing after the first refusal executes.
    const account = await newAccount();
    const ip = freshIp();
    const auditBefore = await count("select count(*) as n from audit_events where type = 'LOGIN_FAILED' and user_id = ?", [account.id]);
    const response = await call(aliasedLogins(15), { input: { identifier: account.email, password: 'not the password at all' } }, { ip });
    expect(response.data ?? null).toBeNull();
    expect(response.errors).toHaveLength(1);
    expect(response.errors![0].path).toEqual(['l0']);
    expect(errorCode(response)).toBe('UNAUTHENTICATED');
    expect(await count('select failed_login_count as n from users where id = ?', [account.id])).toBe(1);
    expect(await limiterPoints('loginPerIdentifier', `account:${account.id}`)).toBe(1);
    expect(await limiterPoints('loginPerIp', ip)).toBe(1);
    expect(await count("select count(*) as n from audit_events where type = 'LOGIN_FAILED' and user_id = ?", [account.id])).toBe(auditBefore + 1);
  });

  it('refuses the 11th attempt naming one identifier within 15 minutes with RATE_LIMITED, whatever the IP and the letter case', async () => {
    const identifier = `nobody-${suffix()}@example.com`;
    const spellings = [identifier, identifier.toUpperCase(), `  ${identifier}  `];
    for (let attempt = 1; attempt <= LOGIN_PER_IDENTIFIER; attempt += 1) {
      const response = await login(spellings[attempt % spellings.length], 'a long passphrase 1', freshIp());
      expect(errorCode(response), `attempt ${attempt}`).toBe('UNAUTHENTICATED');
    }
    const ip = freshIp();
    expectRateLimited(await login(identifier.toUpperCase(), 'a long passphrase 1', ip), LOGIN_WINDOW_SECONDS);
    // The limit is that identifier's: the same IP may still try another one.
    expect(errorCode(await login(`nobody-${suffix()}@example.com`, 'a long passphrase 1', ip))).toBe('UNAUTHENTICATED');
  });

  it('counts an account\'s email and username, in any spelling, as one identifier', async () => {
    const account = await newAccount();
    const spellings = [account.email, account.username, account.email.toUpperCase(), ` ${account.username.toUpperCase()} `];
    for (const identifier of spellings) {
      expect(errorCode(await login(identifier, 'not the password at all', freshIp())), identifier).toBe('UNAUTHENTICATED');
    }
    expect(await limiterPoints('loginPerIdentifier', `account:${account.id}`)).toBe(spellings.length);
  });

  it('gives RATE_LIMITED an extensions.retryAfter: a whole number of seconds, at least 1 and at most the 15-minute window', async () => {
    const identifier = `nobody-${suffix()}`;
    for (let attempt = 1; attempt <= LOGIN_PER_IDENTIFIER; attempt += 1) await login(identifier, 'a long passphrase 1', freshIp());
    const response = await login(identifier, 'a long passphrase 1', freshIp());
    const retryAfter = expectRateLimited(response, LOGIN_WINDOW_SECONDS);
    // Counted from the first attempt a moment ago, so nearly the whole window remains.
    expect(retryAfter).toBeGreaterThan(LOGIN_WINDOW_SECONDS - 60);
    expect(response.data ?? null).toBeNull();
  });

  it('refuses logins from one IP beyond 50 attempts in 15 minutes, for fresh identifiers too, while other IPs go on', async () => {
    const ip = freshIp();
    for (let batch = 0; batch < LOGIN_PER_IP / 10; batch += 1) {
      const responses = await Promise.all(
        Array.from({ length: 10 }, () => login(`nobody-${suffix()}@example.com`, 'a long passphrase 1', ip)),
      );
      for (const response of responses) expect(errorCode(response)).toBe('UNAUTHENTICATED');
    }
    for (let extra = 0; extra < 3; extra += 1) {
      expectRateLimited(await login(`nobody-${suffix()}@example.com`, 'a long passphrase 1', ip), LOGIN_WINDOW_SECONDS);
    }
    expect(errorCode(await login(`nobody-${suffix()}@example.com`, 'a long passphrase 1', freshIp()))).toBe('UNAUTHENTICATED');
  });

  it('forgets the failures of an identifier when it signs in successfully', async () => {
    // 4 failures, success, 4 failures, success, 4 failures: 14 attempts, 12 of them failed. Without
    // the reset the 11th attempt would be RATE_LIMITED. Batches of 4 stay below the account backoff.
    const account = await newAccount();
    const ip = freshIp();
    for (let round = 1; round <= 3; round += 1) {
      for (let failure = 1; failure <= 4; failure += 1) {
        const response = await login(account.username, `wrong passphrase ${round}-${failure}`, ip);
        expect(errorCode(response), `round ${round}, failure ${failure}`).toBe('UNAUTHENTICATED');
      }
      if (round < 3) {
        const success = await login(account.username, account.password, ip);
        expect(success.errors, JSON.stringify(success.errors)).toBeUndefined();
        expect(await limiterPoints('loginPerIdentifier', `account:${account.id}`)).toBe(0);
      }
    }
    expect(await limiterPoints('loginPerIdentifier', `account:${account.id}`)).toBe(4);
    const last = await login(account.username, account.password, ip);
    expect(last.errors, JSON.stringify(last.errors)).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// register, forgotPassword, verifyEmail, resetPassword
// ---------------------------------------------------------------------------------------------

describe('register', () => {
  it('refuses the 11th registration from one IP within an hour with RATE_LIMITED and creates no account', async () => {
    const ip = freshIp();
    for (let attempt = 1; attempt <= REGISTER_PER_IP; attempt += 1) {
      const response = await call(REGISTER, { input: newAccountInput() }, { ip });
      expect(response.errors, `registration ${attempt}: ${JSON.stringify(response.errors)}`).toBeUndefined();
    }
    const input = newAccountInput();
    const usersBefore = await count('select count(*) as n from users');
    expectRateLimited(await call(REGISTER, { input }, { ip }), 60 * 60);
    expect(await count('select count(*) as n from users')).toBe(usersBefore);
    expect(await count('select count(*) as n from users where email = ?', [input.email])).toBe(0);
    // Another IP may register.
    expect((await call(REGISTER, { input: newAccountInput() }, { ip: freshIp() })).errors).toBeUndefined();
  });
});

describe('forgotPassword', () => {
  it('refuses the 21st request from one IP within an hour with RATE_LIMITED', async () => {
    const ip = freshIp();
    for (let attempt = 1; attempt <= MAIL_REQUESTS_PER_IP; attempt += 1) {
      const response = await call(FORGOT_PASSWORD, { input: { identifier: `nobody-${suffix()}@example.com` } }, { ip });
      expect(response.data?.forgotPassword, `request ${attempt}`).toBe(true);
    }
    expectRateLimited(await call(FORGOT_PASSWORD, { input: { identifier: `nobody-${suffix()}@example.com` } }, { ip }), 60 * 60);
  });

  it('stays silent beyond 5 requests naming one account in an hour, in any spelling: the answer is still exactly true, but no reset is queued or sent', async () => {
    const account = await newAccount();
    const resetsQueued = () => count("select count(*) as n from audit_events where type = 'PASSWORD_RESET_REQUESTED' and user_id = ?", [account.id]);
    const outboxRows = () => count("select count(*) as n from mail_outbox where recipient = ? and template = 'password-reset'", [account.email]);
    for (let request = 1; request <= MAIL_REQUESTS_PER_IDENTIFIER; request += 1) {
      // Each from another IP, and each past the one-email-a-minute throttle, so only the limit acts.
      await ageTokens(account.id);
      const response = await call(FORGOT_PASSWORD, { input: { identifier: account.email } }, { ip: freshIp() });
      expect(response.data?.forgotPassword).toBe(true);
      await nthMail(account.email, RESET_SUBJECT, request);
    }
    expect(await resetsQueued()).toBe(MAIL_REQUESTS_PER_IDENTIFIER);

    await ageTokens(account.id);
    // Another spelling of the same address (full-width letters, which the address rules fold) is
    // the same account, and earns no more emails.
    const [local, domain] = account.email.split('@');
    const fullWidth = `${local}@${domain.replace(/[a-z]/g, (letter) => String.fromCodePoint(letter.codePointAt(0)! - 0x61 + 0xff41))}`;
    const sixth = await call(FORGOT_PASSWORD, { input: { identifier: fullWidth } }, { ip: freshIp() });
    expect(sixth.errors).toBeUndefined();
    expect(sixth.data).toEqual({ forgotPassword: true });
    // The request is handled in the background; once the limiter has counted it, it has decided.
    await waitUntil(async () => (await limiterPoints('mailRequestsPerIdentifier', `account:${account.id}`)) > MAIL_REQUESTS_PER_IDENTIFIER, 'the 6th request is counted');
    await sleep(700);
    expect(await resetsQueued()).toBe(MAIL_REQUESTS_PER_IDENTIFIER);
    expect(await outboxRows()).toBe(MAIL_REQUESTS_PER_IDENTIFIER);
    expect(mailsTo(account.email, RESET_SUBJECT)).toHaveLength(MAIL_REQUESTS_PER_IDENTIFIER);
  });
});

describe('forgotPassword bursts', () => {
  it("cost the account nothing beyond the one email they send: a stranger's burst leaves the owner's own request its email", async () => {
    const account = await newAccount();
    // A stranger's burst: one email (the minute's throttle drops the rest), one point of the budget.
    for (let request = 0; request < MAIL_REQUESTS_PER_IDENTIFIER; request += 1) {
      expect((await call(FORGOT_PASSWORD, { input: { identifier: account.email } }, { ip: freshIp() })).data?.forgotPassword).toBe(true);
    }
    await nthMail(account.email, RESET_SUBJECT, 1);
    await waitUntil(async () => (await count("select count(*) as n from mail_outbox where template = 'password-reset-request' and sent_at is null")) === 0, 'the burst to be handled');
    expect(await limiterPoints('mailRequestsPerIdentifier', `account:${account.id}`)).toBe(1);
    // A minute later the owner asks: the email goes out (before, the burst had spent the budget).
    await ageTokens(account.id);
    expect((await call(FORGOT_PASSWORD, { input: { identifier: account.email } }, { ip: freshIp() })).data?.forgotPassword).toBe(true);
    await nthMail(account.email, RESET_SUBJECT, 2);
  });
});

describe('sendVerificationEmail bursts', () => {
  it('cost the account nothing beyond the emails they send: repeated clicks within the minute leave the budget whole', async () => {
    const account = await newAccount();
    await nthMail(account.email, VERIFICATION_SUBJECT, 1);
    // Within the minute of the registration's code: each answers true and sends nothing.
    for (let request = 0; request <= MAIL_REQUESTS_PER_IDENTIFIER; request += 1) {
      expect((await call(SEND_VERIFICATION, {}, { ip: freshIp(), token: account.accessToken })).data?.sendVerificationEmail).toBe(true);
    }
    expect(await limiterPoints('mailRequestsPerIdentifier', account.id)).toBe(0);
    // A minute later the next click sends (before, the clicks had spent the hour's budget).
    await ageTokens(account.id);
    expect((await call(SEND_VERIFICATION, {}, { ip: freshIp(), token: account.accessToken })).data?.sendVerificationEmail).toBe(true);
    await nthMail(account.email, VERIFICATION_SUBJECT, 2);
    expect(await limiterPoints('mailRequestsPerIdentifier', account.id)).toBe(1);
  });
});

describe('verifyEmail', () => {
  it('refuses the 11th code attempt for one account within 15 minutes with RATE_LIMITED, even with a fresh right code and from a new IP', async () => {
    const account = await newAccount();
    const firstCode = verificationCodeOf(await nthMail(account.email, VERIFICATION_SUBJECT, 1));
    const wrong = (code: string) => (code === '000000' ? '111111' : '000000');
    for (let attempt = 1; attempt <= 5; attempt += 1) {
      const response = await call(VERIFY_EMAIL, { code: wrong(firstCode) }, { ip: freshIp(), token: account.accessToken });
      expect(errorCode(response), `attempt ${attempt}`).toBe('BAD_USER_INPUT');
    }
    // The first code is used up (5 tries); a new one resets the per-code count but not the account's.
    await ageTokens(account.id);
    expect((await call(SEND_VERIFICATION, {}, { ip: freshIp(), token: account.accessToken })).data?.sendVerificationEmail).toBe(true);
    const secondCode = verificationCodeOf(await nthMail(account.email, VERIFICATION_SUBJECT, 2));
    for (let attempt = 6; attempt <= CODE_ATTEMPTS_PER_ACCOUNT; attempt += 1) {
      const response = await call(VERIFY_EMAIL, { code: wrong(secondCode) }, { ip: freshIp(), token: account.accessToken });
      expect(errorCode(response), `attempt ${attempt}`).toBe('BAD_USER_INPUT');
    }
    const eleventh = await call(VERIFY_EMAIL, { code: secondCode }, { ip: freshIp(), token: account.accessToken });
    expectRateLimited(eleventh, 15 * 60);
    expect(await count('select count(*) as n from users where id = ? and email_verified_at is not null', [account.id])).toBe(0);
  });
});

describe('resetPassword', () => {
  it('refuses the 31st attempt from one IP within 15 minutes with RATE_LIMITED, even with a valid token, which still works from another IP', async () => {
    const account = await newAccount();
    const token = await resetTokenFor(account);
    const ip = freshIp();
    for (let attempt = 1; attempt <= CODE_ATTEMPTS_PER_IP; attempt += 1) {
      const response = await call(RESET_PASSWORD, { input: { token: garbageToken(), newPassword: `a brand new passphrase ${suffix()}` } }, { ip });
      expect(errorCode(response), `attempt ${attempt}`).toBe('BAD_USER_INPUT');
      expect(errorField(response)).toBe('token');
    }
    const newPassword = `a brand new passphrase ${suffix()}`;
    expectRateLimited(await call(RESET_PASSWORD, { input: { token, newPassword } }, { ip }), 15 * 60);
    // Refused before the token was even looked at: it is still good elsewhere.
    const elsewhere = await call(RESET_PASSWORD, { input: { token, newPassword } }, { ip: freshIp() });
    expect(elsewhere.errors, JSON.stringify(elsewhere.errors)).toBeUndefined();
    expect(elsewhere.data?.resetPassword).toBe(true);
    expect((await login(account.email, newPassword, freshIp())).errors).toBeUndefined();
  });

  it('refuses the 11th attempt for one account within 15 minutes with RATE_LIMITED, even with a good password', async () => {
    const account = await newAccount();
    const token = await resetTokenFor(account);
    for (let attempt = 1; attempt <= CODE_ATTEMPTS_PER_ACCOUNT; attempt += 1) {
      // A password the policy refuses leaves the token usable, so one token allows many attempts.
      const response = await call(RESET_PASSWORD, { input: { token, newPassword: 'short' } }, { ip: freshIp() });
      expect(errorField(response), `attempt ${attempt}`).toBe('newPassword');
    }
    const newPassword = `a brand new passphrase ${suffix()}`;
    expectRateLimited(await call(RESET_PASSWORD, { input: { token, newPassword } }, { ip: freshIp() }), 15 * 60);
    expect(errorCode(await login(account.email, newPassword, freshIp()))).toBe('UNAUTHENTICATED');
    expect((await login(account.email, account.password, freshIp())).errors).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// Parallel attempts
// ---------------------------------------------------------------------------------------------

describe('parallel attempts', () => {
  it('counts atomically: of 30 logins naming one identifier sent at once, exactly 10 are checked and 20 are RATE_LIMITED', async () => {
    const identifier = `nobody-${suffix()}@example.com`;
    const responses = await Promise.all(Array.from({ length: 30 }, () => login(identifier, 'a long passphrase 1', freshIp())));
    const codes = responses.map(errorCode);
    expect(codes.filter((code) => code === 'UNAUTHENTICATED'), codes.join(', ')).toHaveLength(LOGIN_PER_IDENTIFIER);
    expect(codes.filter((code) => code === 'RATE_LIMITED')).toHaveLength(30 - LOGIN_PER_IDENTIFIER);
  });

  it('counts atomically: of 20 registrations from one IP sent at once, exactly 10 create an account', async () => {
    const ip = freshIp();
    const inputs = Array.from({ length: 20 }, () => newAccountInput());
    const responses = await Promise.all(inputs.map((input) => call(REGISTER, { input }, { ip })));
    const created = responses.filter((response) => response.data?.register);
    expect(created, responses.map((response) => errorCode(response) ?? 'ok').join(', ')).toHaveLength(REGISTER_PER_IP);
    for (const response of responses) if (!response.data?.register) expect(errorCode(response)).toBe('RATE_LIMITED');
    const emails = inputs.map((input) => input.email);
    expect(await count(`select count(*) as n from users where email in (${emails.map(() => '?').join(', ')})`, emails)).toBe(REGISTER_PER_IP);
  });
});

// ---------------------------------------------------------------------------------------------
// Where the counts live, and switching the limits off
// ---------------------------------------------------------------------------------------------

describe('counters kept in PostgreSQL', () => {
  it('keeps counting across a restart: an identifier limited before is still RATE_LIMITED after it', async () => {
    const identifier = `nobody-${suffix()}@example.com`;
    for (let attempt = 1; attempt <= LOGIN_PER_IDENTIFIER; attempt += 1) await login(identifier, 'a long passphrase 1', freshIp());
    expectRateLimited(await login(identifier, 'a long passphrase 1', freshIp()), LOGIN_WINDOW_SECONDS);
    expect(await limiterPoints('loginPerIdentifier', identifier)).toBe(LOGIN_PER_IDENTIFIER + 1);

    await server.restart();
    expectRateLimited(await login(identifier, 'a long passphrase 1', freshIp()), LOGIN_WINDOW_SECONDS);
    expect(await limiterPoints('loginPerIdentifier', identifier)).toBe(LOGIN_PER_IDENTIFIER + 2);
  });
});

describe('without TRUST_PROXY', () => {
  beforeAll(() => server.restart({ TRUST_PROXY: '0' }));
  afterAll(() => server.restart({ TRUST_PROXY: '1' }));

  it('ignores X-Forwarded-For: 20 forgotPassword requests each claiming another IP use up the real peer\'s limit', async () => {
    for (let attempt = 1; attempt <= MAIL_REQUESTS_PER_IP; attempt += 1) {
      const response = await call(FORGOT_PASSWORD, { input: { identifier: `nobody-${suffix()}@example.com` } }, { ip: freshIp() });
      expect(response.data?.forgotPassword, `request ${attempt}`).toBe(true);
    }
    expectRateLimited(await call(FORGOT_PASSWORD, { input: { identifier: `nobody-${suffix()}@example.com` } }, { ip: freshIp() }), 60 * 60);
    expect(await limiterPoints('mailRequestsPerIp', '127.0.0.1')).toBeGreaterThan(MAIL_REQUESTS_PER_IP);
  });
});

describe('RATE_LIMIT_SCALE=0', () => {
  beforeAll(() => server.restart({ RATE_LIMIT_SCALE: '0' }));
  afterAll(() => server.restart({ RATE_LIMIT_SCALE: '1' }));

  it('turns every limit off: 100 logins for one unknown identifier from one IP are never RATE_LIMITED, and nothing is counted', async () => {
    const identifier = `nobody-${suffix()}@example.com`;
    const ip = freshIp();
    const rowsBefore = await count('select count(*) as n from rate_limits');
    for (let batch = 0; batch < 5; batch += 1) {
      const responses = await Promise.all(Array.from({ length: 20 }, () => login(identifier, 'a long passphrase 1', ip)));
      for (const response of responses) expect(errorCode(response)).toBe('UNAUTHENTICATED');
    }
    expect(await count('select count(*) as n from rate_limits')).toBe(rowsBefore);
  });
});

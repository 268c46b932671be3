import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerAccount, type SignedInAccount } from './support/accounts.js';
import { errorCode, type GraphQLResponse, startTestServer, type TestServer } from './support/server.js';
import { type CapturedMail, startSmtpServer, type TestSmtpServer, verificationCodeOf } from './support/smtp.js';

const SEND_VERIFICATION_EMAIL = 'mutation { sendVerificationEmail }';
const VERIFY_EMAIL = 'mutation Verify($code: String!) { verifyEmail(code: $code) { id email emailVerified } }';
const ME_VERIFIED = '{ me { id emailVerified } }';

/** How long "no email arrives" is watched for. */
const QUIET_PERIOD_MS = 1_500;

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

/** Emails received so far for `address`. */
function mailsTo(address: string): CapturedMail[] {
  return smtp.messages.filter((mail) => mail.to.includes(address));
}

/** The `n`-th (1-based) email to `address`, waiting for it when it has not arrived yet. */
function nthMailTo(address: string, n: number): Promise<CapturedMail> {
  return smtp.waitFor(() => mailsTo(address).length >= n).then(() => mailsTo(address)[n - 1]);
}

/** Registers an account and returns it with the code of its verification email. */
async function registerWithCode(): Promise<{ account: SignedInAccount; code: string; mail: CapturedMail }> {
  const account = await registerAccount(server);
  const mail = await nthMailTo(account.user.email, 1);
  return { account, code: verificationCodeOf(mail), mail };
}

/** A 6-digit code different from `code`. */
function otherCode(code: string, offset = 1): string {
  return String((Number(code) + offset) % 1_000_000).padStart(6, '0');
}

function verify(token: string | undefined, code: string) {
  return server.graphql(VERIFY_EMAIL, { code }, token ? { token } : {});
}

async function emailVerified(token: string): Promise<boolean> {
  const response = await server.graphql(ME_VERIFIED, {}, { token });
  expect(response.errors).toBeUndefined();
  return response.data!.me.emailVerified as boolean;
}

/** Asserts a verifyEmail call was refused as a bad code; returns the message. */
function expectCodeRefused(response: GraphQLResponse): string {
  expect(response.data ?? null).toBeNull();
  expect(errorCode(response)).toBe('BAD_USER_INPUT');
  expect(response.errors?.[0].extensions?.field).toBe('code');
  return response.errors![0].message;
}

describe('the verification email sent at registration', () => {
  it('arrives with a 6-digit code in its subject, text and html', async () => {
    const account = await registerAccount(server);
    const mail = await nthMailTo(account.user.email, 1);
    const code = verificationCodeOf(mail);
    expect(code).toMatch(/^\d{6}$/);
    expect(mail.subject).toContain(code);
    expect(mail.text).toContain(code);
    expect(mail.html).toContain(code);
  });

  it('leaves the account unverified until the code is given', async () => {
    const { account } = await registerWithCode();
    expect(account.user).toMatchObject({ emailVerified: false });
    expect(await emailVerified(account.accessToken)).toBe(false);
  });

  it('verifies the account with its code: verifyEmail returns the user verified, and me says so afterwards', async () => {
    const { account, code } = await registerWithCode();
    const response = await verify(account.accessToken, code);
    expect(response.errors).toBeUndefined();
    expect(response.data?.verifyEmail).toEqual({ id: account.user.id, email: account.user.email, emailVerified: true });
    expect(await emailVerified(account.accessToken)).toBe(true);
  });
});

describe('verifyEmail with a bad code', () => {
  it('refuses a wrong code with BAD_USER_INPUT on the code field and leaves the account unverified', async () => {
    const { account, code } = await registerWithCode();
    expectCodeRefused(await verify(account.accessToken, otherCode(code)));
    expect(await emailVerified(account.accessToken)).toBe(false);
  });

  it('refuses even the right code after five wrong ones', async () => {
    const { account, code } = await registerWithCode();
    for (let attempt = 1; attempt <= 5; attempt += 1) expectCodeRefused(await verify(account.accessToken, otherCode(code, attempt)));
    expectCodeRefused(await verify(account.accessToken, code));
    expect(await emailVerified(account.accessToken)).toBe(false);
  });

  it('refuses an expired code', async () => {
    const { account, code } = await registerWithCode();
    await server.sql("update one_time_tokens set expires_at = now() - interval '1 second' where user_id = ?", [account.user.id]);
    expectCodeRefused(await verify(account.accessToken, code));
    expect(await emailVerified(account.accessToken)).toBe(false);
  });

  it('refuses a code that was already used', async () => {
    const { account, code } = await registerWithCode();
    expect((await verify(account.accessToken, code)).errors).toBeUndefined();
    // Undo the verification behind the server's back: only the used code is left.
    await server.sql('update users set email_verified_at = null where id = ?', [account.user.id]);
    expectCodeRefused(await verify(account.accessToken, code));
    expect(await emailVerified(account.accessToken)).toBe(false);
  });

  it('gives one message for wrong, exhausted, expired and used codes', async () => {
    const wrong = await registerWithCode();
    const wrongMessage = expectCodeRefused(await verify(wrong.account.accessToken, otherCode(wrong.code)));

    const exhausted = await registerWithCode();
    for (let attempt = 1; attempt <= 5; attempt += 1) await verify(exhausted.account.accessToken, otherCode(exhausted.code, attempt));
    const exhaustedMessage = expectCodeRefused(await verify(exhausted.account.accessToken, exhausted.code));

    const expired = await registerWithCode();
    await server.sql("update one_time_tokens set expires_at = now() - interval '1 second' where user_id = ?", [expired.account.user.id]);
    const expiredMessage = expectCodeRefused(await verify(expired.account.accessToken, expired.code));

    const used = await registerWithCode();
    await verify(used.account.accessToken, used.code);
    await server.sql('update users set email_verified_at = null where id = ?', [used.account.user.id]);
    const usedMessage = expectCodeRefused(await verify(used.account.accessToken, used.code));

    expect(new Set([wrongMessage, exhaustedMessage, expiredMessage, usedMessage]).size).toBe(1);
  });

  it('counts at most five tries when ten wrong guesses arrive in parallel, so the right code is refused after them', async () => {
    const { account, code } = await registerWithCode();
    const guesses = Array.from({ length: 10 }, (_, index) => verify(account.accessToken, otherCode(code, index + 1)));
    for (const response of await Promise.all(guesses)) expectCodeRefused(response);

    const [row] = await server.sql<{ attempts: number }>('select attempts from one_time_tokens where user_id = ?', [account.user.id]);
    expect(Number(row.attempts)).toBeLessThanOrEqual(5);

    expectCodeRefused(await verify(account.accessToken, code));
    expect(await emailVerified(account.accessToken)).toBe(false);
  });

  it("does not verify an account with another account's code", async () => {
    const owner = await registerWithCode();
    const other = await registerWithCode();
    expectCodeRefused(await verify(other.account.accessToken, owner.code));
    expect(await emailVerified(other.account.accessToken)).toBe(false);
    expect(await emailVerified(owner.account.accessToken)).toBe(false);
    // The owner's code is still good for its owner.
    expect((await verify(owner.account.accessToken, owner.code)).data?.verifyEmail.emailVerified).toBe(true);
  });
});

describe('sendVerificationEmail', () => {
  it('sends a new code a minute later; the old code stops working and the new one works', async () => {
    const { account, code: oldCode } = await registerWithCode();
    await server.sql("update one_time_tokens set created_at = created_at - interval '61 seconds' where user_id = ?", [account.user.id]);

    const response = await server.graphql(SEND_VERIFICATION_EMAIL, {}, { token: account.accessToken });
    expect(response.errors).toBeUndefined();
    expect(response.data?.sendVerificationEmail).toBe(true);
    const newCode = verificationCodeOf(await nthMailTo(account.user.email, 2));
    expect(newCode).toMatch(/^\d{6}$/);

    if (newCode !== oldCode) expectCodeRefused(await verify(account.accessToken, oldCode));
    const verified = await verify(account.accessToken, newCode);
    expect(verified.errors).toBeUndefined();
    expect(verified.data?.verifyEmail.emailVerified).toBe(true);
  });

  it('answers true but sends nothing more within a minute of the last code', async () => {
    const account = await registerAccount(server);
    const first = await server.graphql(SEND_VERIFICATION_EMAIL, {}, { token: account.accessToken });
    const second = await server.graphql(SEND_VERIFICATION_EMAIL, {}, { token: account.accessToken });
    expect(first.data?.sendVerificationEmail).toBe(true);
    expect(second.data?.sendVerificationEmail).toBe(true);

    await nthMailTo(account.user.email, 1);
    await sleep(QUIET_PERIOD_MS);
    expect(mailsTo(account.user.email)).toHaveLength(1);
  });

  it('answers true but sends nothing to an account already verified', async () => {
    const { account, code } = await registerWithCode();
    expect((await verify(account.accessToken, code)).errors).toBeUndefined();
    await server.sql("update one_time_tokens set created_at = created_at - interval '61 seconds' where user_id = ?", [account.user.id]);

    const response = await server.graphql(SEND_VERIFICATION_EMAIL, {}, { token: account.accessToken });
    expect(response.errors).toBeUndefined();
    expect(response.data?.sendVerificationEmail).toBe(true);
    await sleep(QUIET_PERIOD_MS);
    expect(mailsTo(account.user.email)).toHaveLength(1);
  });
});

describe('verifyEmail on an account already verified', () => {
  it('returns the user, verified, whatever the code', async () => {
    const { account, code } = await registerWithCode();
    expect((await verify(account.accessToken, code)).errors).toBeUndefined();
    for (const anything of [code, otherCode(code), 'not a code', '']) {
      const response = await verify(account.accessToken, anything);
      expect(response.errors).toBeUndefined();
      expect(response.data?.verifyEmail).toEqual({ id: account.user.id, email: account.user.email, emailVerified: true });
    }
  });
});

describe('without an access token', () => {
  it('refuses sendVerificationEmail with UNAUTHENTICATED', async () => {
    const response = await server.graphql(SEND_VERIFICATION_EMAIL);
    expect(response.data ?? null).toBeNull();
    expect(errorCode(response)).toBe('UNAUTHENTICATED');
  });

  it('refuses verifyEmail with UNAUTHENTICATED', async () => {
    const { code } = await registerWithCode();
    const response = await verify(undefined, code);
    expect(response.data ?? null).toBeNull();
    expect(errorCode(response)).toBe('UNAUTHENTICATED');
  });
});

describe('the stored code', () => {
  it('is a keyed hash: neither the code in clear nor its plain SHA-256', async () => {
    const { account, code } = await registerWithCode();
    const rows = await server.sql<{ token_hash: string }>('select token_hash from one_time_tokens where user_id = ?', [account.user.id]);
    expect(rows).toHaveLength(1);
    const stored = rows[0].token_hash.trim();
    expect(stored).not.toContain(code);
    expect(stored).not.toBe(createHash('sha256').update(code).digest('hex'));
    expect(stored.toLowerCase()).not.toBe(createHash('sha256').update(code).digest('hex'));

    // And nowhere in the table, whichever row.
    const all = await server.sql<{ token_hash: string }>('select token_hash from one_time_tokens');
    for (const row of all) expect(row.token_hash).not.toContain(code);
  });
});

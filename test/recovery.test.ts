import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHANGE_PASSWORD, FORGOT_PASSWORD, LOGIN, ME, REFRESH, registerAccount, RESET_PASSWORD, SESSIONS, type SignedInAccount } from './support/accounts.js';
import { queriesDuring } from './support/database.js';
import { type CallOptions, errorCode, errorField, type GraphQLResponse, startTestServer, type TestServer } from './support/server.js';
import { waitUntil } from './support/wait.js';
import { type CapturedMail, resetTokenOf, startSmtpServer, type TestSmtpServer, unusedPort } from './support/smtp.js';


const APP_URL = 'https://app.example.test';
const RESET_LINK_PREFIX = `${APP_URL}/reset-password?token=`;
const RESET_SUBJECT = 'Reset your password';
const CHANGED_SUBJECT = 'Your password was changed';
/** How long to wait before concluding that an email that should not come did not come. */
const NO_MAIL_GRACE_MS = 1500;

let server: TestServer;
let smtp: TestSmtpServer;
beforeAll(async () => {
  smtp = await startSmtpServer();
  server = await startTestServer({ SMTP_URL: smtp.url });
});
afterAll(async () => {
  await server?.stop();
  await smtp?.stop();
});

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function suffix(): string {
  return randomBytes(4).toString('hex');
}

function forgotPassword(target: TestServer, identifier: string, options?: CallOptions) {
  return target.graphql(FORGOT_PASSWORD, { input: { identifier } }, options);
}

function resetPassword(target: TestServer, token: string, newPassword: string) {
  return target.graphql(RESET_PASSWORD, { input: { token, newPassword } });
}

function changePassword(target: TestServer, token: string | undefined, currentPassword: string, newPassword: string) {
  return target.graphql(CHANGE_PASSWORD, { input: { currentPassword, newPassword } }, token ? { token } : {});
}

function login(target: TestServer, identifier: string, password: string) {
  return target.graphql(LOGIN, { input: { identifier, password } });
}

/** POSTs a GraphQL operation and returns the status and the body exactly as sent. */
async function rawGraphql(target: TestServer, query: string, variables: Record<string, unknown>): Promise<{ status: number; body: string }> {
  const response = await fetch(`${target.origin}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  return { status: response.status, body: await response.text() };
}

function mailsTo(email: string, subject: string): CapturedMail[] {
  return smtp.messages.filter((mail) => mail.to.toLowerCase() === email.toLowerCase() && mail.subject === subject);
}

/** Waits until `email` has received more than `alreadySeen` reset emails; returns the newest. */
async function nextResetMail(email: string, alreadySeen = 0): Promise<CapturedMail> {
  const mails = await waitUntil(() => {
    const found = mailsTo(email, RESET_SUBJECT);
    return found.length > alreadySeen ? found : null;
  }, `reset email #${alreadySeen + 1} to ${email}`);
  return mails[mails.length - 1];
}

/** Asks for a reset of `account` and returns the token from the email that arrives. */
async function requestResetToken(account: SignedInAccount, identifier = account.user.email): Promise<string> {
  const seen = mailsTo(account.user.email, RESET_SUBJECT).length;
  const response = await forgotPassword(server, identifier);
  expect(response.errors).toBeUndefined();
  expect(response.data?.forgotPassword).toBe(true);
  return resetTokenOf(await nextResetMail(account.user.email, seen));
}

/** Lets the throttle allow another reset email for the user, by ageing their tokens past a minute. */
async function ageTokens(userId: string): Promise<void> {
  await server.sql("update one_time_tokens set created_at = created_at - interval '61 seconds' where user_id = ?", [userId]);
}

async function expectSignedIn(target: TestServer, token: string, userId: string): Promise<void> {
  const response = await target.graphql(ME, {}, { token });
  expect(response.errors).toBeUndefined();
  expect(response.data?.me.id).toBe(userId);
}

async function expectSignedOut(target: TestServer, token: string): Promise<void> {
  const response = await target.graphql(ME, {}, { token });
  expect(response.data ?? null).toBeNull();
  expect(errorCode(response)).toBe('UNAUTHENTICATED');
}

async function expectRefreshRefused(target: TestServer, refreshToken: string): Promise<void> {
  const response = await target.graphql(REFRESH, { refreshToken });
  expect(response.data ?? null).toBeNull();
  expect(errorCode(response)).toBe('UNAUTHENTICATED');
}

async function expectLoginWorks(target: TestServer, identifier: string, password: string, userId: string) {
  const response = await login(target, identifier, password);
  expect(response.errors, `login of ${identifier} should work`).toBeUndefined();
  expect(response.data?.login.user.id).toBe(userId);
  return response.data!.login as { accessToken: string; refreshToken: string };
}

async function expectLoginFails(target: TestServer, identifier: string, password: string): Promise<void> {
  const response = await login(target, identifier, password);
  expect(response.data ?? null).toBeNull();
  expect(errorCode(response)).toBe('UNAUTHENTICATED');
}

function expectBadToken(response: GraphQLResponse): string {
  expect(response.data ?? null).toBeNull();
  expect(errorCode(response)).toBe('BAD_USER_INPUT');
  expect(errorField(response)).toBe('token');
  return response.errors![0].message;
}

/** The reset emails written as .eml files to DATA_DIR/outbox (no SMTP_URL), parsed. */
async function outboxResetMails(target: TestServer): Promise<CapturedMail[]> {
  const folder = join(target.config.dataDir, 'outbox');
  let files: string[];
  try {
    files = (await readdir(folder)).filter((name) => name.endsWith('.eml'));
  } catch {
    return [];
  }
  const mails: CapturedMail[] = [];
  for (const file of files) {
    const parsed = await simpleParser(await readFile(join(folder, file)));
    if (parsed.subject !== RESET_SUBJECT) continue;
    const to = Array.isArray(parsed.to) ? parsed.to.map((address) => address.text).join(', ') : (parsed.to?.text ?? '');
    mails.push({ to, subject: parsed.subject, text: parsed.text ?? '', html: typeof parsed.html === 'string' ? parsed.html : '', messageId: parsed.messageId ?? '' });
  }
  return mails;
}

// ---------------------------------------------------------------------------------------------
// forgotPassword / resetPassword
// ---------------------------------------------------------------------------------------------

describe('forgotPassword and resetPassword', () => {
  it('resets the password through the emailed link, ends every session and sends a notice', async () => {
    const account = await registerAccount(server);
    const secondDevice = await expectLoginWorks(server, account.user.username, account.password, account.user.id);

    // Email in another letter case, with spaces around it.
    const response = await forgotPassword(server, `  ${account.user.email.toUpperCase()} `);
    expect(response.status).toBe(200);
    expect(response.errors).toBeUndefined();
    expect(response.data?.forgotPassword).toBe(true);

    const mail = await nextResetMail(account.user.email);
    expect(mail.subject).toBe(RESET_SUBJECT);
    const token = resetTokenOf(mail);
    const link = `${RESET_LINK_PREFIX}${token}`;
    expect(mail.text).toContain(link);
    expect(mail.html).toContain(link);

    const newPassword = `a brand new passphrase ${suffix()}`;
    const reset = await resetPassword(server, token, newPassword);
    expect(reset.errors).toBeUndefined();
    // Only `true`: no tokens, no sign-in.
    expect(reset.data).toEqual({ resetPassword: true });
    expect(reset.headers.get('set-cookie')).toBeNull();

    // Every session of the account ended.
    for (const session of [account, secondDevice]) {
      await expectSignedOut(server, session.accessToken);
      await expectRefreshRefused(server, session.refreshToken);
    }

    await expectLoginFails(server, account.user.email, account.password);
    const fresh = await expectLoginWorks(server, account.user.email, newPassword, account.user.id);
    // resetPassword did not create a session: the only one is the login just made.
    const sessions = await server.graphql(SESSIONS, {}, { token: fresh.accessToken });
    expect(sessions.errors).toBeUndefined();
    expect(sessions.data?.sessions).toHaveLength(1);
    expect(sessions.data?.sessions[0].current).toBe(true);

    await waitUntil(() => mailsTo(account.user.email, CHANGED_SUBJECT).length === 1, 'the "password was changed" email');
  });

  it('resets the password when asked by username in another letter case', async () => {
    const account = await registerAccount(server, { username: `Recover_${suffix()}` });
    const token = await requestResetToken(account, account.user.username.toUpperCase());
    const newPassword = `reset by username ${suffix()}`;
    const reset = await resetPassword(server, token, newPassword);
    expect(reset.errors).toBeUndefined();
    expect(reset.data?.resetPassword).toBe(true);
    await expectSignedOut(server, account.accessToken);
    await expectLoginFails(server, account.user.username, account.password);
    await expectLoginWorks(server, account.user.username, newPassword, account.user.id);
  });

  it('answers byte-for-byte the same for an existing, an unknown, and an inactive account, and only emails the existing active one', async () => {
    const existing = await registerAccount(server);
    const inactive = await registerAccount(server);
    await server.sql('update users set active = false where id = ?', [inactive.user.id]);
    const unknownEmail = `nobody-${suffix()}@example.com`;
    const unknownUsername = `nobody_${suffix()}`;

    const identifiers = [existing.user.email, unknownEmail, unknownUsername, inactive.user.email, inactive.user.username, existing.user.username];
    const answers = [];
    for (const identifier of identifiers) answers.push(await rawGraphql(server, FORGOT_PASSWORD, { input: { identifier } }));

    for (const [index, answer] of answers.entries()) {
      expect(answer.status, identifiers[index]).toBe(200);
      expect(answer.body.trimEnd(), identifiers[index]).toBe('{"data":{"forgotPassword":true}}');
      expect(answer.body, identifiers[index]).toBe(answers[0].body);
    }

    await nextResetMail(existing.user.email);
    await sleep(NO_MAIL_GRACE_MS);
    // Two requests for the existing account (email, then username) within a minute: one email.
    expect(mailsTo(existing.user.email, RESET_SUBJECT)).toHaveLength(1);
    expect(mailsTo(inactive.user.email, RESET_SUBJECT)).toHaveLength(0);
    expect(smtp.messages.filter((mail) => mail.to.toLowerCase() === unknownEmail)).toHaveLength(0);
    const tokens = await server.sql("select id from one_time_tokens where user_id = ? and purpose = 'PASSWORD_RESET'", [inactive.user.id]);
    expect(tokens).toHaveLength(0);
  });

  it('does the same work in the request for an existing account as for an unknown identifier: the lookup runs after the answer', async () => {
    // A server whose workers are off: what its database sees during each request is the request's
    // own work, and the job rows stay for the test to count.
    const quiet = await startTestServer({ SMTP_URL: smtp.url }, { workers: false });
    try {
      const account = await registerAccount(quiet);
      const jobRows = async () => Number((await quiet.sql("select count(*) as n from mail_outbox where template = 'password-reset-request'"))[0].n);
      // Values (the identifier, ids, times, the sealed job) are written into ORM statements: compared without them.
      const withoutValues = (statement: string) => statement.replace(/'(?:[^']|'')*'/g, '?').replace(/\b\d+\b/g, '?');
      const workOf = async (identifier: string) => {
        const before = await jobRows();
        const statements = await queriesDuring(async () => {
          expect((await forgotPassword(quiet, identifier)).data?.forgotPassword).toBe(true);
        }, { workerTables: true, to: quiet.app.orm.config.get('clientUrl') });
        expect(await jobRows(), identifier).toBe(before + 1);
        return statements.map(withoutValues);
      };
      const existing = await workOf(account.user.email);
      expect(existing.some((statement) => /insert into "mail_outbox"/i.test(statement))).toBe(true);
      expect(await workOf(`nobody-${suffix()}@example.com`)).toEqual(existing);
      expect(await workOf(account.user.username)).toEqual(existing);
      expect(await workOf(`nobody_${suffix()}`)).toEqual(existing);
      // Asked again within the minute (the answer would be "throttled" if anything decided it now).
      expect(await workOf(account.user.email)).toEqual(existing);
    } finally {
      await quiet.stop();
    }
  });

  it('sends at most one reset email per account per minute, and another once a minute has passed', async () => {
    const account = await registerAccount(server);
    const answers = [];
    for (let call = 0; call < 3; call += 1) answers.push(await forgotPassword(server, account.user.email));
    for (const answer of answers) {
      expect(answer.errors).toBeUndefined();
      expect(answer.data?.forgotPassword).toBe(true);
    }
    const first = await nextResetMail(account.user.email);
    await sleep(NO_MAIL_GRACE_MS);
    expect(mailsTo(account.user.email, RESET_SUBJECT)).toHaveLength(1);

    await ageTokens(account.user.id);
    const again = await forgotPassword(server, account.user.email);
    expect(again.data?.forgotPassword).toBe(true);
    const second = await nextResetMail(account.user.email, 1);
    expect(resetTokenOf(second)).not.toBe(resetTokenOf(first));
  });

  it('makes an older reset token invalid when a newer one is issued', async () => {
    const account = await registerAccount(server);
    const tokenA = await requestResetToken(account);
    await ageTokens(account.user.id);
    const tokenB = await requestResetToken(account);
    expect(tokenB).not.toBe(tokenA);

    const withA = await resetPassword(server, tokenA, `password from token a ${suffix()}`);
    expectBadToken(withA);

    const newPassword = `password from token b ${suffix()}`;
    const withB = await resetPassword(server, tokenB, newPassword);
    expect(withB.errors).toBeUndefined();
    expect(withB.data?.resetPassword).toBe(true);
    await expectLoginWorks(server, account.user.email, newPassword, account.user.id);
  });

  it('refuses a used token, a garbage token and an expired token with one and the same message', async () => {
    const account = await registerAccount(server);
    const token = await requestResetToken(account);
    const firstPassword = `first new passphrase ${suffix()}`;
    const first = await resetPassword(server, token, firstPassword);
    expect(first.data?.resetPassword).toBe(true);

    const reused = await resetPassword(server, token, `second new passphrase ${suffix()}`);
    const reusedMessage = expectBadToken(reused);
    // The second try changed nothing.
    await expectLoginWorks(server, account.user.email, firstPassword, account.user.id);

    const garbageMessages = [];
    for (const garbage of ['garbage', '', randomBytes(32).toString('base64url'), 'x'.repeat(5000)]) {
      garbageMessages.push(expectBadToken(await resetPassword(server, garbage, `garbage token passphrase ${suffix()}`)));
    }

    const other = await registerAccount(server);
    const expiring = await requestResetToken(other);
    await server.sql("update one_time_tokens set expires_at = now() - interval '1 second' where user_id = ?", [other.user.id]);
    const expiredMessage = expectBadToken(await resetPassword(server, expiring, `expired token passphrase ${suffix()}`));
    await expectLoginWorks(server, other.user.email, other.password, other.user.id);

    expect(reusedMessage).toEqual(expect.any(String));
    for (const message of [...garbageMessages, expiredMessage]) expect(message).toBe(reusedMessage);
  });

  it('refuses a new password that fails the policy on the newPassword field without using up the token', async () => {
    const account = await registerAccount(server);
    const token = await requestResetToken(account);
    const refused = ['too short', 'password1234', `my name is ${account.user.username} ok`];
    for (const newPassword of refused) {
      const response = await resetPassword(server, token, newPassword);
      expect(response.data ?? null, newPassword).toBeNull();
      expect(errorCode(response), newPassword).toBe('BAD_USER_INPUT');
      expect(errorField(response), newPassword).toBe('newPassword');
    }
    // Nothing changed yet: the old password and the old session still work.
    await expectSignedIn(server, account.accessToken, account.user.id);
    await expectLoginWorks(server, account.user.email, account.password, account.user.id);

    const good = `an acceptable passphrase ${suffix()}`;
    const response = await resetPassword(server, token, good);
    expect(response.errors).toBeUndefined();
    expect(response.data?.resetPassword).toBe(true);
    await expectLoginWorks(server, account.user.email, good, account.user.id);
    for (const newPassword of refused) await expectLoginFails(server, account.user.email, newPassword);
  });

  it('lets exactly one of 20 concurrent resets with one token win, and only its password works', async () => {
    const account = await registerAccount(server);
    const token = await requestResetToken(account);
    const passwords = Array.from({ length: 20 }, (_, index) => `racing passphrase ${index} ${suffix()}`);
    const responses = await Promise.all(passwords.map((newPassword) => resetPassword(server, token, newPassword)));

    const codes = responses.map(errorCode);
    expect(codes).not.toContain('INTERNAL_SERVER_ERROR');
    const winners = responses.flatMap((response, index) => (response.data?.resetPassword === true ? [index] : []));
    expect(winners).toHaveLength(1);
    expect(codes.filter((code) => code === 'BAD_USER_INPUT')).toHaveLength(19);
    for (const [index, response] of responses.entries()) {
      if (index !== winners[0]) expectBadToken(response);
    }

    // Nineteen wrong passwords in a row would start the account's brute-force backoff, which would
    // answer RATE_LIMITED without checking the password; clearing it before each try keeps every
    // answer a real password check.
    const logins = [];
    for (const password of [...passwords, account.password]) {
      await server.sql('update users set failed_login_count = 0, login_blocked_until = null where id = ?', [account.user.id]);
      logins.push(await login(server, account.user.email, password));
    }
    const working = logins.flatMap((response, index) => (response.data?.login ? [index] : []));
    expect(working).toEqual(winners);
    expect(logins.map(errorCode).filter((code) => code === 'UNAUTHENTICATED')).toHaveLength(20);
  });

  it('builds the reset link from APP_URL, never from Host, X-Forwarded-Host or Forwarded headers', async () => {
    const account = await registerAccount(server);
    const { port } = new URL(server.origin);
    const body = JSON.stringify({ query: FORGOT_PASSWORD, variables: { input: { identifier: account.user.email } } });
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(
        {
          host: '127.0.0.1',
          port: Number(port),
          path: '/graphql',
          method: 'POST',
          headers: {
            host: 'evil.example',
            'x-forwarded-host': 'evil.example',
            'x-forwarded-proto': 'http',
            forwarded: 'host=evil.example;proto=http',
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toEqual({ data: { forgotPassword: true } });

    const mail = await nextResetMail(account.user.email);
    const token = resetTokenOf(mail);
    const links = mail.text.match(/\S*reset-password\?token=\S*/g) ?? [];
    expect(links).toEqual([`${RESET_LINK_PREFIX}${token}`]);
    expect(mail.html).toContain(`href="${RESET_LINK_PREFIX}${token}"`);
    for (const part of [mail.subject, mail.text, mail.html]) expect(part.toLowerCase()).not.toContain('evil');
  });

  it('logs neither passwords nor reset, access or refresh tokens, nor the reset link', async () => {
    const password = `logged nowhere original ${suffix()}`;
    const account = await registerAccount(server, { password });
    const secrets: string[] = [password, account.accessToken, account.refreshToken];

    const token = await requestResetToken(account);
    secrets.push(token);
    // A refused attempt first (policy), then the real one.
    expect(errorField(await resetPassword(server, token, 'short'))).toBe('newPassword');
    const resetTo = `logged nowhere reset ${suffix()}`;
    secrets.push(resetTo);
    expect((await resetPassword(server, token, resetTo)).data?.resetPassword).toBe(true);

    const signedIn = await expectLoginWorks(server, account.user.email, resetTo, account.user.id);
    secrets.push(signedIn.accessToken, signedIn.refreshToken);
    const changeTo = `logged nowhere changed ${suffix()}`;
    secrets.push(changeTo);
    const wrongCurrent = `logged nowhere wrong ${suffix()}`;
    secrets.push(wrongCurrent);
    expect(errorField(await changePassword(server, signedIn.accessToken, wrongCurrent, changeTo))).toBe('currentPassword');
    expect((await changePassword(server, signedIn.accessToken, resetTo, changeTo)).data?.changePassword).toBe(true);
    const refreshed = await server.graphql(REFRESH, { refreshToken: signedIn.refreshToken });
    expect(refreshed.errors).toBeUndefined();
    secrets.push(refreshed.data!.refreshToken.accessToken, refreshed.data!.refreshToken.refreshToken);

    // Both notices sent (the outbox logs each delivery), so every log line of the flow is in.
    await waitUntil(() => mailsTo(account.user.email, CHANGED_SUBJECT).length === 2, 'two "password was changed" emails');
    await sleep(200);

    const logs = JSON.stringify(server.logs);
    expect(logs.length).toBeGreaterThan(0);
    for (const secret of secrets) expect(logs.includes(secret), `a secret of ${secret.length} characters is in the logs`).toBe(false);
    expect(logs).not.toContain('reset-password?token');
  });
});

describe('reset tokens and reset emails at rest', () => {
  let downSmtpServer: TestServer;
  let lateSmtp: TestSmtpServer | undefined;
  let smtpPort: number;
  beforeAll(async () => {
    // The SMTP server is down at first, so the reset email waits in the outbox where we can look at it.
    smtpPort = await unusedPort();
    downSmtpServer = await startTestServer({ SMTP_URL: `smtp://127.0.0.1:${smtpPort}` });
  });
  afterAll(async () => {
    await downSmtpServer?.stop();
    await lateSmtp?.stop();
  });

  it('stores only a hash of the token and an encrypted email, and clears the email once sent', async () => {
    const account = await registerAccount(downSmtpServer);
    const forgot = await forgotPassword(downSmtpServer, account.user.email);
    expect(forgot.data?.forgotPassword).toBe(true);

    type OutboxRow = { id: string; payload: string | null; last_error: string | null; sent_at: Date | null };
    const queued = await waitUntil(async () => {
      const rows = await downSmtpServer.sql<OutboxRow>(
        "select id, payload, last_error, sent_at from mail_outbox where recipient = ? and template = 'password-reset'",
        [account.user.email],
      );
      return rows.length === 1 && rows[0].last_error !== null ? rows[0] : null;
    }, 'a failed first delivery of the reset email');
    expect(queued.payload).toEqual(expect.any(String));
    const payload = queued.payload!;

    // Now let the email through and read the token it carries.
    lateSmtp = await startSmtpServer(smtpPort);
    const mail = await lateSmtp.waitFor((candidate) => candidate.to === account.user.email && candidate.subject === RESET_SUBJECT, 15_000);
    const token = resetTokenOf(mail);

    expect(payload).not.toContain(token);
    expect(Buffer.from(payload, 'base64').toString('utf8')).not.toContain(token);
    expect(Buffer.from(payload, 'base64').toString('latin1')).not.toContain('reset-password');

    const stored = await downSmtpServer.sql<{ token_hash: string }>('select token_hash from one_time_tokens where user_id = ?', [account.user.id]);
    expect(stored.length).toBeGreaterThan(0);
    for (const row of stored) {
      expect(row.token_hash).not.toContain(token);
      expect(row.token_hash.trim()).toMatch(/^[0-9a-f]{64}$/);
    }

    const sent = await waitUntil(async () => {
      const rows = await downSmtpServer.sql<OutboxRow>('select id, payload, last_error, sent_at from mail_outbox where id = ?', [queued.id]);
      return rows[0]?.sent_at ? rows[0] : null;
    }, 'the outbox row to be marked sent');
    expect(sent.payload).toBeNull();

    // The token works, and still nothing in the database holds it in clear.
    const reset = await resetPassword(downSmtpServer, token, `after the outage ${suffix()}`);
    expect(reset.data?.resetPassword).toBe(true);
    const dump = JSON.stringify(await downSmtpServer.sql('select * from one_time_tokens where user_id = ?', [account.user.id]));
    expect(dump).not.toContain(token);
  });
});

// ---------------------------------------------------------------------------------------------
// changePassword
// ---------------------------------------------------------------------------------------------

describe('changePassword', () => {
  it('changes the password, keeps the calling session, ends the other ones and sends a notice', async () => {
    const account = await registerAccount(server);
    const other = await expectLoginWorks(server, account.user.email, account.password, account.user.id);
    const newPassword = `changed on purpose ${suffix()}`;

    const response = await changePassword(server, account.accessToken, account.password, newPassword);
    expect(response.errors).toBeUndefined();
    expect(response.data?.changePassword).toBe(true);

    await expectSignedIn(server, account.accessToken, account.user.id);
    const rotated = await server.graphql(REFRESH, { refreshToken: account.refreshToken });
    expect(rotated.errors).toBeUndefined();
    await expectSignedIn(server, rotated.data!.refreshToken.accessToken, account.user.id);

    await expectSignedOut(server, other.accessToken);
    await expectRefreshRefused(server, other.refreshToken);

    await expectLoginWorks(server, account.user.email, newPassword, account.user.id);
    await expectLoginFails(server, account.user.email, account.password);
    await waitUntil(() => mailsTo(account.user.email, CHANGED_SUBJECT).length === 1, 'the "password was changed" email');
  });

  it('refuses a wrong current password on the currentPassword field and changes nothing', async () => {
    const account = await registerAccount(server);
    const other = await expectLoginWorks(server, account.user.email, account.password, account.user.id);
    const newPassword = `never takes effect ${suffix()}`;

    const response = await changePassword(server, account.accessToken, `${account.password} but wrong`, newPassword);
    expect(response.data ?? null).toBeNull();
    expect(errorCode(response)).toBe('BAD_USER_INPUT');
    expect(errorField(response)).toBe('currentPassword');

    await expectSignedIn(server, other.accessToken, account.user.id);
    await expectLoginWorks(server, account.user.email, account.password, account.user.id);
    await expectLoginFails(server, account.user.email, newPassword);
  });

  it('refuses a new password that fails the policy on the newPassword field', async () => {
    const account = await registerAccount(server);
    for (const newPassword of ['too short', 'password1234', `${account.user.username} forever`]) {
      const response = await changePassword(server, account.accessToken, account.password, newPassword);
      expect(response.data ?? null, newPassword).toBeNull();
      expect(errorCode(response), newPassword).toBe('BAD_USER_INPUT');
      expect(errorField(response), newPassword).toBe('newPassword');
    }
    await expectLoginWorks(server, account.user.email, account.password, account.user.id);
  });

  it('refuses a new password equal to the current one', async () => {
    const account = await registerAccount(server);
    const other = await expectLoginWorks(server, account.user.email, account.password, account.user.id);
    const response = await changePassword(server, account.accessToken, account.password, account.password);
    expect(response.data ?? null).toBeNull();
    expect(errorCode(response)).toBe('BAD_USER_INPUT');
    expect(errorField(response)).toBe('newPassword');
    // Refused means no side effects: the other session is still signed in.
    await expectSignedIn(server, other.accessToken, account.user.id);
    await expectLoginWorks(server, account.user.email, account.password, account.user.id);
  });

  it('is UNAUTHENTICATED without an access token', async () => {
    const account = await registerAccount(server);
    const response = await changePassword(server, undefined, account.password, `without a token ${suffix()}`);
    expect(response.data ?? null).toBeNull();
    expect(errorCode(response)).toBe('UNAUTHENTICATED');
    await expectLoginWorks(server, account.user.email, account.password, account.user.id);
  });
});

// ---------------------------------------------------------------------------------------------
// Without SMTP
// ---------------------------------------------------------------------------------------------

describe('development mode without SMTP', () => {
  let devServer: TestServer;
  beforeAll(async () => {
    devServer = await startTestServer({ NODE_ENV: 'development' });
  });
  afterAll(() => devServer?.stop());

  it('logs the full reset link, which works, and writes the email to DATA_DIR/outbox', async () => {
    const account = await registerAccount(devServer);
    const forgot = await forgotPassword(devServer, account.user.email);
    expect(forgot.data?.forgotPassword).toBe(true);

    const linkPattern = /https:\/\/app\.example\.test\/reset-password\?token=([A-Za-z0-9_-]+)/;
    const token = await waitUntil(() => {
      for (const line of devServer.logs) {
        const match = JSON.stringify(line).match(linkPattern);
        if (match) return match[1];
      }
      return null;
    }, 'a log line with the reset link');

    const files = await waitUntil(() => outboxResetMails(devServer).then((mails) => (mails.length > 0 ? mails : null)), 'the .eml file');
    expect(files).toHaveLength(1);
    expect(files[0].to).toBe(account.user.email);
    expect(resetTokenOf(files[0])).toBe(token);
    // The outbox row's id, as over SMTP: every attempt at one email carries the same Message-ID.
    const [row] = await devServer.sql<{ id: string }>(`select "id" from "mail_outbox" where "template" = 'password-reset' order by "created_at" desc limit 1`);
    expect(files[0].messageId).toBe(`<${row.id}@localhost>`);

    const newPassword = `from the log line ${suffix()}`;
    const reset = await resetPassword(devServer, token, newPassword);
    expect(reset.errors).toBeUndefined();
    expect(reset.data?.resetPassword).toBe(true);
    await expectLoginWorks(devServer, account.user.email, newPassword, account.user.id);
  });
});

describe('production mode without SMTP', () => {
  let prodServer: TestServer;
  beforeAll(async () => {
    prodServer = await startTestServer({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(40) });
  });
  afterAll(() => prodServer?.stop());

  it('writes the email to DATA_DIR/outbox but never logs the reset link or token', async () => {
    const account = await registerAccount(prodServer);
    const forgot = await forgotPassword(prodServer, account.user.email);
    expect(forgot.data?.forgotPassword).toBe(true);

    const mails = await waitUntil(() => outboxResetMails(prodServer).then((found) => (found.length > 0 ? found : null)), 'the .eml file');
    expect(mails).toHaveLength(1);
    expect(mails[0].to).toBe(account.user.email);
    const token = resetTokenOf(mails[0]);
    expect(mails[0].text).toContain(`${RESET_LINK_PREFIX}${token}`);

    await sleep(300);
    const logs = JSON.stringify(prodServer.logs);
    expect(logs).not.toContain('reset-password?token');
    expect(logs).not.toContain(token);
    // The log does say where the email went.
    expect(prodServer.logs.some((line) => typeof line.file === 'string' && line.file.startsWith(join(prodServer.config.dataDir, 'outbox')))).toBe(true);
  });
});

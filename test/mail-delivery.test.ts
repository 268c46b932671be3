import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { type App, createApp } from '../src/app.js';
import { loadConfig, processEnv } from '../src/config/config.js';
import { CHANGE_PASSWORD, FORGOT_PASSWORD, LOGIN, newAccountInput, REGISTER } from './support/accounts.js';
import { startTestServer, type TestServer } from './support/server.js';
import { waitUntil } from './support/wait.js';
import { type CapturedMail, startSmtpServer, type TestSmtpServer, unusedPort, verificationCodeOf } from './support/smtp.js';

/** A row of `mail_outbox` as the tests look at it. */
interface OutboxRow {
  id: string;
  recipient: string;
  template: string;
  payload: string | null;
  attempts: number;
  sent_at: Date | null;
  failed_at: Date | null;
  last_error: string | null;
}

const SCENARIO_TIMEOUT_MS = 60_000;
const PINO_WARN = 40;
const PINO_ERROR = 50;

/** The outbox rows addressed to `recipient`. */
async function outboxRowsFor(server: TestServer, recipient: string): Promise<OutboxRow[]> {
  const rows = await server.sql<OutboxRow>('select * from mail_outbox where recipient = ? order by created_at', [recipient]);
  return rows.map((row) => ({ ...row, attempts: Number(row.attempts) }));
}

/** The only outbox row addressed to `recipient`. */
async function outboxRowFor(server: TestServer, recipient: string): Promise<OutboxRow> {
  const rows = await outboxRowsFor(server, recipient);
  expect(rows).toHaveLength(1);
  return rows[0];
}

/** Waits until the message to `recipient` has been tried (and failed) at least once. */
function firstFailureOf(server: TestServer, recipient: string): Promise<OutboxRow> {
  return waitUntil(async () => {
    const [row] = await outboxRowsFor(server, recipient);
    return row && row.attempts >= 1 && row.last_error ? row : undefined;
  }, `the email to ${recipient} failed once`);
}

/** Registers a fresh account through the API; the register call must succeed. */
async function register(server: TestServer) {
  const input = newAccountInput();
  const response = await server.graphql(REGISTER, { input });
  expect(response.errors).toBeUndefined();
  expect(response.data?.register.accessToken).toEqual(expect.any(String));
  expect(response.data?.register.refreshToken).toEqual(expect.any(String));
  return { email: response.data!.register.user.email as string, password: input.password };
}

function mailsTo(smtp: TestSmtpServer, address: string): CapturedMail[] {
  return smtp.messages.filter((mail) => mail.to.includes(address));
}

/** A 'SMTP is down' URL: a loopback port nothing listens on, where an SMTP server may start later. */
async function downSmtp(): Promise<{ port: number; url: string }> {
  const port = await unusedPort();
  return { port, url: `smtp://127.0.0.1:${port}` };
}

describe('when the SMTP server is down', () => {
  it('registers normally, keeps retrying, and sends the email once SMTP is back', { timeout: SCENARIO_TIMEOUT_MS }, async () => {
    const down = await downSmtp();
    const server = await startTestServer({ SMTP_URL: down.url });
    let smtp: TestSmtpServer | undefined;
    try {
      const { email, password } = await register(server);

      const failed = await firstFailureOf(server, email);
      expect(failed.sent_at).toBeNull();
      expect(failed.failed_at).toBeNull();
      expect(failed.last_error).toEqual(expect.any(String));
      const failureLogs = server.logs.filter((line) => line.level === PINO_WARN && /delivery failed/i.test(String(line.msg)));
      expect(failureLogs.length).toBeGreaterThan(0);

      smtp = await startSmtpServer(down.port);
      const mail = await smtp.waitFor((message) => message.to.includes(email), 10_000);
      const code = verificationCodeOf(mail);

      const sent = await waitUntil(async () => {
        const row = await outboxRowFor(server, email);
        return row.sent_at ? row : undefined;
      }, 'the row is marked sent');
      expect(sent.payload).toBeNull();
      expect(sent.failed_at).toBeNull();

      for (const line of failureLogs) {
        expect(JSON.stringify(line)).not.toContain(code);
        expect(JSON.stringify(line)).not.toContain(password);
      }
      const allLogs = server.logs.map((line) => JSON.stringify(line)).join('\n');
      expect(allLogs).not.toContain(code);
      expect(allLogs).not.toContain(password);
    } finally {
      await server.stop();
      await smtp?.stop();
    }
  });

  it('keeps the queued content encrypted: no code, no "verification", no address in clear', { timeout: SCENARIO_TIMEOUT_MS }, async () => {
    const down = await downSmtp();
    const server = await startTestServer({ SMTP_URL: down.url });
    let smtp: TestSmtpServer | undefined;
    try {
      const { email } = await register(server);
      await firstFailureOf(server, email);
      const [{ payload }] = await server.sql<{ payload: string | null }>('select payload from mail_outbox where recipient = ?', [email]);
      expect(payload).toEqual(expect.any(String));

      // The code is only known once the email has been delivered.
      smtp = await startSmtpServer(down.port);
      const code = verificationCodeOf(await smtp.waitFor((message) => message.to.includes(email), 10_000));

      const decoded = Buffer.from(payload!, 'base64').toString('latin1');
      for (const stored of [payload!, decoded]) {
        expect(stored).not.toContain(code);
        expect(stored.toLowerCase()).not.toContain('verification');
        expect(stored.toLowerCase()).not.toContain(email);
      }
    } finally {
      await server.stop();
      await smtp?.stop();
    }
  });

  it('gives up after the last attempt: the row is marked failed, its content erased, and an error is logged', { timeout: SCENARIO_TIMEOUT_MS }, async () => {
    const down = await downSmtp();
    const server = await startTestServer({ SMTP_URL: down.url }, { outbox: { maxAttempts: 2, retryBaseMs: 50 } });
    try {
      const { email } = await register(server);
      const failed = await waitUntil(async () => {
        const row = await outboxRowFor(server, email);
        return row.failed_at ? row : undefined;
      }, 'the row is marked failed');
      expect(failed.payload).toBeNull();
      expect(failed.sent_at).toBeNull();
      expect(failed.attempts).toBe(2);
      expect(failed.last_error).toEqual(expect.any(String));
      expect(server.logs.some((line) => line.level === PINO_ERROR && /giving up|gave up/i.test(String(line.msg)))).toBe(true);

      // A given-up message is not tried again.
      await sleep(500);
      expect((await outboxRowFor(server, email)).attempts).toBe(2);
    } finally {
      await server.stop();
    }
  });
});

describe('a restart between queueing and sending', () => {
  it('sends the queued email after the restart, exactly once', { timeout: SCENARIO_TIMEOUT_MS }, async () => {
    const smtp = await startSmtpServer();
    const down = await downSmtp();
    const server = await startTestServer({ SMTP_URL: down.url });
    try {
      const { email } = await register(server);
      await firstFailureOf(server, email);
      expect(mailsTo(smtp, email)).toHaveLength(0);

      await server.restart({ SMTP_URL: smtp.url });
      await smtp.waitFor((message) => message.to.includes(email), 10_000);
      await waitUntil(async () => (await outboxRowFor(server, email)).sent_at, 'the row is marked sent');
      await sleep(1_000);
      expect(mailsTo(smtp, email)).toHaveLength(1);
    } finally {
      await server.stop();
      await smtp.stop();
    }
  });
});

describe('two app instances on one database', () => {
  // The embedded database belongs to one process; sharing needs a real PostgreSQL server.
  it.skipIf(!processEnv().DATABASE_URL)('never send one message twice', { timeout: SCENARIO_TIMEOUT_MS }, async () => {
    const down = await downSmtp();
    // Small batches so both workers keep competing for the same rows.
    const outbox = { pollIntervalMs: 100, retryBaseMs: 200, batchSize: 3 };
    const server = await startTestServer({ SMTP_URL: down.url }, { outbox });
    let second: App | undefined;
    let smtp: TestSmtpServer | undefined;
    const secondLogs: Array<Record<string, any>> = [];
    try {
      const { config } = server;
      expect(config.databaseUrl).toEqual(expect.any(String));
      // Same database, same DATA_DIR (hence the same generated secret and keys), same SMTP.
      second = await createApp(
        loadConfig({
          NODE_ENV: config.nodeEnv,
          HOST: '127.0.0.1',
          PORT: '0',
          DATA_DIR: config.dataDir,
          DATABASE_URL: config.databaseUrl,
          SMTP_URL: config.smtpUrl,
          APP_URL: config.appUrl,
          BCRYPT_COST: String(config.bcryptCost),
          LOG_LEVEL: config.logLevel,
        }),
        {
          outbox,
          logDestination: new Writable({
            write(chunk: Buffer, _encoding, done) {
              for (const line of chunk.toString('utf8').split('\n')) if (line) secondLogs.push(JSON.parse(line));
              done();
            },
          }),
        },
      );
      // Its workers start once it listens, as an instance's do.
      await second.listen();

      const accounts = await Promise.all(Array.from({ length: 20 }, () => register(server)));
      const emails = accounts.map((account) => account.email);
      await waitUntil(async () => {
        const rows = await server.sql<{ count: string }>('select count(*) as count from mail_outbox where attempts >= 1 and sent_at is null');
        return Number(rows[0].count) === 20;
      }, 'all 20 emails failed once');

      smtp = await startSmtpServer(down.port);
      await waitUntil(() => emails.every((email) => mailsTo(smtp!, email).length > 0), 'all 20 emails arrived', 20_000);
      await waitUntil(async () => {
        // Emails only: the jobs that carry webhook events share the table (with no recipient).
        const rows = await server.sql<{ count: string }>("select count(*) as count from mail_outbox where sent_at is not null and recipient <> ''");
        return Number(rows[0].count) === 20;
      }, 'all 20 rows are marked sent');
      await sleep(1_000);

      for (const email of emails) expect(mailsTo(smtp, email), email).toHaveLength(1);
      expect(smtp.messages).toHaveLength(20);
      const sentLines = [...server.logs, ...secondLogs].filter((line) => line.msg === 'email sent');
      expect(sentLines).toHaveLength(20);
    } finally {
      await second?.close();
      await server.stop();
      await smtp?.stop();
    }
  });
});

// The worker is woken when a transaction that queued mail commits (one subscriber on the ORM's
// flush and commit events), not by each service remembering to. With its regular poll an hour away,
// every email below can only leave that way: at registration (a flush outside a transaction), from
// forgotPassword (a job, then the reset email queued by the job's own transaction) and at
// changePassword (inside the transaction that holds the account).
describe('waking the worker after commit', () => {
  it('sends each email at once although the worker would not look on its own for an hour', { timeout: SCENARIO_TIMEOUT_MS }, async () => {
    const smtp = await startSmtpServer();
    const server = await startTestServer({ SMTP_URL: smtp.url }, { outbox: { pollIntervalMs: 3_600_000 } });
    try {
      const account = await register(server);
      const within = 10_000;
      await smtp.waitFor((mail) => mail.to.includes(account.email) && /verification code/i.test(mail.subject), within);
      expect((await server.graphql(FORGOT_PASSWORD, { input: { identifier: account.email } })).data?.forgotPassword).toBe(true);
      await smtp.waitFor((mail) => mail.to.includes(account.email) && /reset/i.test(mail.subject), within);
      const signedIn = (await server.graphql(LOGIN, { input: { identifier: account.email, password: account.password } })).data!.login;
      const changed = await server.graphql(
        CHANGE_PASSWORD,
        { input: { currentPassword: account.password, newPassword: 'an entirely different passphrase' } },
        { token: signedIn.accessToken },
      );
      expect(changed.errors).toBeUndefined();
      await smtp.waitFor((mail) => mail.to.includes(account.email) && /password was changed|password changed/i.test(mail.subject), within);
    } finally {
      await server.stop();
      await smtp.stop();
    }
  });
});

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processEnv } from '../src/config/config.js';
import { FORGOT_PASSWORD, newAccountInput, REGISTER } from './support/accounts.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { build, exitOf, killServerProcesses, postGraphQL, type ServerProcess, serverProcessEnv, startServerProcess } from './support/server-process.js';
import { startTestServer, type TestServer } from './support/server.js';
import { type CapturedMail, startSmtpServer, type TestSmtpServer, unusedPort } from './support/smtp.js';
import { waitUntil } from './support/wait.js';

// Mail is delivered at least once and never repeated by the outbox's own bookkeeping, whatever
// happens around it: an SMTP server that says "try later", the database dropping its connections
// right after the SMTP server accepted a message, a SIGKILL between the acceptance and the "sent"
// mark, a SIGKILL right after forgotPassword answered. Real processes, a real SMTP server on
// loopback, real kills; only bounded waits.
const DATABASE_URL = processEnv().DATABASE_URL;
const START_TIMEOUT_MS = 90_000;
/** A dead process's claims lapse after the default lease (10 s): mail resumes within 30 s of a restart. */
const RESUME_WITHIN_MS = 30_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('every attempt at one email', () => {
  let smtp: TestSmtpServer;
  let server: TestServer;
  const refusedOnce = new Set<string>();
  beforeAll(async () => {
    // The first attempt at every message is answered "451 try later".
    smtp = await startSmtpServer(0, { beforeAnswer: (mail) => (refusedOnce.has(mail.messageId) ? 'accept' : (refusedOnce.add(mail.messageId), 'reject')) });
    server = await startTestServer({ SMTP_URL: smtp.url });
  });
  afterAll(async () => {
    await server?.stop();
    await smtp?.stop();
  });

  it('carries the same Message-ID, and the accepted attempt is the only copy delivered', async () => {
    const input = newAccountInput();
    await postGraphQL(server.origin, REGISTER, { input });
    const delivered = await smtp.waitFor((mail) => mail.to === input.email, 15_000);
    const tries = smtp.attempts.filter((mail) => mail.to === input.email);
    expect(tries).toHaveLength(2);
    expect(delivered.messageId).toMatch(/^<[0-9a-f-]{36}@/);
    expect(tries.map((mail) => mail.messageId)).toEqual([delivered.messageId, delivered.messageId]);
    await sleep(1000);
    expect(smtp.messages.filter((mail) => mail.to === input.email)).toHaveLength(1);
  });
});

describe('an SMTP server slower than the lease', () => {
  let smtp: TestSmtpServer;
  let server: TestServer;
  let held: (() => void) | undefined;
  beforeAll(async () => {
    // The server takes as long as the test says before it accepts a message.
    smtp = await startSmtpServer(0, { beforeAnswer: () => new Promise<'accept'>((resolve) => (held = () => resolve('accept'))) });
    server = await startTestServer({ SMTP_URL: smtp.url }, { outbox: { leaseMs: 1000 } });
  });
  afterAll(async () => {
    held?.();
    await server?.stop();
    await smtp?.stop();
  });

  it('keeps the claim renewed while the message is out, so no other worker takes it over', async () => {
    const input = newAccountInput();
    await postGraphQL(server.origin, REGISTER, { input });
    await waitUntil(() => smtp.attempts.find((mail) => mail.to === input.email), 'the SMTP server has the message', 15_000);
    // Three leases into the send: a claim that was not renewed would have lapsed twice over.
    await sleep(3000);
    const [row] = await server.sql<{ claimed: boolean }>('select locked_until > now() as claimed from mail_outbox where recipient = ?', [input.email]);
    expect(row.claimed).toBe(true);
    expect(server.logs.filter((line) => line.msg === 'could not renew the claims of emails being sent')).toEqual([]);
    held!();
    await smtp.waitFor((mail) => mail.to === input.email, 15_000);
  });
});

describe.skipIf(!DATABASE_URL)('the database drops its connections right after the SMTP server accepted a message (PostgreSQL)', () => {
  let smtp: TestSmtpServer;
  let server: TestServer;
  let admin: pg.Client;
  let blips = 0;
  beforeAll(async () => {
    smtp = await startSmtpServer(0, {
      async beforeAnswer(mail): Promise<'accept' | 'reject'> {
        if (!mail.subject.startsWith('Your verification code')) return 'accept';
        // Every connection the server holds dies now; the "sent" mark it writes next fails.
        blips += 1;
        const database = new URL(server.config.databaseUrl!).pathname.slice(1);
        await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [database]);
        return 'accept';
      },
    });
    // A short lease: without the retried mark, the message would go out again within a second.
    server = await startTestServer({ SMTP_URL: smtp.url }, { outbox: { leaseMs: 1000 } });
    admin = new pg.Client({ connectionString: DATABASE_URL });
    await admin.connect();
  });
  afterAll(async () => {
    await admin?.end();
    await server?.stop();
    await smtp?.stop();
  });

  it('records the message as sent once the database is back, and never sends it again (5 trials)', async () => {
    const emails: string[] = [];
    for (let trial = 0; trial < 5; trial += 1) {
      const input = newAccountInput();
      emails.push(input.email as string);
      // The request itself may meet a dropped connection too; a second try registers.
      const answer = await postGraphQL(server.origin, REGISTER, { input });
      if (!answer.data?.register) await postGraphQL(server.origin, REGISTER, { input });
      await smtp.waitFor((mail) => mail.to === input.email, 15_000);
    }
    // Several leases long: a message whose mark was lost would have been claimed and sent again.
    await sleep(4000);
    const copies = emails.map((email) => smtp.messages.filter((mail) => mail.to === email).length);
    console.info(`database dropped after SMTP acceptance: ${blips} blips, copies per email ${copies.join(', ')}`);
    expect(copies).toEqual([1, 1, 1, 1, 1]);
    const [{ unsent }] = await server.sql<{ unsent: string }>('select count(*) as unsent from mail_outbox where sent_at is null and failed_at is null');
    expect(Number(unsent)).toBe(0);
  });
});

describe('SIGKILL', () => {
  let database: TestDatabase;
  let dataDir: string;
  let env: Record<string, string>;
  let smtp: TestSmtpServer | undefined;

  beforeAll(async () => {
    await build();
    database = await createTestDatabase(DATABASE_URL);
    dataDir = mkdtempSync(join(tmpdir(), 'user-server-mail-faults-'));
    env = serverProcessEnv({ ...(database.url ? { DATABASE_URL: database.url } : {}), DATA_DIR: dataDir, RATE_LIMIT_SCALE: '0' });
  });
  afterAll(async () => {
    await killServerProcesses();
    await smtp?.stop();
    await database?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  async function kill(server: ServerProcess): Promise<void> {
    server.child.kill('SIGKILL');
    expect((await exitOf(server, 10_000)).signal).toBe('SIGKILL');
  }

  it('right after forgotPassword answered: every acknowledged request is emailed after the restart, within 30 s', async () => {
    // SMTP is down for the first process: nothing can leave before the kill.
    const smtpPort = await unusedPort();
    const first = await startServerProcess('first', { ...env, SMTP_URL: `smtp://127.0.0.1:${smtpPort}` }, START_TIMEOUT_MS);
    const accounts = Array.from({ length: 5 }, () => newAccountInput());
    for (const input of accounts) expect((await postGraphQL(first.origin, REGISTER, { input })).data?.register).toBeTruthy();
    const answers = await Promise.all(accounts.map((input) => postGraphQL(first.origin, FORGOT_PASSWORD, { input: { identifier: input.email } })));
    expect(answers.map((answer) => answer.data?.forgotPassword)).toEqual([true, true, true, true, true]);
    await kill(first);

    smtp = await startSmtpServer(smtpPort);
    const restartedAt = Date.now();
    await startServerProcess('second', { ...env, SMTP_URL: smtp.url }, START_TIMEOUT_MS);
    for (const input of accounts) {
      await smtp.waitFor((mail) => mail.to === input.email && mail.subject === 'Reset your password', RESUME_WITHIN_MS - (Date.now() - restartedAt));
    }
    await killServerProcesses();
    await smtp.stop();
    smtp = undefined;
  }, 180_000);

  it('between the SMTP server accepting a message and the "sent" mark: sent again after the restart, within 30 s, with the same Message-ID', async () => {
    let victim: ServerProcess | undefined;
    const input = newAccountInput();
    let killedDuring: CapturedMail | undefined;
    smtp = await startSmtpServer(0, {
      beforeAnswer(mail) {
        if (mail.to === input.email && victim && !killedDuring) {
          killedDuring = mail;
          // The 250 goes out, and the process dies before it can record it.
          setImmediate(() => victim!.child.kill('SIGKILL'));
        }
        return 'accept';
      },
    });
    victim = await startServerProcess('victim', { ...env, SMTP_URL: smtp.url }, START_TIMEOUT_MS);
    expect((await postGraphQL(victim.origin, REGISTER, { input })).data?.register).toBeTruthy();
    await smtp.waitFor((mail) => mail.to === input.email, 15_000);
    expect((await exitOf(victim, 10_000)).signal).toBe('SIGKILL');

    // The worker logs "email sent" only once the mark has landed.
    const marked = victim.logs.some((line) => line.msg === 'email sent' && line.template === 'verification-code');

    const restartedAt = Date.now();
    await startServerProcess('after', { ...env, SMTP_URL: smtp.url }, START_TIMEOUT_MS);
    if (marked) {
      console.info('the mark landed before the kill: nothing to send again');
    } else {
      await smtp.waitFor((mail) => mail.to === input.email && smtp!.messages.filter((other) => other.to === input.email).length === 2, RESUME_WITHIN_MS - (Date.now() - restartedAt));
    }
    await sleep(2000);
    const copies = smtp.messages.filter((mail) => mail.to === input.email);
    console.info(`killed between acceptance and mark: ${copies.length} copies delivered`);
    expect(copies.length).toBeLessThanOrEqual(2);
    expect(new Set(copies.map((mail) => mail.messageId))).toEqual(new Set([killedDuring!.messageId]));
  }, 180_000);
});

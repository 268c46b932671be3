import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processEnv } from '../src/config/config.js';
import { LOGIN, newAccountInput, REGISTER } from './support/accounts.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { build, killServerProcesses, postGraphQL, type ServerProcess, serverProcessEnv, startServerProcess } from './support/server-process.js';
import { startSmtpServer, type TestSmtpServer } from './support/smtp.js';
import { waitUntil } from './support/wait.js';
import { CREATE_ENDPOINT, startWebhookReceiver, type WebhookReceiver } from './support/webhooks.js';

// Two instances of one deployment whose clocks disagree: instance B's runs a minute ahead (libfaketime,
// Debian's `faketime` package, preloaded into B's process only; everything else is real). A claim on a
// message in the outbox or the webhook queue is the instance's for a lease; B must not judge that
// lease by its own clock and send the message a second time while A is still sending it.
const SERVER_URL = processEnv().DATABASE_URL;
/** Debian's libfaketime; `.ci/run` installs the package when it is missing. */
const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
const SKEW = '+60s';
const START_TIMEOUT_MS = 90_000;

const haveFaketime = existsSync(LIBFAKETIME);
if (SERVER_URL && !haveFaketime) {
  console.warn(`clock-skew.test.ts: SKIPPED — no libfaketime at ${LIBFAKETIME}. Install it with \`apt-get install -y faketime\`.`);
}

describe.skipIf(!SERVER_URL || !haveFaketime)('an instance whose clock runs a minute ahead (needs a real PostgreSQL: two processes share it)', () => {
  const admin = { email: `root-${randomBytes(3).toString('hex')}@example.com`, password: 'Tangerine-Lighthouse-4417' };
  let database: TestDatabase;
  let smtp: TestSmtpServer;
  let hanging: WebhookReceiver;
  let healthy: WebhookReceiver;
  let shared: Record<string, string>;
  const dataDirs: string[] = [];
  /** Messages to these addresses are held at the SMTP server until the test lets them go. */
  const heldFor = new Set<string>();
  const releases: Array<() => void> = [];
  let a: ServerProcess;
  let b: ServerProcess | undefined;

  const startInstance = (name: string, env: Record<string, string> = {}) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'user-server-skew-'));
    dataDirs.push(dataDir);
    return startServerProcess(name, { ...shared, ...env, DATA_DIR: dataDir }, START_TIMEOUT_MS);
  };
  const startAhead = () =>
    startInstance('instance B (clock a minute ahead)', {
      LD_PRELOAD: LIBFAKETIME,
      FAKETIME: SKEW,
      // Timers and timeouts keep real time; only the wall clock (Date) is ahead.
      FAKETIME_DONT_FAKE_MONOTONIC: '1',
    });

  beforeAll(async () => {
    await build();
    smtp = await startSmtpServer(0, {
      beforeAnswer: (mail) => (heldFor.has(mail.to) ? new Promise((resolve) => releases.push(() => resolve('accept'))) : 'accept'),
    });
    hanging = await startWebhookReceiver();
    hanging.answerWith(() => 'hang');
    healthy = await startWebhookReceiver();
    database = await createTestDatabase(SERVER_URL);
    shared = serverProcessEnv({
      DATABASE_URL: database.url!,
      SMTP_URL: smtp.url,
      ADMIN_EMAIL: admin.email,
      ADMIN_PASSWORD: admin.password,
      WEBHOOK_ALLOWED_HOSTS: '127.0.0.1',
      RATE_LIMIT_SCALE: '0',
    });
    a = await startInstance('instance A');
  });

  afterAll(async () => {
    for (const release of releases) release();
    await killServerProcesses();
    await smtp?.stop();
    await hanging?.close();
    await healthy?.close();
    await database?.drop();
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
  });

  it('does not take over an email another instance is sending', async () => {
    // A sends the verification email of a new account; the SMTP server holds it (A keeps its claim
    // renewed meanwhile, on A's clock).
    const first = newAccountInput();
    heldFor.add(first.email);
    expect((await postGraphQL(a.origin, REGISTER, { input: first })).errors).toBeUndefined();
    await waitUntil(() => smtp.attempts.some((mail) => mail.to === first.email), 'A is sending the first email', 20_000);

    // B starts. Its outbox claims what is due: the email of an account registered through it (A's
    // worker is busy with the held one, so B sends it), and, were the lease judged by B's clock,
    // A's held email too, in the same claim.
    b = await startAhead();
    const second = newAccountInput();
    expect((await postGraphQL(b.origin, REGISTER, { input: second })).errors).toBeUndefined();
    await smtp.waitFor((mail) => mail.to === second.email, 20_000);
    await waitUntil(() => b!.logs.some((line) => line.msg === 'email sent'), 'B recorded the email it sent', 20_000);
    expect(smtp.attempts.filter((mail) => mail.to === first.email)).toHaveLength(1);

    // A's send completes: one copy was ever offered to the SMTP server.
    for (const release of releases.splice(0)) release();
    await smtp.waitFor((mail) => mail.to === first.email, 20_000);
    await waitUntil(() => a.logs.some((line) => line.msg === 'email sent' && line.attempt === 1), 'A recorded the email as sent', 20_000);
    expect(smtp.attempts.filter((mail) => mail.to === first.email)).toHaveLength(1);
    // And B's own mail was due at once, though B's clock wrote it "a minute from now".
    expect(smtp.messages.filter((mail) => mail.to === second.email)).toHaveLength(1);
  }, 120_000);

  it('does not take over a webhook attempt another instance has under way', async () => {
    b ??= await startAhead();
    const signedIn = await postGraphQL(a.origin, LOGIN, { input: { identifier: admin.email, password: admin.password } });
    const token = signedIn.data.login.accessToken as string;
    for (const receiver of [hanging, healthy]) {
      const created = await postGraphQL(a.origin, CREATE_ENDPOINT, { url: receiver.url, events: ['user.created'] }, { token });
      expect(created.errors).toBeUndefined();
    }

    // A's dispatcher delivers a user.created event; the hanging endpoint holds A's attempt open.
    const first = newAccountInput();
    expect((await postGraphQL(a.origin, REGISTER, { input: first })).errors).toBeUndefined();
    const hungId = (await hanging.waitFor((hook) => hook.body.includes(first.email), 20_000)).headers['webhook-id'];

    // An event announced through B: B's dispatcher claims what is due for both endpoints at once,
    // and delivers it to the healthy one; A's attempt at the hanging one is still within its lease.
    // The claim that delivers the marker must be B's, else the trial proves nothing about B: A's
    // regular poll may come first on a busy machine, so the event is announced again (at most 3
    // times) until B's claim delivers one.
    let deliveredByB = false;
    for (let announced = 0; announced < 3 && !deliveredByB; announced += 1) {
      const second = newAccountInput();
      expect((await postGraphQL(b.origin, REGISTER, { input: second })).errors).toBeUndefined();
      const marker = await healthy.waitFor((hook) => hook.body.includes(second.email), 20_000);
      const deliveredBy = await waitUntil(() => [a, b!].find((instance) => instance.logs.some((line) => line.msg === 'webhook delivered' && line.webhookId === marker.headers['webhook-id'])), 'the marker recorded', 10_000);
      deliveredByB = deliveredBy === b;
    }
    expect(deliveredByB, "a marker delivered by B's claim").toBe(true);
    expect(hanging.received.filter((hook) => hook.headers['webhook-id'] === hungId)).toHaveLength(1);

    // A's attempt times out and A records it: the attempt was A's all along, and is logged once.
    await waitUntil(() => a.logs.find((line) => line.msg === 'webhook delivery failed; will retry' && line.webhookId === hungId), "A's attempt recorded as failed", 30_000);
    expect([...a.logs, ...b!.logs].filter((line) => line.msg === 'webhook attempt not recorded: its claim had lapsed, or its endpoint was deleted')).toEqual([]);
  }, 120_000);
});

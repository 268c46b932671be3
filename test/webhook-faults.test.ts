import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processEnv } from '../src/config/config.js';
import { DEFAULT_WEBHOOK_OPTIONS } from '../src/modules/webhooks/webhook-dispatcher.js';
import { LOGIN, newAccountInput, REGISTER, registerAccount, START_UP_ADMIN, startUpAdminToken } from './support/accounts.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { build, exitOf, killServerProcesses, postGraphQL, serverProcessEnv, startServerProcess } from './support/server-process.js';
import { startTestServer, type TestServer } from './support/server.js';
import { Relay } from './support/tcp-relay.js';
import { waitUntil, within } from './support/wait.js';
import { CREATE_ENDPOINT, DELETE_ENDPOINT, type ReceivedWebhook, startWebhookReceiver, type WebhookReceiver } from './support/webhooks.js';

// A webhook attempt cut by a SIGKILL of its process is made again by the next process, with the
// same webhook-id, once the dead process's claim lapses (the 10 s time limit plus 5 s). Real
// processes, a real receiver on loopback, a real kill; only bounded waits.
const START_TIMEOUT_MS = 90_000;
const RESUME_WITHIN_MS = 30_000;

// The servers of this file retry within a second; production's schedule is pinned here: a failing
// endpoint is retried for at least 24 hours (the floor), with the same webhook-id each time.
describe('the default retry schedule', () => {
  it('keeps retrying a failing endpoint for at least 24 hours, at growing intervals', () => {
    const delays = DEFAULT_WEBHOOK_OPTIONS.retryDelaysMs;
    const total = delays.reduce((sum, delay) => sum + delay, 0);
    // Each delay may be shortened by its jitter (a tenth at most); the schedule still spans a day.
    expect(total * 0.9).toBeGreaterThanOrEqual(24 * 60 * 60 * 1000);
    expect([...delays].sort((a, b) => a - b)).toEqual(delays);
    expect(delays[0]).toBeLessThanOrEqual(10_000);
  });
});

describe('SIGKILL during a webhook attempt', () => {
  let database: TestDatabase;
  let dataDir: string;
  let receiver: WebhookReceiver;

  beforeAll(async () => {
    await build();
    database = await createTestDatabase(processEnv().DATABASE_URL);
    dataDir = mkdtempSync(join(tmpdir(), 'user-server-webhook-faults-'));
    receiver = await startWebhookReceiver();
  });
  afterAll(async () => {
    await killServerProcesses();
    await receiver?.close();
    await database?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('is attempted again after the restart, within 30 s, with the same webhook-id, and verifies', async () => {
    const env = serverProcessEnv({
      ...(database.url ? { DATABASE_URL: database.url } : {}),
      DATA_DIR: dataDir,
      RATE_LIMIT_SCALE: '0',
      WEBHOOK_ALLOWED_HOSTS: '127.0.0.1',
      ...START_UP_ADMIN,
    });
    let victimAlive = true;
    // The receiver holds the victim's attempt open; after the kill it answers at once.
    receiver.answerWith(() => (victimAlive ? 'hang' : 204));
    const victim = await startServerProcess('victim', env, START_TIMEOUT_MS);
    const admin = (await postGraphQL(victim.origin, LOGIN, { input: { identifier: START_UP_ADMIN.ADMIN_EMAIL, password: START_UP_ADMIN.ADMIN_PASSWORD } })).data!.login.accessToken;
    const created = await postGraphQL(victim.origin, CREATE_ENDPOINT, { url: receiver.url, events: ['user.created'] }, { token: admin });
    const { secret } = created.data!.createWebhookEndpoint;
    const input = newAccountInput();
    const userId = (await postGraphQL(victim.origin, REGISTER, { input })).data!.register.user.id;
    const cut = await receiver.waitFor((hook) => JSON.parse(hook.body).data.user.id === userId, 15_000);

    victim.child.kill('SIGKILL');
    expect((await exitOf(victim, 10_000)).signal).toBe('SIGKILL');
    victimAlive = false;

    await startServerProcess('after', env, START_TIMEOUT_MS);
    const again = await receiver.waitFor((hook) => hook.answered && hook.headers['webhook-id'] === cut.headers['webhook-id'], RESUME_WITHIN_MS);
    expect((new Webhook(secret).verify(again.body, again.headers as Record<string, string>) as any).data.user).toMatchObject({ id: userId, email: input.email });
    await killServerProcesses();
  }, 180_000);
});

/**
 * A receiver that accepts every connection, reads the request and never answers: each attempt at it
 * waits the full 10 s time limit. Counts, per path (one endpoint each), the requests open at once.
 */
async function startDeadReceiver() {
  const open = new Map<string, number>();
  const mostOpen = new Map<string, number>();
  const server = createServer((req, res) => {
    const path = req.url!;
    open.set(path, (open.get(path) ?? 0) + 1);
    mostOpen.set(path, Math.max(mostOpen.get(path) ?? 0, open.get(path)!));
    res.on('close', () => open.set(path, open.get(path)! - 1));
    req.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    /** The most requests to `path` that were open at once (0: it was never called). */
    mostOpen: (path: string) => mostOpen.get(path) ?? 0,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

// Endpoints that hang take no delivery slot from those that answer, however many there are: with
// fifteen endpoints that never answer (each attempt waits the real 10 s time limit) and one that
// does, every event reaches the one that answers within a few seconds, before, while and after the
// dead ones time out and are retried. In process, on a real listener, through the API.
describe('endpoints that never answer', () => {
  const DEAD_ENDPOINTS = 15;
  const ACCOUNTS = 10;
  /** Well under the 10 s time limit of an attempt: a delivery that waited behind a dead one is later. */
  const PROMPTLY_MS = 5_000;
  const ENDPOINT_LOGS = '{ webhookEndpoints { id deliveries(first: 5) { attempt status error } } }';
  let server: TestServer;
  let admin: string;
  let healthy: WebhookReceiver;
  let dead: Array<Awaited<ReturnType<typeof startDeadReceiver>>>;

  beforeAll(async () => {
    healthy = await startWebhookReceiver();
    // Several listeners (hosts by port), so no limit per host could be what keeps them apart.
    dead = [await startDeadReceiver(), await startDeadReceiver(), await startDeadReceiver()];
    // Fast retries: the dead endpoints are tried again as soon as they time out.
    server = await startTestServer({ ...START_UP_ADMIN, WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' }, { webhooks: { pollIntervalMs: 100, retryDelaysMs: Array(6).fill(300) } });
    admin = await startUpAdminToken(server);
  });
  afterAll(async () => {
    await server?.stop();
    await healthy?.close();
    for (const receiver of dead ?? []) await receiver.close();
  });

  const create = async (url: string) => {
    const response = await server.graphql(CREATE_ENDPOINT, { url, events: ['user.created'] }, { token: admin });
    if (!response.data) throw new Error(`createWebhookEndpoint failed: ${JSON.stringify(response.errors)}`);
    return { id: response.data.createWebhookEndpoint.endpoint.id as string, secret: response.data.createWebhookEndpoint.secret as string };
  };
  const logs = async (): Promise<Map<string, Array<{ attempt: number; status: number | null; error: string | null }>>> =>
    new Map((await server.graphql(ENDPOINT_LOGS, {}, { token: admin })).data!.webhookEndpoints.map((endpoint: any) => [endpoint.id, endpoint.deliveries]));
  const about = (userId: string) => (hook: ReceivedWebhook) => JSON.parse(hook.body).data.user.id === userId;

  it('delays no delivery to an endpoint that answers, and gives each dead one one attempt at a time', async () => {
    const stuck: Array<{ id: string; receiver: (typeof dead)[number]; path: string }> = [];
    for (let n = 0; n < DEAD_ENDPOINTS; n += 1) {
      const receiver = dead[n % dead.length]!;
      const path = `/dead/${n}`;
      stuck.push({ id: (await create(`http://127.0.0.1:${receiver.port}${path}`)).id, receiver, path });
    }
    const fine = await create(healthy.url);
    try {
      // About 25 s of sign-ups: before the dead endpoints' first attempts time out, while they do,
      // and while their retries (and the new events queued for them) are made.
      for (let n = 0; n < ACCOUNTS; n += 1) {
        const account = await registerAccount(server);
        const hook = await within(PROMPTLY_MS, () => healthy.waitFor(about(account.user.id), 2 * PROMPTLY_MS), `the delivery of sign-up ${n + 1} to the endpoint that answers`);
        expect((new Webhook(fine.secret).verify(hook.body, hook.headers as Record<string, string>) as any).data.user.id).toBe(account.user.id);
        await new Promise((resolve) => setTimeout(resolve, 2_000));
      }
      // Every dead endpoint was tried, one attempt at a time, and its timeout logged.
      const logged = await waitUntil(async () => {
        const all = await logs();
        return stuck.every(({ id }) => all.get(id)!.length > 0) ? all : undefined;
      }, 'every dead endpoint has a logged attempt', 15_000);
      for (const { id, receiver, path } of stuck) {
        expect(receiver.mostOpen(path)).toBe(1);
        expect(logged.get(id)!.at(-1)).toMatchObject({ attempt: 1, status: null, error: 'no answer within 10 s' });
      }
      expect(logged.get(fine.id)!.every((entry) => entry.attempt === 1 && entry.status === 204)).toBe(true);
      expect(healthy.received).toHaveLength(ACCOUNTS);
    } finally {
      for (const { id } of [...stuck, fine]) await server.graphql(DELETE_ENDPOINT, { id }, { token: admin });
    }
  }, 120_000);
});

// The endpoint answers 2xx while the database is away for a moment: the dispatcher records the
// delivery once the database is back, within the claim, and nobody sends the message again.
describe.skipIf(!processEnv().DATABASE_URL)('a database blip right when the endpoint answers (PostgreSQL, behind a relay the test cuts)', () => {
  let database: TestDatabase;
  let relay: Relay;
  let server: TestServer;
  let receiver: WebhookReceiver;
  beforeAll(async () => {
    database = await createTestDatabase(processEnv().DATABASE_URL);
    const relayed = await Relay.toDatabase(database.url!);
    relay = relayed.relay;
    receiver = await startWebhookReceiver();
    // A 2 s time limit: a claim whose record was lost lapses 7 s after the attempt began.
    server = await startTestServer(
      { DATABASE_URL: relayed.url, ...START_UP_ADMIN, WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' },
      { webhooks: { pollIntervalMs: 100, retryDelaysMs: Array(6).fill(300), timeoutMs: 2000 } },
    );
  });
  afterAll(async () => {
    await relay?.up();
    await server?.stop();
    await relay?.cut();
    await receiver?.close();
    await database?.drop();
  });

  it('records the delivery once the database is back and delivers the message once (5 trials)', async () => {
    const admin = (await server.graphql(LOGIN, { input: { identifier: START_UP_ADMIN.ADMIN_EMAIL, password: START_UP_ADMIN.ADMIN_PASSWORD } })).data!.login.accessToken;
    expect((await server.graphql(CREATE_ENDPOINT, { url: receiver.url, events: ['user.created'] }, { token: admin })).errors).toBeUndefined();
    // Each delivery cuts the database first, then answers 204; the database is back 1.5 s later.
    receiver.answerWith(() => (res) => {
      void relay.cut().then(() => {
        res.writeHead(204).end();
        setTimeout(() => void relay.up(), 1500);
      });
    });
    const ids: string[] = [];
    for (let trial = 0; trial < 5; trial += 1) {
      const input = newAccountInput();
      let registered = await server.graphql(REGISTER, { input });
      // The request itself may meet the relay cut by the previous trial's delivery.
      for (let retry = 0; !registered.data?.register && retry < 20; retry += 1) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        registered = await server.graphql(REGISTER, { input });
      }
      const hook = await receiver.waitFor((received) => received.body.includes(input.email as string), 20_000);
      ids.push(String(hook.headers['webhook-id']));
    }
    // Every delivery recorded (read on the database directly, never through the relay)...
    await waitUntil(
      async () => Number((await database.sql<{ n: string }>('select count(*) as n from webhook_messages where delivered_at is not null'))[0].n) === 5,
      'the five deliveries recorded',
      30_000,
    );
    // ... and, past several claims' worth of time, sent once each.
    await new Promise((resolve) => setTimeout(resolve, 8000));
    const copies = ids.map((id) => receiver.received.filter((received) => received.headers['webhook-id'] === id).length);
    console.info(`database blip as the endpoint answered: copies per event ${copies.join(', ')}`);
    expect(copies).toEqual([1, 1, 1, 1, 1]);
  }, 180_000);
});

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processEnv } from '../src/config/config.js';
import { LOGIN, newAccountInput, REGISTER, START_UP_ADMIN } from './support/accounts.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { build, exitOf, killServerProcesses, postGraphQL, serverProcessEnv, startServerProcess } from './support/server-process.js';
import { CREATE_ENDPOINT, startWebhookReceiver, type WebhookReceiver } from './support/webhooks.js';

// A webhook attempt cut by a SIGKILL of its process is made again by the next process, with the
// same webhook-id, once the dead process's claim lapses (the 10 s time limit plus 5 s). Real
// processes, a real receiver on loopback, a real kill; only bounded waits.
const START_TIMEOUT_MS = 90_000;
const RESUME_WITHIN_MS = 30_000;

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

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processEnv } from '../src/config/config.js';
import { PROJECT_ROOT } from '../src/config/paths.js';
import { withAdvisoryLock } from '../src/db/advisory-lock.js';
import { loadMigrations } from '../src/db/orm.js';
import { LOGIN, ME, REGISTER, newAccountInput } from './support/accounts.js';
import { createTestDatabase } from './support/database.js';
import { startTestServer, type TestServer } from './support/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.stop());

describe('migrations', () => {
  it('bring a fresh database exactly to the schema the entities describe (run `npm run migration:create` after changing an entity)', async () => {
    const generator = server.app.orm.getSchemaGenerator();
    expect(await generator.getUpdateSchemaSQL({ wrap: false })).toBe('');
  });

  it('have all been applied at start-up', async () => {
    const migrator = server.app.orm.getMigrator();
    expect(await migrator.getPendingMigrations()).toEqual([]);
    const executed = (await migrator.getExecutedMigrations()).map((migration) => migration.name);
    expect(executed).toEqual((await loadMigrations()).map((migration) => migration.name));
  });

  it('are all loaded from the migrations folder', async () => {
    const files = readdirSync(join(PROJECT_ROOT, 'migrations')).filter((file) => /^Migration\d+.*\.ts$/.test(file));
    expect(files.length).toBeGreaterThan(0);
    expect((await loadMigrations()).length).toBe(files.length);
  });
});

describe('a database failure during a request', () => {
  it('answers INTERNAL_SERVER_ERROR with a bland message and logs the cause with the request id', async () => {
    const own = await startTestServer();
    try {
      // Break the database under the running server: the next write fails with an SQL error.
      await own.sql('alter table sessions rename to sessions_gone');
      const response = await own.graphql(REGISTER, { input: newAccountInput() });
      expect(response.errors?.[0].extensions).toEqual({ code: 'INTERNAL_SERVER_ERROR' });
      expect(response.errors?.[0].message).toBe('Internal server error.');
      expect(JSON.stringify(response)).not.toMatch(/sessions|relation|sql|insert|stack/i);
      const requestId = response.headers.get('x-request-id');
      expect(requestId).toBeTruthy();
      const logged = own.logs.find((line) => line.requestId === requestId && line.level >= 50);
      expect(logged?.err?.message).toMatch(/sessions/);
    } finally {
      await own.stop();
    }
  });
});

// A rolling deploy: the new version's migration adds a column while this instance runs. Its hottest
// statements are prepared (`select "u".*`), which PostgreSQL then refuses ("cached plan must not
// change result type"): the instance must go on answering, unnamed, with one log line.
describe('a table changed under a running instance', () => {
  it('keeps answering me and login after another instance added a column to users', async () => {
    const own = await startTestServer();
    try {
      const input = newAccountInput();
      const token = (await own.graphql(REGISTER, { input })).data!.register.accessToken as string;
      const signIn = () => own.graphql(LOGIN, { input: { identifier: input.email, password: input.password } });
      for (let round = 0; round < 3; round += 1) {
        expect((await own.graphql(ME, {}, { token })).data?.me.email).toBe(input.email);
        expect((await signIn()).data?.login.accessToken).toEqual(expect.any(String));
      }
      await own.sql('alter table "users" add column "added_by_a_newer_version" integer');
      for (let round = 0; round < 3; round += 1) {
        const me = await own.graphql(ME, {}, { token });
        expect(me.errors, JSON.stringify(me.errors)).toBeUndefined();
        expect(me.data?.me.email).toBe(input.email);
        const again = await signIn();
        expect(again.errors, JSON.stringify(again.errors)).toBeUndefined();
      }
      expect(own.logs.filter((line) => String(line.msg).startsWith('the database cannot keep named statements'))).toHaveLength(1);
    } finally {
      await own.stop();
    }
  });
});

describe('health endpoints', () => {
  it('report ready while the database answers, and not ready (503) once it is gone, while staying alive', async () => {
    const own = await startTestServer();
    try {
      expect((await fetch(`${own.origin}/readyz`)).status).toBe(200);
      await own.app.orm.close(true);
      const ready = await fetch(`${own.origin}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toEqual({ status: 'unavailable' });
      expect((await fetch(`${own.origin}/healthz`)).status).toBe(200);
    } finally {
      await own.stop();
    }
  });
});

describe('the migrations lock (an advisory lock held by an idle transaction while the work runs elsewhere)', () => {
  const serverUrl = processEnv().DATABASE_URL;

  it.skipIf(!serverUrl)('is held for as long as the work runs, even where the server ends idle transactions (PostgreSQL)', async () => {
    const database = await createTestDatabase(serverUrl);
    try {
      // An operator's setting for every session of this database; the lock's transaction is idle
      // while migrations run on the pool's connections.
      await database.sql(`alter database "${new URL(database.url!).pathname.slice(1)}" set idle_in_transaction_session_timeout = '200ms'`);
      const key = 424_242;
      const heldMeanwhile = await withAdvisoryLock(database.url!, key, 'wait', async () => {
        await sleep(800);
        // Another instance starting now must find the lock taken.
        return (await withAdvisoryLock(database.url!, key, 'try', async () => 'taken by a second instance')) === null;
      });
      expect(heldMeanwhile).toBe(true);
    } finally {
      await database.drop();
    }
  });
});

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../src/config/paths.js';
import { loadMigrations } from '../src/db/orm.js';
import { REGISTER, newAccountInput } from './support/accounts.js';
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

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type App, createApp } from '../src/app.js';
import { ConfigError, loadConfig, processEnv } from '../src/config/config.js';
import { createOrmConfig } from '../src/db/orm.js';
import { keysetPage } from '../src/graphql/pagination.js';
import { User } from '../src/modules/users/user.entity.js';
import { LOGIN, ME, newAccountInput, REGISTER } from './support/accounts.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

const SECRET = 'r'.repeat(48);
const PRIMARY = 'postgresql://app@db-primary.internal:5432/users';

function problemsOf(env: Record<string, string>): readonly string[] {
  try {
    loadConfig({ DATA_DIR: mkdtempSync(join(tmpdir(), 'user-server-replicas-')), JWT_SECRET: SECRET, ...env });
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('DATABASE_REPLICA_URLS in loadConfig', () => {
  it('is an empty, frozen list when unset', () => {
    const config = loadConfig({ DATA_DIR: mkdtempSync(join(tmpdir(), 'user-server-replicas-')), DATABASE_URL: PRIMARY, JWT_SECRET: SECRET });
    expect(config.databaseReplicaUrls).toEqual([]);
    expect(Object.isFrozen(config.databaseReplicaUrls)).toBe(true);
  });

  it('lists every comma-separated URL beside DATABASE_URL (spaces and empty entries ignored)', () => {
    const config = loadConfig({
      DATA_DIR: mkdtempSync(join(tmpdir(), 'user-server-replicas-')),
      JWT_SECRET: SECRET,
      DATABASE_URL: PRIMARY,
      DATABASE_REPLICA_URLS: ' postgresql://app@db-replica-1.internal:5432/users , postgres://app@db-replica-2.internal/users, ',
    });
    expect(config.databaseReplicaUrls).toEqual(['postgresql://app@db-replica-1.internal:5432/users', 'postgres://app@db-replica-2.internal/users']);
    expect(Object.isFrozen(config.databaseReplicaUrls)).toBe(true);
  });

  it('is refused without DATABASE_URL: the embedded database has no replicas', () => {
    const problems = problemsOf({ DATABASE_REPLICA_URLS: 'postgresql://app@db-replica-1.internal/users' });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^DATABASE_REPLICA_URLS needs DATABASE_URL/);
  });

  it('reports each bad URL by its position, never echoing it (it may hold a password)', () => {
    const problems = problemsOf({
      DATABASE_URL: PRIMARY,
      DATABASE_REPLICA_URLS: 'postgresql://app@db-replica-1.internal/users,mysql://app:s3cret-pw@db/users,not a url',
    });
    expect(problems).toEqual([
      'DATABASE_REPLICA_URLS entry 2 must be a postgresql://… or postgres://… URL',
      'DATABASE_REPLICA_URLS entry 3 must be a postgresql://… or postgres://… URL',
    ]);
    expect(problems.join('\n')).not.toContain('s3cret');
  });

  it('reports a missing DATABASE_URL and a bad entry together', () => {
    const problems = problemsOf({ DATABASE_REPLICA_URLS: 'http://db-replica-1.internal/users' });
    expect(problems).toHaveLength(2);
    expect(problems.some((problem) => problem.startsWith('DATABASE_REPLICA_URLS needs DATABASE_URL'))).toBe(true);
    expect(problems).toContain('DATABASE_REPLICA_URLS entry 1 must be a postgresql://… or postgres://… URL');
  });
});

describe('createOrmConfig and read replicas', () => {
  it('never prefers a replica: only queries that ask for a read connection use one', () => {
    const options = createOrmConfig({ clientUrl: PRIMARY, poolSize: 5, replicaUrls: ['postgresql://app@db-replica-1.internal/users'] });
    expect(options.preferReadReplicas).toBe(false);
    expect(options.replicas).toEqual([{ clientUrl: 'postgresql://app@db-replica-1.internal/users' }]);
  });

  it('configures no replicas when there are none', () => {
    const options = createOrmConfig({ clientUrl: PRIMARY, poolSize: 5 });
    expect(options.preferReadReplicas).toBe(false);
    expect(options.replicas).toBeUndefined();
  });
});

const serverUrl = processEnv().DATABASE_URL;
const ADMIN = { email: 'root-operator@example.com', password: 'Tangerine-Lighthouse-4417' };

describe.skipIf(!serverUrl)('a server with a stand-in replica (DATABASE_REPLICA_URLS = DATABASE_URL; needs a real PostgreSQL: set DATABASE_URL)', () => {
  let database: TestDatabase;
  let app: App | undefined;
  let origin: string;
  let dataDir: string;

  beforeAll(async () => {
    database = await createTestDatabase(serverUrl);
    dataDir = mkdtempSync(join(tmpdir(), 'user-server-replicas-'));
    const config = loadConfig({
      NODE_ENV: 'test',
      HOST: '127.0.0.1',
      PORT: '0',
      DATA_DIR: dataDir,
      DATABASE_URL: database.url!,
      DATABASE_REPLICA_URLS: database.url!,
      JWT_SECRET: SECRET,
      BCRYPT_COST: '4',
      RATE_LIMIT_SCALE: '0',
      LOG_LEVEL: 'warn',
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
    });
    expect(config.databaseReplicaUrls).toEqual([database.url]);
    const discard = new Writable({ write: (_chunk, _encoding, done) => done() });
    app = await createApp(config, { logDestination: discard });
    origin = new URL(await app.listen()).origin;
  });

  afterAll(async () => {
    await app?.close();
    await database?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  async function graphql(query: string, variables: Record<string, unknown> = {}, token?: string) {
    const response = await fetch(`${origin}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query, variables }),
    });
    return (await response.json()) as { data?: any; errors?: Array<{ extensions?: { code?: string } }> };
  }

  it('starts, is ready and answers GraphQL', async () => {
    const ready = await fetch(`${origin}/readyz`);
    expect(ready.status).toBe(200);
    const registered = await graphql(REGISTER, { input: newAccountInput() });
    expect(registered.errors).toBeUndefined();
    const me = await graphql(ME, {}, registered.data.register.accessToken);
    expect(me.data?.me.id).toBe(registered.data.register.user.id);
  });

  it('opens a separate pool for the replica, used only by queries that ask for a read connection', async () => {
    const driver = app!.orm.em.getDriver();
    const replica = driver.getConnection('read');
    expect(replica).not.toBe(driver.getConnection('write'));
    const replicaQueries = vi.spyOn(replica, 'execute');
    try {
      // Sign-up, sign-in, the per-request session lookup and sign-out all read the primary.
      const input = newAccountInput();
      const registered = await graphql(REGISTER, { input });
      expect(registered.errors).toBeUndefined();
      const signedIn = await graphql(LOGIN, { input: { identifier: input.username, password: input.password } });
      expect(signedIn.errors).toBeUndefined();
      const token = signedIn.data.login.accessToken;
      expect((await graphql(ME, {}, token)).data?.me.username).toBe(input.username);
      expect((await graphql('mutation { logout }', {}, token)).data?.logout).toBe(true);
      expect((await graphql(ME, {}, token)).errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
      expect(replicaQueries).not.toHaveBeenCalled();

      // The listings' keyset pagination reads the replica: both the count and the page.
      const page = await keysetPage(app!.orm.em.fork(), { entity: User, fields: ['id', 'createdAt'], where: [] }, 2, null, (row) => row);
      expect(page.totalCount).toBeGreaterThanOrEqual(3);
      expect(page.edges).toHaveLength(2);
      expect(page.edges[0].node.createdAt).toBeInstanceOf(Date);
      expect(replicaQueries).toHaveBeenCalledTimes(2);
    } finally {
      replicaQueries.mockRestore();
    }
  });

  it('answers the admin listings (the lag-tolerant reads) with a replica configured', async () => {
    const signedIn = await graphql(LOGIN, { input: { identifier: ADMIN.email, password: ADMIN.password } });
    expect(signedIn.errors).toBeUndefined();
    const token = signedIn.data.login.accessToken;
    const users = await graphql('{ users(first: 5) { totalCount edges { node { id } } } }', {}, token);
    expect(users.errors).toBeUndefined();
    expect(users.data.users.totalCount).toBeGreaterThanOrEqual(3);
    const events = await graphql('{ auditEvents(first: 5) { totalCount } }', {}, token);
    expect(events.errors).toBeUndefined();
    expect(events.data.auditEvents.totalCount).toBeGreaterThan(0);
  });
});

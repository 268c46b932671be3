import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { TestServer } from './server.js';

/** A database of its own for one test file, and how to drop it afterwards. */
export interface TestDatabase {
  /** `DATABASE_URL` for the server under test; undefined runs it on the embedded database. */
  url: string | undefined;
  drop(): Promise<void>;
}

/**
 * With `serverUrl` (the suite's DATABASE_URL) creates a fresh, uniquely named database on that
 * server so test files never see each other's rows; without it the app's embedded database is used.
 */
export async function createTestDatabase(serverUrl: string | undefined): Promise<TestDatabase> {
  if (!serverUrl) return { url: undefined, drop: async () => {} };
  const name = `test_${randomBytes(6).toString('hex')}`;
  await withAdminClient(serverUrl, (client) => client.query(`create database "${name}"`));
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () => withAdminClient(serverUrl, (client) => client.query(`drop database if exists "${name}" with (force)`)).then(() => {}),
  };
}

async function withAdminClient<T>(serverUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/**
 * The SQL statements `server` sends while `work` runs (every query goes through MikroORM's knex,
 * with its values written in), apart from the mail outbox worker's polling, which runs on its own
 * schedule.
 */
export async function queriesDuring(server: TestServer, work: () => Promise<unknown>): Promise<string[]> {
  const knex = server.app.orm.em.getConnection().getKnex();
  const seen: string[] = [];
  const listener = (query: { sql: string }) => {
    if (!query.sql.includes('"mail_outbox"')) seen.push(query.sql);
  };
  knex.on('query', listener);
  try {
    await work();
  } finally {
    knex.off('query', listener);
  }
  return seen;
}

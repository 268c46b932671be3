import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** A database of its own for one test file, and how to drop it afterwards. */
export interface TestDatabase {
  /** `DATABASE_URL` for the server under test; undefined runs it on the embedded database. */
  url: string | undefined;
  /** One statement on this database, on a connection of its own (server databases only). */
  sql<T = Record<string, any>>(query: string, params?: unknown[]): Promise<T[]>;
  drop(): Promise<void>;
}

/**
 * With `serverUrl` (the suite's DATABASE_URL) creates a fresh, uniquely named database on that
 * server so test files never see each other's rows; without it the app's embedded database is used.
 */
export async function createTestDatabase(serverUrl: string | undefined): Promise<TestDatabase> {
  if (!serverUrl) {
    return {
      url: undefined,
      sql: () => Promise.reject(new Error('the embedded database belongs to the server process')),
      drop: async () => {},
    };
  }
  const name = `test_${randomBytes(6).toString('hex')}`;
  await withAdminClient(serverUrl, (client) => client.query(`create database "${name}"`));
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    sql: (query, params = []) => withAdminClient(url.toString(), async (client) => (await client.query(query, params)).rows),
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
 * The SQL statements sent to PostgreSQL from this process while `work` runs (a test server runs in
 * the test's process), whichever way they go (the ORM, or a pooled statement of its own), apart
 * from those of the mail outbox worker and the webhook dispatcher, which run on their own schedule
 * (`workerTables` keeps the statements on their tables, for a server whose workers are off; `to`
 * keeps only those sent to one server's database, where other test servers run in the process).
 * Statements through the ORM have their values written in.
 */
const WORKER_TABLES = ['"mail_outbox"', '"webhook_messages"'];

export async function queriesDuring(work: () => Promise<unknown>, options: { workerTables?: boolean; to?: string } = {}): Promise<string[]> {
  const prototype = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const original = prototype.query;
  const seen: string[] = [];
  // `to`: only the statements sent to that database (a connection string; parsed, never connected).
  const target = options.to === undefined ? undefined : new pg.Client({ connectionString: options.to });
  const isTarget = (client: pg.Client) => !target || (client.host === target.host && client.port === target.port && client.database === target.database);
  prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const [config] = args;
    const text = typeof config === 'string' ? config : (config as { text?: string } | undefined)?.text;
    if (text !== undefined && isTarget(this) && (options.workerTables || !WORKER_TABLES.some((table) => text.includes(table)))) seen.push(text);
    return original.apply(this, args);
  };
  try {
    await work();
  } finally {
    prototype.query = original;
  }
  return seen;
}

import { setTimeout as sleep } from 'node:timers/promises';
import { stripVTControlCharacters } from 'node:util';
import type { MikroORM } from '@mikro-orm/postgresql';
import pg from 'pg';
import { type Config, StartupError } from '../config/config.js';
import type { Logger } from '../logger.js';
import { lockDataDir } from './data-dir-lock.js';
import { startEmbeddedPostgres } from './embedded.js';
import { openOrm } from './orm.js';
import { isDatabaseUnavailable } from './outage.js';
import { CONNECT_TIMEOUT_MS } from './statement-timeout.js';

/** Pool size against a real PostgreSQL server; the embedded database always gets exactly one. */
const SERVER_POOL_SIZE = 10;

/**
 * The embedded database in `dataDir`, opened only under the folder's exclusive lock (released
 * when it stops): a second process refuses at once instead of corrupting it.
 */
async function openEmbedded(dataDir: string, logger: Logger) {
  const unlock = await lockDataDir(dataDir, logger);
  try {
    const embedded = await startEmbeddedPostgres(dataDir);
    return {
      clientUrl: embedded.clientUrl,
      poolSize: 1,
      embedded: true,
      stop: async () => {
        await embedded.stop();
        await unlock();
      },
    };
  } catch (error) {
    await unlock();
    throw error;
  }
}

/** PostgreSQL error classes that waiting cannot cure: bad password or role (28), no such database (3D). */
const PERMANENT_SQLSTATE = /^(28|3D)/;

/** `host:port/database` of `url`: what messages name (never the password). */
export function describeDatabase(url: string): string {
  const { hostname, port, pathname } = new URL(url);
  return `${hostname}:${port || 5432}${pathname}`;
}

/** What went wrong, in a few words for an operator. */
function reasonOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return /Timeout acquiring a connection/.test(message) ? 'no connection could be opened in time' : message;
}

/**
 * One check that `url` answers (connect, `select 1`), each step bounded by `timeoutMs`, on a
 * connection of its own.
 */
async function probe(url: string, timeoutMs: number): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs });
  client.on('error', () => {}); // a connection dropped after the check is not this check's problem
  try {
    await client.connect();
    await client.query('select 1');
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Opens the ORM on `url` and migrates, retrying the whole sequence — the first check that the
 * server answers, the ORM's own connections, the migrations lock — for up to `timeoutSeconds`
 * while the database cannot be reached: one log line per failed attempt, retries after 0.5 s, 1 s,
 * 2 s … 5 s (the last one when the time is up). Gives up with one clear {@link StartupError} saying
 * how long it tried, or at once when the server refuses the credentials or the database (the
 * password never appears: only host, port and database are named).
 */
async function openServer(url: string, timeoutSeconds: number, open: () => Promise<MikroORM>, logger: Logger): Promise<MikroORM> {
  const where = describeDatabase(url);
  const startedAt = Date.now();
  const deadline = startedAt + timeoutSeconds * 1000;
  for (let attempt = 1; ; attempt += 1) {
    try {
      // Each attempt gets its full connection timeout, and at least a second, whatever is left.
      await probe(url, Math.max(1000, Math.min(CONNECT_TIMEOUT_MS, deadline - Date.now())));
      if (attempt > 1) logger.info({ attempt }, `database ${where} reachable`);
      return await open();
    } catch (error) {
      const reason = reasonOf(error);
      const code = (error as { code?: unknown }).code;
      if (typeof code === 'string' && PERMANENT_SQLSTATE.test(code)) throw new StartupError(`The database ${where} refused the connection: ${reason}`);
      // Anything else (a migration that fails, say) is not cured by waiting either.
      if (!isDatabaseUnavailable(error)) throw error;
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        const seconds = Math.round((Date.now() - startedAt) / 1000);
        throw new StartupError(`Cannot reach the database ${where} after ${seconds} s (${attempt} ${attempt === 1 ? 'attempt' : 'attempts'}): ${reason}`);
      }
      const delay = Math.min(500 * 2 ** (attempt - 1), 5000, remaining);
      logger.warn({ attempt, retryInMs: delay, reason }, `database ${where} unreachable; retrying`);
      await sleep(delay);
    }
  }
}

/** A migrated database and its ORM. */
export interface Database {
  orm: MikroORM;
  /** Closes the ORM, and stops the embedded database when there is one. */
  close(): Promise<void>;
}

/**
 * Connects to `DATABASE_URL` (retried for `DATABASE_CONNECT_TIMEOUT` seconds, see
 * {@link openServer}), or starts the embedded database in `DATA_DIR`, and applies pending
 * migrations, always on the primary. With `databaseReplicaUrls` MikroORM also opens a pool per read
 * replica, used only by queries that ask for a `'read'` connection. Used by the server and by the
 * command-line tools.
 */
export async function openDatabase(
  config: Pick<Config, 'databaseUrl' | 'dataDir'> & Partial<Pick<Config, 'databaseReplicaUrls' | 'databaseConnectTimeoutSeconds'>>,
  logger: Logger,
): Promise<Database> {
  const ormLogger = logger.child({ component: 'mikro-orm' });
  // MikroORM colours its messages for terminals; JSON log lines want plain text.
  const log = (message: string) => ormLogger.info(stripVTControlCharacters(message));
  if (config.databaseUrl) {
    const server = {
      clientUrl: config.databaseUrl,
      poolSize: SERVER_POOL_SIZE,
      embedded: false,
      // Read replicas only ever stand beside a real server (loadConfig refuses them otherwise).
      replicaUrls: config.databaseReplicaUrls ?? [],
    };
    const orm = await openServer(config.databaseUrl, config.databaseConnectTimeoutSeconds ?? 0, () => openOrm(server, log), logger);
    return { orm, close: () => orm.close(true) };
  }
  const embedded = await openEmbedded(config.dataDir, logger);
  let orm: MikroORM;
  try {
    orm = await openOrm(embedded, log);
  } catch (error) {
    await embedded.stop();
    throw error;
  }
  return {
    orm,
    async close() {
      await orm.close(true);
      await embedded.stop();
    },
  };
}

import { stripVTControlCharacters } from 'node:util';
import type { MikroORM } from '@mikro-orm/postgresql';
import pg from 'pg';
import { type Config, StartupError } from '../config/config.js';
import type { Logger } from '../logger.js';
import { lockDataDir } from './data-dir-lock.js';
import { startEmbeddedPostgres } from './embedded.js';
import { openOrm } from './orm.js';

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
const CONNECT_ATTEMPT_TIMEOUT_MS = 5000;

/**
 * Waits for `url` to accept a connection, for up to `timeoutSeconds`: one log line per failed
 * attempt, retries after 0.5 s, 1 s, 2 s … 5 s. Gives up with one clear {@link StartupError} when
 * the time is up, or at once when the server refuses the credentials or the database (the password
 * never appears: only host, port and database are named).
 */
async function waitForDatabase(url: string, timeoutSeconds: number, logger: Logger): Promise<void> {
  const { hostname, port, pathname } = new URL(url);
  const where = `${hostname}:${port || 5432}${pathname}`;
  const deadline = Date.now() + timeoutSeconds * 1000;
  for (let attempt = 1; ; attempt += 1) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: CONNECT_ATTEMPT_TIMEOUT_MS });
    client.on('error', () => {}); // a connection dropped after the check is not this check's problem
    try {
      await client.connect();
      await client.query('select 1');
      if (attempt > 1) logger.info({ attempt }, `database ${where} reachable`);
      return;
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      const code = (error as { code?: string }).code ?? '';
      if (PERMANENT_SQLSTATE.test(code)) throw new StartupError(`The database ${where} refused the connection: ${reason}`);
      const delay = Math.min(500 * 2 ** (attempt - 1), 5000);
      if (Date.now() + delay > deadline) {
        throw new StartupError(`Cannot reach the database ${where} after ${timeoutSeconds} s (${attempt} attempts): ${reason}`);
      }
      logger.warn({ attempt, retryInMs: delay, reason }, `database ${where} unreachable; retrying`);
      await new Promise((resolve) => setTimeout(resolve, delay));
    } finally {
      await client.end().catch(() => {});
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
 * Connects to `DATABASE_URL`, or starts the embedded database in `DATA_DIR`, and applies pending
 * migrations, always on the primary. With `databaseReplicaUrls` MikroORM also opens a pool per read
 * replica, used only by queries that ask for a `'read'` connection. Used by the server and by the
 * command-line tools.
 */
export async function openDatabase(
  config: Pick<Config, 'databaseUrl' | 'dataDir'> & Partial<Pick<Config, 'databaseReplicaUrls' | 'databaseConnectTimeoutSeconds'>>,
  logger: Logger,
): Promise<Database> {
  if (config.databaseUrl) await waitForDatabase(config.databaseUrl, config.databaseConnectTimeoutSeconds ?? 0, logger);
  const server = config.databaseUrl
    ? {
        clientUrl: config.databaseUrl,
        poolSize: SERVER_POOL_SIZE,
        embedded: false,
        // Read replicas only ever stand beside a real server (loadConfig refuses them otherwise).
        replicaUrls: config.databaseReplicaUrls ?? [],
        stop: async () => {},
      }
    : await openEmbedded(config.dataDir, logger);
  const ormLogger = logger.child({ component: 'mikro-orm' });
  let orm: MikroORM;
  try {
    // MikroORM colours its messages for terminals; JSON log lines want plain text.
    orm = await openOrm(server, (message) => ormLogger.info(stripVTControlCharacters(message)));
  } catch (error) {
    await server.stop();
    throw error;
  }
  return {
    orm,
    async close() {
      await orm.close(true);
      await server.stop();
    },
  };
}

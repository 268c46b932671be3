import { stripVTControlCharacters } from 'node:util';
import type { MikroORM } from '@mikro-orm/postgresql';
import type { Config } from '../config/config.js';
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
  config: Pick<Config, 'databaseUrl' | 'dataDir'> & Partial<Pick<Config, 'databaseReplicaUrls'>>,
  logger: Logger,
): Promise<Database> {
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

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { pg_trgm } from '@electric-sql/pglite/contrib/pg_trgm';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

/** A PGlite database in `dataDir`, served over the PostgreSQL wire protocol on loopback. */
export interface EmbeddedPostgres {
  /** `postgresql://` URL the `pg` driver connects to. */
  readonly clientUrl: string;
  stop(): Promise<void>;
}

/**
 * Several sockets may connect (tools, a second pool during shutdown), but PGlite runs one query at
 * a time: the app's own pool must stay at one connection, or transactions wait on each other.
 */
const SOCKET_MAX_CONNECTIONS = 8;

/**
 * Starts PGlite with its files under `dataDir/pglite` and serves it on 127.0.0.1 on a free port, so
 * the application talks to it through the same `pg` driver as to a real server.
 */
export async function startEmbeddedPostgres(dataDir: string): Promise<EmbeddedPostgres> {
  const directory = join(dataDir, 'pglite');
  mkdirSync(directory, { recursive: true });
  // pg_trgm backs the substring search of the admin user list, as on a real server.
  const db = await PGlite.create({ dataDir: directory, extensions: { pg_trgm } });
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: SOCKET_MAX_CONNECTIONS });
  try {
    await server.start();
  } catch (error) {
    await db.close();
    throw error;
  }
  return {
    clientUrl: `postgresql://postgres@${server.getServerConn()}/postgres`,
    async stop() {
      await server.stop();
      await db.close();
    },
  };
}

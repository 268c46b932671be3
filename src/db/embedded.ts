import { accessSync, constants, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { pg_trgm } from '@electric-sql/pglite/contrib/pg_trgm';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { StartupError } from '../config/config.js';

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
  const cannotOpen = (reason: string) =>
    new StartupError(`The embedded database in ${directory} cannot be opened: ${reason} (it must belong to the user the server runs as${process.getuid ? `, uid ${process.getuid()}` : ''})`);
  try {
    mkdirSync(directory, { recursive: true });
  } catch (error) {
    throw cannotOpen((error as Error).message);
  }
  // PGlite fails on such files with an error that names none of them (or prints its own source).
  const unusable = unusablePath(directory);
  if (unusable) throw cannotOpen(`${unusable} is not writable by this process`);
  let db: PGlite;
  try {
    // pg_trgm backs the substring search of the admin user list, as on a real server.
    db = await PGlite.create({ dataDir: directory, extensions: { pg_trgm } });
  } catch (error) {
    throw cannotOpen(error instanceof Error && error.message ? error.message : String((error as { name?: string })?.name ?? error));
  }
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

/**
 * The first file or folder under `directory` (itself included) this process may not read and
 * write, or `undefined` when it may use them all: the database's files, copied or restored as
 * another user, would make PGlite fail half-way.
 */
function unusablePath(directory: string): string | undefined {
  const pending = [directory];
  for (let path = pending.pop(); path !== undefined; path = pending.pop()) {
    try {
      accessSync(path, constants.R_OK | constants.W_OK | constants.X_OK);
      for (const entry of readdirSync(path, { withFileTypes: true })) {
        const child = join(path, entry.name);
        if (entry.isDirectory()) pending.push(child);
        else accessSync(child, constants.R_OK | constants.W_OK);
      }
    } catch (error) {
      return (error as NodeJS.ErrnoException).path ?? path;
    }
  }
  return undefined;
}

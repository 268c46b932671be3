import { accessSync, constants, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
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

/** Only names the socket file; nothing listens on a TCP port. */
const SOCKET_PORT = 5432;

/**
 * Starts PGlite with its files under `dataDir/pglite` and serves it on a Unix socket, so the
 * application talks to it through the same `pg` driver as to a real server.
 *
 * PGlite answers any user name without a password. On a loopback TCP port every local account (and
 * anything that can make this host open a connection) could read and change every account; a socket
 * in a fresh directory only this user may enter (mode 0700) is reachable by this user alone. The
 * directory sits in the system's temporary folder rather than in `dataDir` because socket paths are
 * limited to about 100 bytes.
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
  let socketDirectory: string | undefined;
  const removeSocketDirectory = () => socketDirectory && rmSync(socketDirectory, { recursive: true, force: true });
  let server: PGLiteSocketServer;
  try {
    socketDirectory = mkdtempSync(join(tmpdir(), 'user-server-db-'));
    // libpq and `pg` look for the socket `.s.PGSQL.<port>` in the directory named as the host.
    server = new PGLiteSocketServer({ db, path: join(socketDirectory, `.s.PGSQL.${SOCKET_PORT}`), maxConnections: SOCKET_MAX_CONNECTIONS });
    await server.start();
  } catch (error) {
    removeSocketDirectory();
    await db.close();
    throw error;
  }
  return {
    clientUrl: `postgresql://postgres@${encodeURIComponent(socketDirectory)}:${SOCKET_PORT}/postgres`,
    async stop() {
      await server.stop();
      await db.close();
      removeSocketDirectory();
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

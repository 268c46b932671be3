import { hostname } from 'node:os';
import { mkdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import lockfile from 'proper-lockfile';
import { StartupError } from '../config/config.js';
import type { Logger } from '../logger.js';

/** Who holds a data folder: written beside the lock by the process that took it. */
interface Holder {
  pid: number;
  hostname: string;
  command: string;
  since: string;
}

/** A data folder another process holds; the message says which, and what to do. */
export class DataDirInUseError extends StartupError {
  constructor(dataDir: string, holder: Holder | null) {
    const who = holder ? `process ${holder.pid} on ${holder.hostname} (${holder.command}, since ${holder.since})` : 'another process';
    super(
      `DATA_DIR ${dataDir} is in use by ${who}. The embedded database belongs to one process at a time: stop that process first ` +
        '(to add an account while the server runs, use the createUser mutation), point this one at another DATA_DIR, ' +
        'or set DATABASE_URL to a PostgreSQL server, which any number of processes can share.',
    );
    this.name = 'DataDirInUseError';
  }
}

/** The lock is refreshed this often; a lock not refreshed for {@link ABANDONED_MS} has lost its holder. */
const REFRESH_MS = 1_000;
const ABANDONED_MS = 4 * REFRESH_MS;
/**
 * Without a holder whose process can be checked (another host, no holder file), a lock is only
 * taken over once it has not been refreshed for this long: a live holder never goes that long.
 */
const STALE_MS = 60_000;

const LOCK_NAME = 'embedded-db.lock';
const HOLDER_NAME = 'embedded-db.lock.json';

/** Whether a process with this id exists on this machine (EPERM: it does, as another user). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readHolder(path: string): Holder | null {
  try {
    const holder = JSON.parse(readFileSync(path, 'utf8')) as Holder;
    return Number.isInteger(holder.pid) ? holder : null;
  } catch {
    return null;
  }
}

/**
 * Takes the exclusive lock on a data folder's embedded database (proper-lockfile: an atomic
 * `mkdir`, refreshed every second) and records who holds it, so that a second server, or
 * `npm run user:create`, refuses at once with a message naming the holder instead of opening the
 * same PGlite files: two processes writing them corrupt the database (a row went missing from an
 * index, its user could never sign in).
 *
 * A lock left by a process that died (SIGKILL, power loss) is taken over as soon as it is seen to
 * be abandoned: its holder's process is gone and it has not been refreshed for a few seconds.
 * Resolves with the function that releases the lock.
 */
export async function lockDataDir(dataDir: string, logger: Logger): Promise<() => Promise<void>> {
  mkdirSync(dataDir, { recursive: true });
  const lockPath = join(dataDir, LOCK_NAME);
  const holderPath = join(dataDir, HOLDER_NAME);
  const options = {
    realpath: false,
    lockfilePath: lockPath,
    stale: STALE_MS,
    update: REFRESH_MS,
    onCompromised: (error: Error) => {
      // Someone removed or refreshed our lock: another process may be opening the database.
      logger.error({ err: error, dataDir }, 'lost the lock on DATA_DIR; another process may open the embedded database: stop the others');
    },
  };
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(dataDir, options);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ELOCKED') throw error;
    const holder = readHolder(holderPath);
    // A holder on another host cannot be checked; one on this host must be seen to be gone.
    if (holder && (holder.hostname !== hostname() || isAlive(holder.pid))) throw new DataDirInUseError(dataDir, holder);
    release = await takeOverAbandoned(dataDir, lockPath, holderPath, options);
    logger.warn({ dataDir, previousHolder: holder }, 'took over the DATA_DIR lock of a process that is gone');
  }
  writeFileSync(holderPath, `${JSON.stringify({ pid: process.pid, hostname: hostname(), command: process.argv.slice(1).join(' '), since: new Date().toISOString() } satisfies Holder)}\n`);
  return async () => {
    rmSync(holderPath, { force: true });
    await release();
  };
}

/** Waits (a few seconds at most) until an abandoned lock has gone unrefreshed long enough, then takes it. */
async function takeOverAbandoned(dataDir: string, lockPath: string, holderPath: string, options: lockfile.LockOptions): Promise<() => Promise<void>> {
  const deadline = Date.now() + ABANDONED_MS + 2 * REFRESH_MS;
  for (;;) {
    let age: number;
    try {
      age = Date.now() - statSync(lockPath).mtimeMs;
    } catch {
      age = Infinity; // released meanwhile
    }
    if (age > ABANDONED_MS) {
      try {
        rmdirSync(lockPath);
      } catch {}
      try {
        return await lockfile.lock(dataDir, options);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ELOCKED') throw error;
      }
    }
    // Refreshed recently: a new holder took it, or the old one is still alive after all.
    if (Date.now() > deadline) throw new DataDirInUseError(dataDir, readHolder(holderPath));
    await sleep(REFRESH_MS / 2);
  }
}

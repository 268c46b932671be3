import { execFile, execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { unusedPort } from './smtp.js';

const run = promisify(execFile);

/**
 * A PostgreSQL server of the test's own (initdb into a temporary folder, pg_ctl on a free loopback
 * port), so a test can restart it, stop it or freeze it without touching the suite's server.
 */
export interface PrivatePostgres {
  /** `postgresql://postgres@127.0.0.1:PORT/postgres` */
  readonly url: string;
  readonly port: number;
  /** `pg_ctl restart`: `fast` ends sessions cleanly, `immediate` as a crash would. */
  restart(mode: 'fast' | 'immediate'): Promise<void>;
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  start(): Promise<void>;
  /**
   * SIGSTOP to the postmaster and every process it forked, once each has stopped: connections stay
   * open and nothing answers.
   */
  freeze(): Promise<void>;
  /** SIGCONT to whatever {@link freeze} stopped, and to the server's processes now. */
  thaw(): void;
  /** Stops the server (thawed first) and removes its folder. */
  remove(): Promise<void>;
}

/** The folder of PostgreSQL's server programs (initdb, pg_ctl, postgres), or `undefined` when there are none. */
export function postgresBinaries(): string | undefined {
  const candidates: string[] = [];
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    for (const version of readdirSync(debian).sort((a, b) => Number(b) - Number(a))) candidates.push(join(debian, version, 'bin'));
  }
  for (const path of (process.env.PATH ?? '').split(':')) candidates.push(path);
  return candidates.find((folder) => folder && existsSync(join(folder, 'initdb')) && existsSync(join(folder, 'pg_ctl')));
}

/** initdb and pg_ctl refuse to run as root: as root, they run as the `postgres` user. */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

/** State and parent of a process (from /proc), or `undefined` when it is gone. */
function processStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    // The command name is in parentheses and may contain spaces: the fields after it are fixed.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state, ppid: Number(ppid) };
  } catch {
    return undefined;
  }
}

/** The process ids of `parent`'s children. */
function childrenOf(parent: number): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .filter((pid) => processStat(pid)?.ppid === parent);
}

/** Whether `pid` has stopped (or is gone). */
const stopped = (pid: number) => ['T', 't', undefined].includes(processStat(pid)?.state);

/** Initializes and starts a PostgreSQL server in a temporary folder; `remove()` it afterwards. */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const bin = postgresBinaries();
  if (!bin) throw new Error('no PostgreSQL server programs (initdb, pg_ctl) found');
  const user = serverUser();
  const folder = mkdtempSync(join(tmpdir(), 'user-server-pg-'));
  if (user) chownSync(folder, user.uid, user.gid);
  const dataDir = join(folder, 'data');
  const port = await unusedPort();
  const options = `-p ${port} -k ${folder} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=50`;
  const pgCtl = (...args: string[]) => run(join(bin, 'pg_ctl'), ['-D', dataDir, ...args], { ...user, timeout: 60_000 });
  await run(join(bin, 'initdb'), ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8'], { ...user, timeout: 60_000 });
  const start = () => pgCtl('-o', options, '-l', join(folder, 'log'), '-w', 'start').then(() => {});
  await start();
  const postmaster = () => Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  let frozen: number[] = [];
  const thaw = () => {
    for (const pid of frozen) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {}
    }
    frozen = [];
  };
  return {
    url: `postgresql://postgres@127.0.0.1:${port}/postgres`,
    port,
    restart: (mode) => pgCtl('-m', mode, '-o', options, '-l', join(folder, 'log'), '-w', 'restart').then(() => {}),
    stop: (mode = 'fast') => pgCtl('-m', mode, '-w', 'stop').then(() => {}),
    start,
    async freeze() {
      const main = postmaster();
      // The postmaster first, and only once it has stopped (a signal arrives when it arrives: it
      // may fork a backend meanwhile) every process it forked, until all of them have stopped.
      process.kill(main, 'SIGSTOP');
      frozen = [main];
      const deadline = Date.now() + 10_000;
      for (;;) {
        const running = [main, ...childrenOf(main)].filter((pid) => !stopped(pid));
        if (running.length === 0) return;
        if (Date.now() > deadline) throw new Error(`processes ${running.join(', ')} did not stop`);
        for (const pid of running) {
          if (pid !== main) process.kill(pid, 'SIGSTOP');
          if (!frozen.includes(pid)) frozen.push(pid);
        }
        await sleep(20);
      }
    },
    thaw,
    async remove() {
      thaw();
      await pgCtl('-m', 'immediate', '-w', 'stop').catch(() => {});
      rmSync(folder, { recursive: true, force: true });
    },
  };
}

/** A PgBouncer of the test's own. */
export interface PrivatePgBouncer {
  /** `postgresql://postgres@127.0.0.1:PORT/postgres` */
  readonly url: string;
  stop(): Promise<void>;
}

/** Where Debian's PgBouncer is, or `undefined` without one. */
export function pgBouncerBinary(): string | undefined {
  return ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer'].find((path) => existsSync(path));
}

/**
 * PgBouncer in transaction pooling mode in front of `postgres` (configured as `.ci/run` does: trust,
 * two server connections per database).
 */
export async function startPgBouncer(postgres: Pick<PrivatePostgres, 'port'>): Promise<PrivatePgBouncer> {
  const binary = pgBouncerBinary();
  if (!binary) throw new Error('no pgbouncer found');
  const user = serverUser();
  const folder = mkdtempSync(join(tmpdir(), 'user-server-pgbouncer-'));
  const port = await unusedPort();
  writeFileSync(
    join(folder, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = host=127.0.0.1 port=${postgres.port}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${join(folder, 'users.txt')}`,
      'pool_mode = transaction',
      'default_pool_size = 2',
      'max_client_conn = 500',
      'ignore_startup_parameters = extra_float_digits,options',
      `logfile = ${join(folder, 'pgbouncer.log')}`,
      `pidfile = ${join(folder, 'pgbouncer.pid')}`,
      '',
    ].join('\n'),
  );
  writeFileSync(join(folder, 'users.txt'), '"postgres" ""\n');
  if (user) for (const file of ['', 'pgbouncer.ini', 'users.txt']) chownSync(join(folder, file), user.uid, user.gid);
  // -d: it forks into the background once it listens.
  await run(binary, ['-d', join(folder, 'pgbouncer.ini')], { ...user, timeout: 30_000 });
  return {
    url: `postgresql://postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      try {
        process.kill(Number(readFileSync(join(folder, 'pgbouncer.pid'), 'utf8').trim()), 'SIGTERM');
      } catch {}
      rmSync(folder, { recursive: true, force: true });
    },
  };
}

import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/config/paths.js';
import { LOGIN, START_UP_ADMIN } from '../support/accounts.js';
import { build, exitOf, isRunning, killServerProcesses, type ServerProcess, startServerProcess } from '../support/server-process.js';

// The embedded database has one owner (OWASP ASVS V1.11.3, race conditions on shared resources):
// `npm run user:create` run while `npm start` held the same DATA_DIR printed "created" and exited 0,
// but its row was missing from the username index (the user could never sign in), and later starts
// silently created no ADMIN_EMAIL admin. Every process here runs on the embedded database, whatever
// DATABASE_URL says: the lock is the embedded database's.
const { ADMIN_EMAIL, ADMIN_PASSWORD } = START_UP_ADMIN;

let dataDir: string;
const env = () => ({ NODE_ENV: 'test', HOST: '127.0.0.1', PORT: '0', DATA_DIR: dataDir, BCRYPT_COST: '4', LOG_LEVEL: 'info', RATE_LIMIT_SCALE: '0' });

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs `node dist/src/cli/create-user.js …args` with the test's environment; bounded. */
function createUser(args: string[], timeoutMs = 60_000): Promise<CliRun> {
  return new Promise((resolve) => {
    const startedAt = Date.now();
    const child = spawn(process.execPath, [join(PROJECT_ROOT, 'dist/src/cli/create-user.js'), ...args], {
      cwd: dataDir,
      env: { PATH: process.env.PATH ?? '', ...env() },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - startedAt });
    });
  });
}

async function signIn(server: ServerProcess, identifier: string, password: string) {
  const response = await fetch(`${server.origin}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: LOGIN, variables: { input: { identifier, password } } }),
  });
  return (await response.json()) as { data?: { login?: { user: { id: string; role: string } } }; errors?: Array<{ extensions?: { code?: string } }> };
}

/**
 * What process `pid` listens on, read from /proc (Linux): the TCP ports (IPv4 and IPv6) and the
 * paths of its Unix sockets.
 */
function listeningSockets(pid: number): { tcpPorts: number[]; unixPaths: string[] } {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      if (inode) inodes.add(inode);
    } catch {} // closed meanwhile
  }
  const rows = (file: string) => readFileSync(file, 'utf8').trim().split('\n').slice(1).map((line) => line.trim().split(/\s+/));
  // tcp: sl local_address rem_address st … inode (column 9); st 0A = LISTEN
  const tcpPorts = ['/proc/net/tcp', '/proc/net/tcp6']
    .flatMap(rows)
    .filter((columns) => columns[3] === '0A' && inodes.has(columns[9]))
    .map((columns) => parseInt(columns[1].split(':')[1], 16));
  // unix: Num RefCount Protocol Flags Type St Inode Path
  const unixPaths = rows('/proc/net/unix')
    .filter((columns) => inodes.has(columns[6]) && columns[7]?.startsWith('/'))
    .map((columns) => columns[7]);
  return { tcpPorts: [...new Set(tcpPorts)], unixPaths: [...new Set(unixPaths)] };
}

beforeAll(async () => {
  await build();
  dataDir = mkdtempSync(join(tmpdir(), 'user-server-lock-'));
});
afterAll(async () => {
  await killServerProcesses();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('one process at a time on an embedded DATA_DIR', () => {
  let server: ServerProcess;

  it('npm run user:create refuses at once while a server holds the folder, naming its process', async () => {
    server = await startServerProcess('holder', { ...env(), ADMIN_EMAIL, ADMIN_PASSWORD });
    const run = await createUser(['--email', 'ops@example.com', '--username', 'ops', '--role', 'ADMIN', '--password', 'a long operator passphrase']);
    expect(run.code, run.stderr).toBe(1);
    expect(run.stdout).not.toMatch(/created/);
    expect(run.stderr).toContain(`process ${server.child.pid}`);
    expect(run.stderr).toMatch(/stop that process first/);
    expect(run.stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
    // Nothing was written: the account does not exist for the running server.
    expect((await signIn(server, 'ops', 'a long operator passphrase')).errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });

  // PGlite takes any user name without a password: on a loopback TCP port every local account could
  // read and rewrite every user (CWE-668). Only this server's HTTP port may listen on TCP.
  it('serves the embedded database on no TCP port, only on a socket in a folder no other user may enter', async () => {
    const { tcpPorts, unixPaths } = listeningSockets(server.child.pid!);
    expect(tcpPorts).toEqual([server.port]);
    const databaseSockets = unixPaths.filter((path) => /\.s\.PGSQL\.\d+$/.test(path));
    expect(databaseSockets).toHaveLength(1);
    expect(statSync(dirname(databaseSockets[0])).mode & 0o077).toBe(0);
    expect(statSync(dirname(databaseSockets[0])).uid).toBe(process.getuid!());
  });

  it('a second server on the same folder refuses to start, naming the first', async () => {
    const second = spawn(process.execPath, [join(PROJECT_ROOT, 'dist/src/main.js')], { cwd: dataDir, env: { PATH: process.env.PATH ?? '', ...env() }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    second.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => second.once('exit', resolve));
    const code = await Promise.race([exited, new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), 30_000))]);
    // A second server that did start must not outlive the test.
    if (code === 'running') second.kill('SIGKILL');
    expect(code).toBe(1);
    expect(stderr).toContain(`process ${server.child.pid}`);
    expect(isRunning(server.child)).toBe(true);
    expect((await signIn(server, ADMIN_EMAIL, ADMIN_PASSWORD)).data?.login?.user.role).toBe('ADMIN');
  });

  it('once the server has stopped, user:create works and the account signs in', async () => {
    server.child.kill('SIGTERM');
    expect((await exitOf(server, 30_000)).code).toBe(0);
    const run = await createUser(['--email', 'ops@example.com', '--username', 'ops', '--role', 'ADMIN', '--password', 'a long operator passphrase']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/created ADMIN ops/);
    server = await startServerProcess('after', { ...env(), ADMIN_EMAIL, ADMIN_PASSWORD });
    for (const identifier of ['ops', 'ops@example.com', 'OPS']) {
      expect((await signIn(server, identifier, 'a long operator passphrase')).data?.login?.user.role, identifier).toBe('ADMIN');
    }
  });

  it('says at start-up that ADMIN_* is ignored when another admin exists', async () => {
    server.child.kill('SIGTERM');
    await exitOf(server, 30_000);
    server = await startServerProcess('other-admin', { ...env(), ADMIN_EMAIL: 'someone-else@example.test', ADMIN_PASSWORD });
    expect(server.logs.some((line) => /ADMIN_\* is ignored/.test(String(line.msg)))).toBe(true);
  });

  it("says that a new ADMIN_PASSWORD does not change an existing admin's password", async () => {
    server.child.kill('SIGTERM');
    await exitOf(server, 30_000);
    server = await startServerProcess('same-admin', { ...env(), ADMIN_EMAIL: ' OPS@Example.com ', ADMIN_PASSWORD: 'a rotated operator passphrase' });
    expect(server.logs.some((line) => /ADMIN_EMAIL names an existing admin: ADMIN_PASSWORD and ADMIN_USERNAME are ignored/.test(String(line.msg)))).toBe(true);
    expect(server.logs.some((line) => /ADMIN_\* is ignored/.test(String(line.msg)))).toBe(false);
    expect((await signIn(server, 'ops', 'a long operator passphrase')).data?.login?.user.role).toBe('ADMIN');
  });

  it('takes over the lock of a server that was killed, within seconds', async () => {
    server.child.kill('SIGKILL');
    await exitOf(server, 30_000);
    const startedAt = Date.now();
    server = await startServerProcess('after-kill', env());
    expect(Date.now() - startedAt).toBeLessThan(30_000);
    expect(server.logs.some((line) => /took over the DATA_DIR lock/.test(String(line.msg)))).toBe(true);
    expect((await signIn(server, 'ops', 'a long operator passphrase')).data?.login?.user.role).toBe('ADMIN');
    server.child.kill('SIGTERM');
    expect((await exitOf(server, 30_000)).code).toBe(0);
  });
});

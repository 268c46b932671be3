import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processEnv } from '../src/config/config.js';
import { PROJECT_ROOT } from '../src/config/paths.js';
import { newAccountInput, REGISTER } from './support/accounts.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { build, killServerProcesses, postGraphQL, serverProcessEnv, startServerProcess } from './support/server-process.js';
import { startSmtpServer, type TestSmtpServer, unusedPort } from './support/smtp.js';
import { StallingRelay } from './support/stalling-relay.js';
import { Relay } from './support/tcp-relay.js';
import { waitUntil } from './support/wait.js';

// Start-up against a database that is not there yet, never comes or stops answering, with a data
// folder that cannot be one, and on a port that is taken: the operator gets one log line per
// attempt and, at the end, one clear line and exit status 1 — never a stack trace. The outage is
// real: a port nothing listens on, then a TCP relay to the real PostgreSQL that the test starts
// when it wants the database to "come back", or that stops answering.
const DATABASE_URL = processEnv().DATABASE_URL;

interface Run {
  code: number | null;
  stdout: string[];
  stderr: string[];
  ms: number;
}

/** Runs `node dist/src/main.js` with `env` until it exits (bounded); `as` runs it as another user. */
function runToExit(env: Record<string, string>, timeoutMs = 60_000, as?: { uid: number; gid: number }): Promise<Run> {
  const startedAt = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(PROJECT_ROOT, 'dist/src/main.js')], { cwd: tmpdir(), env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...as });
    const stdout: string[] = [];
    const stderr: string[] = [];
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => stdout.push(...chunk.split('\n').filter(Boolean)));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => stderr.push(...chunk.split('\n').filter(Boolean)));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`still running after ${timeoutMs} ms:\n${[...stdout, ...stderr].slice(-20).join('\n')}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - startedAt });
    });
  });
}

const baseEnv = (dataDir: string): Record<string, string> => serverProcessEnv({ DATA_DIR: dataDir });

let dataDir: string;
beforeAll(async () => {
  await build();
  dataDir = mkdtempSync(join(tmpdir(), 'user-server-startup-'));
});
afterAll(async () => {
  await killServerProcesses();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('an unreachable database', () => {
  it('is retried with one log line per attempt for DATABASE_CONNECT_TIMEOUT seconds, then exit 1 with one clear line', async () => {
    const port = await unusedPort();
    const run = await runToExit({ ...baseEnv(dataDir), DATABASE_URL: `postgresql://app:secret-password@127.0.0.1:${port}/users`, DATABASE_CONNECT_TIMEOUT: '3' });
    expect(run.code).toBe(1);
    const attempts = run.stdout.map((line) => JSON.parse(line) as { msg: string }).filter((line) => line.msg.includes('unreachable; retrying'));
    expect(attempts.length).toBeGreaterThanOrEqual(2);
    expect(run.stderr).toEqual([`Cannot reach the database 127.0.0.1:${port}/users after 3 s (${attempts.length + 1} attempts): connect ECONNREFUSED 127.0.0.1:${port}`]);
    expect([...run.stdout, ...run.stderr].join('\n')).not.toContain('secret-password');
    // "after 3 s" is true: it kept trying until then.
    expect(run.ms).toBeGreaterThanOrEqual(3000);
  });

  describe.skipIf(!DATABASE_URL)('that comes back during the wait (PostgreSQL)', () => {
    let database: TestDatabase;
    let relay: Relay | undefined;
    beforeAll(async () => {
      database = await createTestDatabase(DATABASE_URL);
    });
    afterAll(async () => {
      await relay?.cut();
      await database?.drop();
    });

    it('starts as soon as it answers', async () => {
      const target = new URL(database.url!);
      relay = new Relay(await unusedPort(), { host: target.hostname, port: Number(target.port || 5432) });
      const url = new URL(database.url!);
      url.port = String(relay.port);
      url.hostname = '127.0.0.1';
      // Nothing listens on the relay's port until the first attempt has failed: connections are
      // refused. (Brought up on that line, not after a fixed time: a busy machine may take longer
      // than any fixed time to load the server before its first attempt.)
      let upAfterFirstFailure: Promise<void> | undefined;
      const server = await startServerProcess('late database', { ...baseEnv(dataDir), DATABASE_URL: url.toString(), DATABASE_CONNECT_TIMEOUT: '30' }, undefined, (line) => {
        if (!upAfterFirstFailure && String(line.msg).includes('unreachable; retrying')) upAfterFirstFailure = relay!.up();
      });
      await upAfterFirstFailure;
      const attempts = server.logs.filter((line) => String(line.msg).includes('unreachable; retrying'));
      expect(attempts.length).toBeGreaterThanOrEqual(1);
      expect(server.logs.some((line) => String(line.msg).endsWith('reachable') && line.attempt === attempts.length + 1)).toBe(true);
      const me = await fetch(`${server.origin}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: '{ __typename }' }) });
      expect(me.status).toBe(200);
      await killServerProcesses();
    });

    it('refusing the database name is not waited for: exit 1 at once, with the reason', async () => {
      const url = new URL(DATABASE_URL!);
      url.pathname = `/missing_${randomBytes(4).toString('hex')}`;
      const run = await runToExit({ ...baseEnv(dataDir), DATABASE_URL: url.toString(), DATABASE_CONNECT_TIMEOUT: '60' });
      expect(run.code).toBe(1);
      expect(run.stderr).toHaveLength(1);
      expect(run.stderr[0]).toMatch(/^The database .+\/missing_[0-9a-f]{8} refused the connection: database "missing_[0-9a-f]{8}" does not exist$/);
      expect(run.ms).toBeLessThan(30_000);
    });
  });
});

describe.skipIf(!DATABASE_URL)('a database lost right after the start-up check (PostgreSQL through a relay that passes only its first connection)', () => {
  let database: TestDatabase;
  let relay: Server | undefined;
  const sockets = new Set<Socket>();
  beforeAll(async () => {
    database = await createTestDatabase(DATABASE_URL);
  });
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => (relay ? relay.close(resolve) : resolve(undefined)));
    await database?.drop();
  });

  it('is retried until DATABASE_CONNECT_TIMEOUT, then exit 1 with one clear line and no stack trace', async () => {
    const target = new URL(database.url!);
    const port = await unusedPort();
    let connections = 0;
    relay = createServer((client) => {
      sockets.add(client);
      client.on('error', () => client.destroy());
      connections += 1;
      // Every connection after the first is accepted and dropped at once, as by a failing balancer.
      if (connections > 1) return client.destroy();
      const upstream = connect(Number(target.port || 5432), target.hostname);
      sockets.add(upstream);
      upstream.on('error', () => upstream.destroy());
      client.pipe(upstream).pipe(client);
    }).listen(port, '127.0.0.1');
    const url = new URL(database.url!);
    url.hostname = '127.0.0.1';
    url.port = String(port);
    const run = await runToExit({ ...baseEnv(dataDir), DATABASE_URL: url.toString(), DATABASE_CONNECT_TIMEOUT: '4' }, 30_000);
    expect(run.code).toBe(1);
    expect(connections).toBeGreaterThan(1);
    expect(run.stderr, run.stderr.join('\n')).toHaveLength(1);
    expect(run.stderr[0]).toMatch(new RegExp(`^Cannot reach the database 127\\.0\\.0\\.1:${port}/\\w+ after \\d+ s \\(\\d+ attempts\\): .+`));
    expect(run.ms).toBeGreaterThanOrEqual(4000);
    for (const line of run.stdout) expect(() => JSON.parse(line), line).not.toThrow();
  });
});

// The database stops answering (without closing anything) just as the migrator reads its
// bookkeeping, with no migration pending: that read is bounded like any statement, so the attempt
// fails and is retried like any other, instead of leaving the process "starting" for good.
describe.skipIf(!DATABASE_URL)('a database that stops answering when the migrations are checked (PostgreSQL through a relay that then holds every connection)', () => {
  let database: TestDatabase;
  let relay: StallingRelay | undefined;
  beforeAll(async () => {
    database = await createTestDatabase(DATABASE_URL);
    // Migrated once beforehand (directly), so no migration is pending when the relay stalls.
    const first = await startServerProcess('migrating instance', { ...baseEnv(mkdtempSync(join(dataDir, 'migrated-'))), DATABASE_URL: database.url! });
    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
  });
  afterAll(async () => {
    await relay?.close();
    await database?.drop();
  });

  it('is retried until DATABASE_CONNECT_TIMEOUT, then exit 1 with one clear line', async () => {
    relay = await StallingRelay.start(database.url!, 'mikro_orm_migrations');
    const run = await runToExit({ ...baseEnv(dataDir), DATABASE_URL: relay.url, DATABASE_CONNECT_TIMEOUT: '3' }, 45_000);
    expect(relay.stalledAt, 'the relay never saw the migrations checked: the test proved nothing').toBeDefined();
    expect(run.code).toBe(1);
    expect(run.stderr, run.stderr.join('\n')).toHaveLength(1);
    const where = new URL(relay.url);
    const failure = new RegExp(`^Cannot reach the database 127\\.0\\.0\\.1:${where.port}${where.pathname} after \\d+ s \\((\\d+) attempts?\\): .+`).exec(run.stderr[0]);
    expect(failure, run.stderr[0]).not.toBeNull();
    // One log line for each attempt before the last, and nothing on stdout but log lines.
    const logs = run.stdout.map((line) => JSON.parse(line) as { msg: string });
    expect(logs.filter((line) => line.msg.includes('unreachable; retrying'))).toHaveLength(Number(failure![1]) - 1);
  }, 60_000);
});

// A second instance started on a port another process holds: one clear line and exit 1. Its
// workers start only once it listens, so meanwhile it claims and sends nothing: an email that is
// due then is left to the next instance, which counts its attempt as the second (the first failed).
describe('a port already in use', () => {
  let database: TestDatabase | undefined;
  let smtp: TestSmtpServer | undefined;
  let holder: Server | undefined;
  afterAll(async () => {
    await killServerProcesses();
    await new Promise((resolve) => (holder ? holder.close(resolve) : resolve(undefined)));
    await smtp?.stop();
    await database?.drop();
  });

  it('is one clear line and exit 1, and no mail is claimed or sent meanwhile', async () => {
    database = await createTestDatabase(DATABASE_URL);
    const smtpPort = await unusedPort();
    const env = {
      ...baseEnv(mkdtempSync(join(dataDir, 'port-'))),
      ...(database.url ? { DATABASE_URL: database.url } : {}),
      SMTP_URL: `smtp://127.0.0.1:${smtpPort}`,
      RATE_LIMIT_SCALE: '0',
    };
    // An email whose first attempt failed (the SMTP server is down), left in the outbox.
    const first = await startServerProcess('first instance', env);
    expect((await postGraphQL(first.origin, REGISTER, { input: newAccountInput() })).status).toBe(200);
    const failed = await waitUntil(() => first.logs.find((line) => line.msg === 'email delivery failed; will retry'), 'the first attempt failed', 20_000);
    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
    // Its retry is due, and the SMTP server is up: a worker that ran now would send it.
    await sleep(Number(failed.retryInMs) + 500);
    smtp = await startSmtpServer(smtpPort);
    holder = createServer();
    await new Promise<void>((resolve) => holder!.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as { port: number }).port;

    const run = await runToExit({ ...env, PORT: String(port) }, 60_000);
    expect(run.code).toBe(1);
    expect(run.stderr).toEqual([`Port ${port} on 127.0.0.1 is in use: listen EADDRINUSE: address already in use 127.0.0.1:${port}`]);
    const logs = run.stdout.map((line) => JSON.parse(line) as { msg: string; component?: string });
    expect(logs.filter((line) => line.component === 'mail' || line.component === 'webhooks' || line.component === 'maintenance')).toEqual([]);
    expect(smtp.attempts).toHaveLength(0);

    // Nothing was claimed: the next instance sends the email at once, as its second attempt.
    const next = await startServerProcess('next instance', env);
    const sent = await waitUntil(() => next.logs.find((line) => line.msg === 'email sent' && line.mailId === failed.mailId), 'the next instance sent the email', 20_000);
    expect(sent.attempt).toBe(2);
    next.child.kill('SIGTERM');
    expect((await next.exited).code).toBe(0);
  }, 120_000);
});

/** When the tests run as root: a user without a home here (nobody), to run the server as. */
const otherUser = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : undefined;

describe('a DATA_DIR with contents this process cannot use', () => {
  /** A data folder of its own for one case, owned by whoever the server runs as. */
  function freshDataDir(): string {
    const folder = mkdtempSync(join(dataDir, 'case-'));
    if (otherUser) {
      chmodSync(dataDir, 0o711);
      chownSync(folder, otherUser.uid, otherUser.gid);
    }
    return folder;
  }

  it('is one clear configuration error and exit 1 when jwt-secret is a folder', async () => {
    const folder = freshDataDir();
    mkdirSync(join(folder, 'jwt-secret'));
    const { JWT_SECRET: _, ...env } = baseEnv(folder);
    const run = await runToExit(env, 60_000, otherUser);
    expect(run.code).toBe(1);
    // Reading a folder fails without naming it: the message names the files kept there.
    expect(run.stderr.join('\n')).toBe('Invalid configuration:\n  - a file the server keeps in DATA_DIR (jwt-secret, jwt-ed25519-key.pem) is a folder, not a file: remove it, or point DATA_DIR elsewhere');
  });

  it('is one clear configuration error and exit 1 when the generated EdDSA key is a folder', async () => {
    const folder = freshDataDir();
    mkdirSync(join(folder, 'jwt-ed25519-key.pem'));
    const run = await runToExit({ ...baseEnv(folder), JWT_ALGORITHM: 'EdDSA' }, 60_000, otherUser);
    expect(run.code).toBe(1);
    expect(run.stderr[0]).toBe('Invalid configuration:');
    expect(run.stderr).toHaveLength(2);
    expect(run.stderr[1]).toContain(join(folder, 'jwt-ed25519-key.pem'));
  });

  it.skipIf(!otherUser)('is one clear configuration error and exit 1 when jwt-secret belongs to another user', async () => {
    const folder = freshDataDir();
    writeFileSync(join(folder, 'jwt-secret'), 'a'.repeat(64), { mode: 0o600 });
    chownSync(join(folder, 'jwt-secret'), 0, 0);
    const { JWT_SECRET: _, ...env } = baseEnv(folder);
    const run = await runToExit(env, 60_000, otherUser);
    expect(run.code).toBe(1);
    expect(run.stderr.join('\n')).toBe(`Invalid configuration:\n  - ${join(folder, 'jwt-secret')} is not accessible to this process (EACCES): make it readable and writable by the user the server runs as`);
  });

  it('is one clear line and exit 1, without PGlite\'s own output, when the embedded database belongs to another user', async () => {
    const folder = freshDataDir();
    // A database made by a process of another user (root, here): readable, but not writable.
    const owner = join(dataDir, 'owner');
    mkdirSync(owner);
    const first = await startServerProcess('embedded database owner', baseEnv(owner));
    first.child.kill('SIGTERM');
    await first.exited;
    cpSync(join(owner, 'pglite'), join(folder, 'pglite'), { recursive: true });
    if (!otherUser) chmodSync(join(folder, 'pglite'), 0o500);
    const run = await runToExit(baseEnv(folder), 60_000, otherUser);
    if (!otherUser) chmodSync(join(folder, 'pglite'), 0o700);
    expect(run.code).toBe(1);
    expect(run.stderr, run.stderr.join('\n').slice(0, 2000)).toHaveLength(1);
    expect(run.stderr[0]).toMatch(new RegExp(`^The embedded database in ${join(folder, 'pglite')} cannot be opened: .*${join(folder, 'pglite')}.* is not writable by this process`));
  }, 120_000);
});

describe('a DATA_DIR that cannot be one', () => {
  it('is one clear configuration error, whether a file or a path under a file', async () => {
    const file = join(dataDir, 'not-a-folder');
    writeFileSync(file, 'x');
    for (const bad of [file, join(file, 'below')]) {
      const run = await runToExit({ ...baseEnv(bad) });
      expect(run.code).toBe(1);
      expect(run.stderr.join('\n')).toBe(`Invalid configuration:\n  - DATA_DIR (${bad}) is not a directory (a file is in the way)`);
    }
  });

  // Some file systems answer ENOENT for a folder that cannot be created under a parent that exists
  // (procfs here); Node's recursive mkdir then spins forever at full CPU, deaf to SIGTERM.
  it.skipIf(!existsSync('/proc/sys'))('is one clear configuration error where the file system answers ENOENT under an existing parent (/proc/sys)', async () => {
    const bad = '/proc/sys/user-server-data';
    const run = await runToExit({ ...baseEnv(bad) }, 20_000);
    expect(run.code).toBe(1);
    expect(run.stderr.join('\n')).toBe(`Invalid configuration:\n  - DATA_DIR (${bad}) cannot be created: the file system under /proc/sys accepts no new folders`);
  });

  // As another user when the tests run as root (root may write anywhere); otherwise a folder of ours made read-only.
  it('is one clear configuration error when DATA_DIR, or the folder it would be made in, is read-only', async () => {
    const readOnly = mkdtempSync(join(dataDir, 'read-only-'));
    chmodSync(readOnly, 0o555);
    if (otherUser) chmodSync(dataDir, 0o711);
    try {
      for (const bad of [readOnly, join(readOnly, 'below')]) {
        const run = await runToExit({ ...baseEnv(bad) }, 20_000, otherUser);
        expect(run.code).toBe(1);
        expect(run.stderr.join('\n')).toBe(`Invalid configuration:\n  - DATA_DIR (${bad}) is not writable by this process`);
      }
    } finally {
      chmodSync(readOnly, 0o755);
    }
  });
});

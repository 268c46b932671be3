import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processEnv } from '../src/config/config.js';
import { FORGOT_PASSWORD, LOGIN, ME, newAccountInput, REFRESH, REGISTER, RESET_PASSWORD } from './support/accounts.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { pgBouncerBinary, postgresBinaries, type PrivatePgBouncer, type PrivatePostgres, startPgBouncer, startPrivatePostgres } from './support/private-postgres.js';
import { build, exitOf, type GraphQLAnswer, killServerProcesses, postGraphQL, type ServerProcess, serverProcessEnv, startServerProcess } from './support/server-process.js';
import { within } from './support/wait.js';
import { resetTokenOf, startSmtpServer, type TestSmtpServer } from './support/smtp.js';

// Many PostgreSQL deployments put PgBouncer in transaction pooling mode in front of the server:
// consecutive transactions of one client connection may run on different server connections, and
// nothing of a session (prepared statements, session-level advisory locks, SET) survives a
// transaction. Two instances run through the Debian pgbouncer that .ci/run starts (PGBOUNCER_URL,
// pool_mode = transaction, 2 server connections per database so they are shared all the time),
// with every rate limit counting, maintenance running every second and mail going out.

const { DATABASE_URL, PGBOUNCER_URL } = processEnv();
const START_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 30_000;
const ACCOUNTS = 12;

function call(instance: ServerProcess, query: string, variables: Record<string, unknown> = {}, token?: string): Promise<GraphQLAnswer> {
  return postGraphQL(instance.origin, query, variables, { token });
}

/** The answer's data, or a failure that shows the errors. */
function dataOf(answer: GraphQLAnswer, what: string): any {
  expect(answer.errors, `${what}: ${JSON.stringify(answer.errors)}`).toBeUndefined();
  return answer.data;
}

describe.skipIf(!DATABASE_URL || !PGBOUNCER_URL)('two instances behind PgBouncer in transaction pooling mode (set DATABASE_URL and PGBOUNCER_URL)', () => {
  let database: TestDatabase | undefined;
  let databaseName: string;
  let smtp: TestSmtpServer | undefined;
  const instances: ServerProcess[] = [];
  const dataDirs: string[] = [];
  /** One configuration for every instance (the same secrets), each with a data folder of its own. */
  let shared: Record<string, string>;
  const instanceEnv = (overrides: Record<string, string> = {}) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'user-server-pgbouncer-'));
    dataDirs.push(dataDir);
    return { ...shared, DATA_DIR: dataDir, ...overrides };
  };

  beforeAll(async () => {
    await build();
    smtp = await startSmtpServer();
    database = await createTestDatabase(DATABASE_URL);
    databaseName = new URL(database.url!).pathname.slice(1);
    const throughBouncer = new URL(PGBOUNCER_URL!);
    throughBouncer.pathname = `/${databaseName}`;
    shared = serverProcessEnv({
      DATABASE_URL: throughBouncer.toString(),
      SMTP_URL: smtp.url,
      // Every limit counts (in PostgreSQL), none refuses this test's traffic from one address.
      RATE_LIMIT_SCALE: '1000',
    });
    // Both start at once: their migrations queue on the advisory lock, through the pooler.
    const started = await Promise.all([0, 1].map((index) => startServerProcess(`instance ${index}`, instanceEnv({ MAINTENANCE_INTERVAL_SECONDS: '1' }), START_TIMEOUT_MS)));
    instances.push(...started);
  }, START_TIMEOUT_MS * 2);

  afterAll(async () => {
    await killServerProcesses();
    await smtp?.stop();
    await database?.drop();
    for (const dataDir of dataDirs) rmSync(dataDir, { recursive: true, force: true });
  });

  it('register, sign in, refresh, me, reset by email and sign in again, across both instances at once', { timeout: 120_000 }, async () => {
    const [a, b] = instances;
    await Promise.all(
      Array.from({ length: ACCOUNTS }, async (_, index) => {
        const [first, second] = index % 2 === 0 ? [a, b] : [b, a];
        const input = newAccountInput();
        dataOf(await call(first, REGISTER, { input }), 'register');
        const signedIn = dataOf(await call(second, LOGIN, { input: { identifier: input.username, password: input.password } }), 'login').login;
        const refreshed = dataOf(await call(first, REFRESH, { refreshToken: signedIn.refreshToken }), 'refresh').refreshToken;
        expect(dataOf(await call(second, ME, {}, refreshed.accessToken), 'me').me.email).toBe(input.email);
        expect(dataOf(await call(first, FORGOT_PASSWORD, { input: { identifier: input.email } }), 'forgotPassword').forgotPassword).toBe(true);
        const mail = await smtp!.waitFor((message) => message.to.includes(input.email) && /reset/i.test(message.subject), 30_000);
        const newPassword = `a new passphrase, number ${index} of this test`;
        expect(dataOf(await call(second, RESET_PASSWORD, { input: { token: resetTokenOf(mail), newPassword } }), 'resetPassword').resetPassword).toBe(true);
        dataOf(await call(first, LOGIN, { input: { identifier: input.email, password: newPassword } }), 'login with the new password');
      }),
    );
    // The hottest statements are named (prepared) on a server of their own; through the pooler the
    // first name it could not keep turned naming off, with one line, and nobody saw an error.
    const turnedOff = (instance: ServerProcess) => instance.logs.filter((line) => String(line.msg).startsWith('the database cannot keep named statements')).length;
    expect(instances.map(turnedOff).some((count) => count === 1)).toBe(true);
    expect(instances.every((instance) => turnedOff(instance) <= 1)).toBe(true);
  });

  it('answers a burst of failing sign-ins with UNAUTHENTICATED only: the rate-limit counters work through the pooler', { timeout: 60_000 }, async () => {
    const answers = await Promise.all(
      Array.from({ length: 60 }, (_, index) => call(instances[index % 2], LOGIN, { input: { identifier: `nobody-${index}@example.com`, password: 'not a password anyone has' } })),
    );
    const codes = answers.map((answer) => answer.errors?.[0]?.extensions?.code);
    expect(new Set(codes), JSON.stringify(answers.find((answer) => answer.errors?.[0]?.extensions?.code !== 'UNAUTHENTICATED'))).toEqual(new Set(['UNAUTHENTICATED']));
  });

  it('runs maintenance through the pooler and leaves no advisory lock behind on a server connection', { timeout: 60_000 }, async () => {
    const runs = () => instances.flatMap((instance) => instance.logs.filter((line) => line.msg === 'maintenance done'));
    const deadline = Date.now() + 30_000;
    while (runs().length < 3 && Date.now() < deadline) await sleep(200);
    expect(runs().length).toBeGreaterThanOrEqual(3);
    // Nothing holds an advisory lock now: a session-level lock taken through the pooler would stay
    // with the server connection after its client went away (and another client of that connection
    // would "hold" it too).
    let held = -1;
    for (let probe = 0; probe < 20 && held !== 0; probe += 1) {
      // Straight to PostgreSQL, not through the pooler.
      const [row] = await database!.sql<{ held: number }>(
        `select count(*)::int as held from pg_locks where locktype = 'advisory' and granted and database = (select oid from pg_database where datname = $1)`,
        [databaseName],
      );
      held = row.held;
      if (held !== 0) await sleep(100);
    }
    expect(held).toBe(0);
  });

  it('starts a third instance while the two run (migrations lock through the pooler) and stops all three cleanly', { timeout: 120_000 }, async () => {
    const third = await startServerProcess('instance 2', instanceEnv(), START_TIMEOUT_MS);
    instances.push(third);
    const input = newAccountInput();
    dataOf(await call(third, REGISTER, { input }), 'register on the third instance');
    for (const instance of instances) {
      instance.child.kill('SIGTERM');
      const outcome = await exitOf(instance, STOP_TIMEOUT_MS);
      expect(outcome, instance.output.slice(-20).join('\n')).toEqual({ code: 0, signal: null });
      expect(instance.logs.filter((line) => line.level >= 50).map((line) => line.msg)).toEqual([]);
    }
  });
});

/** "Within 2 s": the longest a request waits for a connection or for one statement, plus room for a loaded machine. */
const ANSWER_WITHIN_MS = 4000;


describe.skipIf(!DATABASE_URL || !postgresBinaries() || !pgBouncerBinary())('PostgreSQL stopped behind PgBouncer (a server and a pooler of the test\'s own)', () => {
  let postgres: PrivatePostgres | undefined;
  let bouncer: PrivatePgBouncer | undefined;
  let dataDir: string;
  beforeAll(async () => {
    await build();
    postgres = await startPrivatePostgres();
    bouncer = await startPgBouncer(postgres);
    dataDir = mkdtempSync(join(tmpdir(), 'user-server-pgbouncer-down-'));
  }, START_TIMEOUT_MS);
  afterAll(async () => {
    await killServerProcesses();
    await bouncer?.stop();
    await postgres?.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers SERVICE_UNAVAILABLE (503) promptly, forgotPassword included, and recovers when PostgreSQL is back', { timeout: 90_000 }, async () => {
    // Rate limits off: forgotPassword's only statement is the one that queues its job.
    const instance = await startServerProcess('behind pgbouncer', serverProcessEnv({ DATA_DIR: dataDir, DATABASE_URL: bouncer!.url, RATE_LIMIT_SCALE: '0' }), START_TIMEOUT_MS);
    const input = newAccountInput();
    dataOf(await call(instance, REGISTER, { input }), 'register');
    const logFrom = instance.logs.length;
    await postgres!.stop('fast');
    const calls = [
      ['login', () => call(instance, LOGIN, { input: { identifier: input.email, password: input.password } })],
      ['forgotPassword', () => call(instance, FORGOT_PASSWORD, { input: { identifier: input.email } })],
      ['register', () => call(instance, REGISTER, { input: newAccountInput() })],
    ] as const;
    for (let round = 0; round < 2; round += 1) {
      for (const [what, send] of calls) {
        const answer = await within(ANSWER_WITHIN_MS, send, what);
        expect(answer.status, `${what}: ${JSON.stringify(answer.errors)}`).toBe(503);
        expect(answer.errors?.[0]?.extensions?.code, what).toBe('SERVICE_UNAVAILABLE');
      }
    }
    expect(instance.logs.slice(logFrom).filter((line) => line.level >= 50 && !/unreachable/.test(String(line.msg))).map((line) => line.msg)).toEqual([]);
    await postgres!.start();
    const deadline = Date.now() + 30_000;
    let last: GraphQLAnswer | undefined;
    while (Date.now() < deadline) {
      last = await call(instance, FORGOT_PASSWORD, { input: { identifier: input.email } });
      if (!last.errors) break;
      await sleep(500);
    }
    expect(last?.errors, JSON.stringify(last?.errors)).toBeUndefined();

    // PostgreSQL stops answering, its connections open (SIGSTOP): the pooler waits for it (up to its
    // query_wait_timeout of 2 minutes), the server does not.
    await postgres!.freeze();
    try {
      for (const [what, send] of calls) {
        const answer = await within(ANSWER_WITHIN_MS, send, what);
        expect(answer.status, `${what}: ${JSON.stringify(answer.errors)}`).toBe(503);
        expect(answer.errors?.[0]?.extensions?.code, what).toBe('SERVICE_UNAVAILABLE');
      }
    } finally {
      postgres!.thaw();
    }
    expect(instance.logs.slice(logFrom).filter((line) => line.level >= 50 && !/unreachable/.test(String(line.msg))).map((line) => line.msg)).toEqual([]);
  });
});

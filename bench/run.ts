/**
 * `npm run bench`: load-tests the real server from a second process on loopback and reports the
 * figures of the performance issue, ratios first. Bounded in time (about 3 minutes on 2 cores).
 *
 *   DATABASE_URL=postgresql://…/postgres npm run bench   # a fresh database on that server, dropped afterwards
 *   npm run bench                                       # the embedded PGlite
 *
 * Knobs (environment): BENCH_DURATION (seconds per measured run, default 10), BENCH_USERS (accounts
 * to register, default 60), BENCH_RSS_REQUESTS (default 100000), BENCH_PROFILE (auto: profile the
 * server when a target is missed; always; never), BCRYPT_COST (default 12, as the server).
 * BENCH_KEEP=1 keeps the temporary folder (logs, profiles). `--no-write` leaves BENCHMARKS.md alone.
 * REDIS_URL (PostgreSQL runs only): also measures the database cost of a login with the rate-limit
 * counters in that Redis. BENCH_ONLY=login-cost (PostgreSQL runs only) measures that cost alone,
 * printed and not written, for quick comparisons while working on the sign-in path.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import bcrypt from 'bcryptjs';
import pg from 'pg';
import type { BaselineInit, BaselineUser } from './baseline.js';
import { Child } from './child.js';
import { type LoadResult, type LoadSpec, runLoad } from './load.js';
import { WireCounter } from './wire-counter.js';
import { Profile, profilesIn } from './profile.js';
import {
  type BenchRun,
  evaluateTargets,
  type LoginCost,
  machine,
  type Measured,
  type ProfileNote,
  textReport,
  updateBenchmarksFile,
  type Workload,
} from './report.js';

const SERVER_MODULE = fileURLToPath(new URL('./server.js', import.meta.url));
const BASELINE_MODULE = fileURLToPath(new URL('./baseline.js', import.meta.url));
const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));

const CORES = availableParallelism();
const DURATION = positive('BENCH_DURATION', 10);
const WARMUP = Math.min(3, DURATION);
const SEED_USERS = positive('BENCH_USERS', 60);
const RSS_REQUESTS = positive('BENCH_RSS_REQUESTS', 100_000);
/** The memory run stops after this long even if it has not sent all its requests. */
const RSS_MAX_SECONDS = 90;
const PROFILE_MODE = process.env.BENCH_PROFILE ?? 'auto';
const PROFILE_SECONDS = Math.min(6, DURATION);
const BCRYPT_COST = positive('BCRYPT_COST', 12);
const ONLY_LOGIN_COST = process.env.BENCH_ONLY === 'login-cost';
const WRITE = !process.argv.includes('--no-write') && !ONLY_LOGIN_COST;

const ME_CONNECTIONS = 50;
const USERS_CONNECTIONS = 10;
const LOGIN_CONNECTIONS = 2 * CORES;
const FLOOD_ME_CONNECTIONS = 10;
/** Accounts registered (at bcrypt cost 4) for the database-cost run of logins. */
const LOGIN_COST_USERS = 20;

const APP_URL = 'https://bench.example.test';
const USER_PASSWORD = 'Lantern-Harbor-Quietly-4417';
const ADMIN = { email: 'bench-owner@bench.test', password: 'Velvet-Orbit-Cascade-9182' };

const ME_FIELDS = 'id email username firstName lastName role active emailVerified createdAt lastLoginAt';
const ME_QUERY = `query Me { me { ${ME_FIELDS} } }`;
const USERS_QUERY = `query Users { users(first: 50) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { ${ME_FIELDS} } } } }`;
const LOGIN_MUTATION = 'mutation Login($input: LoginInput!) { login(input: $input) { accessToken accessTokenExpiresAt refreshToken user { id } } }';
const REGISTER_MUTATION =
  'mutation Register($input: RegisterInput!) { register(input: $input) { accessToken user { id email username role createdAt } } }';

/** Variables the application reads; none of the caller's may leak into the server under test. */
const APP_VARIABLES = /^(NODE_ENV|PORT|HOST|DATA_DIR|DATABASE_URL|JWT_SECRET|HMAC_SECRET|APP_URL|SMTP_URL|MAIL_FROM|BCRYPT_COST|ADMIN_EMAIL|ADMIN_PASSWORD|ADMIN_USERNAME|LOG_LEVEL|TRUST_PROXY|RATE_LIMIT_SCALE|REDIS_URL|GRAPHQL_MAX_\w+)$/;

function positive(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number (got "${raw}")`);
  return value;
}

const started = performance.now();
function step(message: string): void {
  process.stderr.write(`[bench ${((performance.now() - started) / 1000).toFixed(1).padStart(5)} s] ${message}\n`);
}

// ---------------------------------------------------------------------------------------------
// Resources to release on every exit path.

const children = new Set<Child>();
const cleanups: Array<() => Promise<void>> = [];
let cleanedUp = false;

async function cleanUp(): Promise<void> {
  if (cleanedUp) return;
  cleanedUp = true;
  for (const child of children) child.kill();
  for (const cleanup of cleanups.reverse()) await cleanup().catch((error: unknown) => step(`clean-up failed: ${String(error)}`));
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    step(`${signal}: stopping`);
    void cleanUp().finally(() => process.exit(130));
  });
}

function startChild(name: string, module: string, options: { env: NodeJS.ProcessEnv; execArgv?: string[]; logFile: string }): Child {
  const child = Child.start(name, module, options);
  children.add(child);
  void child.exit.then(() => children.delete(child));
  return child;
}

async function waitReady(child: Child, logFile: string): Promise<string> {
  try {
    return await child.url;
  } catch (error) {
    let log = '';
    try {
      log = readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n');
    } catch {
      // no log yet
    }
    throw new Error(`${(error as Error).message}\n--- ${logFile} (last lines) ---\n${log}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Database

interface BenchDatabase {
  kind: 'postgresql' | 'embedded';
  /** DATABASE_URL for the server; undefined = embedded. */
  url: string | undefined;
  description: string;
  drop(): Promise<void>;
}

async function prepareDatabase(serverUrl: string | undefined): Promise<BenchDatabase> {
  if (!serverUrl) {
    let version = 'unknown';
    try {
      version = (JSON.parse(readFileSync(join(PROJECT_ROOT, 'node_modules/@electric-sql/pglite/package.json'), 'utf8')) as { version: string }).version;
    } catch {
      // keep "unknown"
    }
    return {
      kind: 'embedded',
      url: undefined,
      description: `embedded PGlite ${version} inside the server process (one connection, over pglite-socket on loopback), temporary DATA_DIR`,
      drop: async () => {},
    };
  }
  const name = `bench_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  let version: string;
  try {
    version = ((await admin.query('show server_version')).rows[0] as { server_version: string }).server_version;
    await admin.query(`create database "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    kind: 'postgresql',
    url: url.toString(),
    description: `PostgreSQL ${version.split(' ')[0]} at ${url.host} (fresh database \`${name}\`, dropped afterwards; application pool 10 connections)`,
    async drop() {
      const client = new pg.Client({ connectionString: serverUrl });
      await client.connect();
      try {
        await client.query(`drop database if exists "${name}" with (force)`);
      } finally {
        await client.end();
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// GraphQL client for seeding and checks

interface GraphQLAnswer {
  data?: Record<string, any> | null;
  errors?: Array<{ message: string; extensions?: Record<string, unknown> }>;
}

async function graphql(url: string, query: string, variables?: Record<string, unknown>, token?: string): Promise<Record<string, any>> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const answer = (await response.json()) as GraphQLAnswer;
  if (answer.errors?.length || !answer.data) {
    throw new Error(`GraphQL error (HTTP ${response.status}): ${JSON.stringify(answer.errors ?? answer)}`);
  }
  return answer.data;
}

async function inParallel<T>(count: number, concurrency: number, work: (index: number) => Promise<T>): Promise<T[]> {
  const results: T[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) {
        const index = next++;
        results[index] = await work(index);
      }
    }),
  );
  return results;
}

const loginBody = (identifier: string, password: string) => JSON.stringify({ query: LOGIN_MUTATION, variables: { input: { identifier, password } } });

// ---------------------------------------------------------------------------------------------
// Measurement helpers

/** CPU time so far, in clock ticks: the whole machine (busy and total) and every `postgres` process. */
interface CpuTicks {
  busy: number;
  total: number;
  postgres: number;
}

/** Reads /proc (Linux); null elsewhere, and the report then leaves those columns empty. */
function cpuTicks(): CpuTicks | null {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
    const total = fields.reduce((sum, value) => sum + value, 0);
    let postgres = 0;
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        const close = stat.lastIndexOf(')');
        if (stat.slice(stat.indexOf('(') + 1, close) !== 'postgres') continue;
        const rest = stat.slice(close + 2).split(' ');
        postgres += Number(rest[11]) + Number(rest[12]);
      } catch {
        // the process ended meanwhile
      }
    }
    return { busy: total - fields[3] - (fields[4] ?? 0), total, postgres };
  } catch {
    return null;
  }
}

interface Watched<T> {
  value: T;
  serverCores: number;
  postgresCores: number;
  machineCores: number;
  eldMaxMs: number;
  gcMaxMs: number;
  window: { fromUs: number; toUs: number };
}

/**
 * Runs `work` while watching `child` (its CPU use, its longest event-loop stall, the time window)
 * and the machine: the CPU of the local PostgreSQL processes and of everything together.
 */
async function watch<T>(child: Child, work: () => Promise<T>): Promise<Watched<T>> {
  await child.resetEventLoopDelay();
  const before = await child.stats();
  const ticksBefore = cpuTicks();
  const t = performance.now();
  const value = await work();
  const ticksAfter = cpuTicks();
  const after = await child.stats();
  const wallUs = (performance.now() - t) * 1000;
  // Machine ticks elapse CORES times faster than wall time; a core's worth of ticks is total / CORES.
  const perCore = ticksBefore && ticksAfter ? (ticksAfter.total - ticksBefore.total) / CORES : 0;
  return {
    value,
    serverCores: (after.cpuUs - before.cpuUs) / wallUs,
    postgresCores: perCore > 0 ? (ticksAfter!.postgres - ticksBefore!.postgres) / perCore : Number.NaN,
    machineCores: perCore > 0 ? (ticksAfter!.busy - ticksBefore!.busy) / perCore : Number.NaN,
    eldMaxMs: after.eldMaxMs,
    gcMaxMs: after.gcMaxMs,
    window: { fromUs: before.monotonicUs, toUs: after.monotonicUs },
  };
}

function measuredOf(watched: Watched<LoadResult>): Measured {
  const { value, serverCores, postgresCores, machineCores, eldMaxMs, gcMaxMs } = watched;
  return { ...value, serverCores, postgresCores, machineCores, eldMaxMs, gcMaxMs };
}

async function measured(child: Child, spec: LoadSpec): Promise<Measured> {
  return measuredOf(await watch(child, () => runLoad(spec)));
}

function describe(result: LoadResult): string {
  return `${result.rps.toFixed(result.rps < 100 ? 2 : 0)} req/s, p50 ${result.p50} ms, p99 ${result.p99} ms, ${result.failed} failed`;
}

function timeBcrypt(cost: number): { samplesMs: number[]; medianMs: number } {
  // Same input shape as the server: base64 of an HMAC-SHA256 (44 ASCII characters).
  const input = randomBytes(32).toString('base64');
  const hash = bcrypt.hashSync(input, cost);
  const samplesMs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    if (!bcrypt.compareSync(input, hash)) throw new Error('bcrypt compare failed');
    samplesMs.push(performance.now() - t);
  }
  const sorted = [...samplesMs].sort((a, b) => a - b);
  return { samplesMs, medianMs: sorted[Math.floor(sorted.length / 2)] };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'graphql-user-server-bench-'));
  if (process.env.BENCH_KEEP) step(`keeping ${work} (BENCH_KEEP)`);
  else cleanups.push(async () => rmSync(work, { recursive: true, force: true }));
  const watchdog = setTimeout(() => {
    step('the bench ran for 9 minutes: giving up');
    void cleanUp().finally(() => process.exit(1));
  }, 9 * 60_000);
  watchdog.unref();

  const loadAverage = loadavg()[0];
  const quietBefore = cpuTicks();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const quietAfter = cpuTicks();
  const busyBeforeStart =
    quietBefore && quietAfter && quietAfter.total > quietBefore.total ? ((quietAfter.busy - quietBefore.busy) / (quietAfter.total - quietBefore.total)) * CORES : Number.NaN;
  step(`machine: ${CORES} cores, load average ${loadAverage.toFixed(2)}, ${busyBeforeStart.toFixed(2)} cores busy before the bench started`);
  if (busyBeforeStart > 0.3) step('  the machine is not idle: other processes will take CPU from the server and skew the figures');
  step(`measuring one bcrypt compare at cost ${BCRYPT_COST}`);
  const timing = timeBcrypt(BCRYPT_COST);
  const bcryptResult = { cost: BCRYPT_COST, ...timing, ceiling: CORES / (timing.medianMs / 1000) };
  step(`bcrypt compare: ${timing.medianMs.toFixed(1)} ms → ceiling ${bcryptResult.ceiling.toFixed(2)} logins/s`);

  const database = await prepareDatabase(process.env.DATABASE_URL?.trim() || undefined);
  cleanups.push(() => database.drop());
  step(`database: ${database.description}`);

  const cleanEnv: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !APP_VARIABLES.test(name)));
  const jwtSecret = randomBytes(48).toString('base64url');
  const serverEnv: NodeJS.ProcessEnv = {
    ...cleanEnv,
    NODE_ENV: 'production',
    HOST: '127.0.0.1',
    PORT: '0',
    DATA_DIR: join(work, 'data'),
    JWT_SECRET: jwtSecret,
    HMAC_SECRET: randomBytes(48).toString('base64url'),
    APP_URL,
    BCRYPT_COST: String(BCRYPT_COST),
    RATE_LIMIT_SCALE: '0',
    LOG_LEVEL: 'warn',
    ADMIN_EMAIL: ADMIN.email,
    ADMIN_PASSWORD: ADMIN.password,
    ...(database.url ? { DATABASE_URL: database.url } : {}),
  };

  if (ONLY_LOGIN_COST) {
    if (!database.url) throw new Error('BENCH_ONLY=login-cost needs DATABASE_URL');
    await measureLoginCosts(database.url, serverEnv, work);
    return;
  }

  // -- the server under test
  const serverLog = join(work, 'server.log');
  // --expose-gc only lets the bench trigger full collections before reading memory; nothing else calls gc().
  const server = startChild('server', SERVER_MODULE, { env: serverEnv, execArgv: ['--expose-gc'], logFile: serverLog });
  const url = await waitReady(server, serverLog);
  step(`server ready at ${url}`);

  // -- seed
  step(`registering ${SEED_USERS} users (bcrypt cost ${BCRYPT_COST})`);
  const registered = await inParallel(SEED_USERS, 2 * CORES, async (i) => {
    const username = `bench_user_${String(i).padStart(3, '0')}`;
    const data = await graphql(url, REGISTER_MUTATION, { input: { email: `${username}@bench.test`, username, password: USER_PASSWORD } });
    return data.register.user as { id: string; email: string; username: string; role: string; createdAt: string };
  });
  const meUser = registered[0];
  const meToken = (await graphql(url, LOGIN_MUTATION, { input: { identifier: meUser.username, password: USER_PASSWORD } })).login.accessToken as string;
  const adminToken = (await graphql(url, LOGIN_MUTATION, { input: { identifier: ADMIN.email, password: ADMIN.password } })).login.accessToken as string;
  const adminMe = (await graphql(url, ME_QUERY, undefined, adminToken)).me as Record<string, any>;
  const ourMe = (await graphql(url, ME_QUERY, undefined, meToken)).me as Record<string, any>;
  if (ourMe.id !== meUser.id) throw new Error('me answered another user');
  const listed = (await graphql(url, USERS_QUERY, undefined, adminToken)).users as { totalCount: number; edges: unknown[] };
  if (listed.edges.length !== Math.min(50, SEED_USERS + 1)) throw new Error(`users(first:50) listed ${listed.edges.length} users`);
  const seededUsers = listed.totalCount;
  const startStats = await server.stats();
  step(`seeded ${seededUsers} users; server RSS ${(startStats.rss / 2 ** 20).toFixed(1)} MiB`);

  // Login flood bodies: every seeded user but the one `me` reads (so its row stays as the baseline's).
  const loginBodies = registered.slice(1).map((user) => loginBody(user.username, USER_PASSWORD));
  let loginIndex = 0;
  const nextLogin = () => loginBodies[loginIndex++ % loginBodies.length];

  const meBody = JSON.stringify({ query: ME_QUERY });
  const mePrefix = `{"data":{"me":{"id":"${meUser.id}"`;
  const meSpec = (target: string, connections: number, seconds: number): LoadSpec => ({
    title: 'me',
    url: target,
    connections,
    duration: seconds,
    token: meToken,
    body: meBody,
    check: (body) => body.startsWith(mePrefix),
  });
  const usersSpec = (seconds: number): LoadSpec => ({
    title: 'users',
    url,
    connections: USERS_CONNECTIONS,
    duration: seconds,
    token: adminToken,
    body: JSON.stringify({ query: USERS_QUERY }),
    check: (body) => body.startsWith('{"data":{"users":{"totalCount"'),
  });
  const loginSpec = (seconds: number): LoadSpec => ({
    title: 'login',
    url,
    connections: LOGIN_CONNECTIONS,
    duration: seconds,
    nextBody: nextLogin,
    check: (body) => body.startsWith('{"data":{"login":{"accessToken"'),
  });

  // -- me, ours
  step(`me, ours: ${WARMUP} s warm-up, then ${DURATION} s at ${ME_CONNECTIONS} connections`);
  await runLoad(meSpec(url, ME_CONNECTIONS, WARMUP));
  const meOurs = await measured(server, meSpec(url, ME_CONNECTIONS, DURATION));
  step(`  ${describe(meOurs)}`);

  // -- me, baseline
  const baselineUsers: BaselineUser[] = [
    ...registered.map((user) => ({ ...user, lastLoginAt: user.id === meUser.id ? (ourMe.lastLoginAt as string) : null })),
    { id: adminMe.id, email: adminMe.email, username: adminMe.username, role: adminMe.role, createdAt: adminMe.createdAt, lastLoginAt: adminMe.lastLoginAt },
  ];
  const baselineLog = join(work, 'baseline.log');
  const baseline = startChild('baseline', BASELINE_MODULE, { env: cleanEnv, logFile: baselineLog });
  const init: BaselineInit = {
    databaseUrl: database.url,
    users: baselineUsers,
    jwtSecret,
    issuer: APP_URL,
    poolSize: database.url ? 10 : 1,
  };
  await baseline.init(init);
  const baselineUrl = await waitReady(baseline, baselineLog);
  const baselineMe = (await graphql(baselineUrl, ME_QUERY, undefined, meToken)).me as Record<string, any>;
  if (JSON.stringify(baselineMe) !== JSON.stringify(ourMe)) {
    throw new Error(`the baseline answers differently:\n  ours:     ${JSON.stringify(ourMe)}\n  baseline: ${JSON.stringify(baselineMe)}`);
  }
  step(`me, baseline: ${WARMUP} s warm-up, then ${DURATION} s at ${ME_CONNECTIONS} connections`);
  await runLoad(meSpec(baselineUrl, ME_CONNECTIONS, WARMUP));
  const meBaseline = await measured(baseline, meSpec(baselineUrl, ME_CONNECTIONS, DURATION));
  step(`  ${describe(meBaseline)}`);
  await baseline.stop();

  // -- users(first:50)
  step(`users(first:50) as admin: 2 s warm-up, then ${DURATION} s at ${USERS_CONNECTIONS} connections`);
  await runLoad(usersSpec(Math.min(2, DURATION)));
  const users = await measured(server, usersSpec(DURATION));
  step(`  ${describe(users)}`);

  // -- login
  step(`login: ${DURATION} s at ${LOGIN_CONNECTIONS} connections (ceiling ${bcryptResult.ceiling.toFixed(2)}/s)`);
  const login = await measured(server, loginSpec(DURATION));
  step(`  ${describe(login)}; longest event-loop stall ${login.eldMaxMs.toFixed(1)} ms, longest GC pause ${login.gcMaxMs.toFixed(1)} ms`);

  // -- me during a login flood
  step(`me (${FLOOD_ME_CONNECTIONS} connections) during a login flood (${LOGIN_CONNECTIONS} connections), ${DURATION} s`);
  const flood = await watch(server, () => Promise.all([runLoad(meSpec(url, FLOOD_ME_CONNECTIONS, DURATION)), runLoad(loginSpec(DURATION))]));
  const [floodMe, floodLogin] = flood.value;
  step(`  me: ${describe(floodMe)}; login: ${describe(floodLogin)}; longest event-loop stall ${flood.eldMaxMs.toFixed(1)} ms, longest GC pause ${flood.gcMaxMs.toFixed(1)} ms`);

  // -- memory over 100k requests
  step(`memory: ${RSS_REQUESTS} me requests at ${ME_CONNECTIONS} connections (at most ${RSS_MAX_SECONDS} s)`);
  const rawBefore = await server.stats();
  await server.collectGarbage();
  const before = await server.stats();
  const rssRun = await runLoad({ ...meSpec(url, ME_CONNECTIONS, DURATION), amount: RSS_REQUESTS, maxSeconds: RSS_MAX_SECONDS });
  const rawAfter = await server.stats();
  await server.collectGarbage();
  const after = await server.stats();
  const mib = (bytes: number) => bytes / 2 ** 20;
  step(
    `  ${rssRun.ok} requests in ${rssRun.durationS} s; RSS after full GC ${mib(before.rss).toFixed(1)} → ${mib(after.rss).toFixed(1)} MiB (as found: ${mib(rawBefore.rss).toFixed(1)} → ${mib(rawAfter.rss).toFixed(1)} MiB)`,
  );

  await server.stop();
  step('server stopped');

  const loginCost = database.url ? await measureLoginCosts(database.url, serverEnv, work) : [];

  const partial: Omit<BenchRun, 'targets' | 'profiles'> = {
    kind: database.kind,
    database: database.description,
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    machine: machine(),
    loadAverage,
    busyBeforeStart,
    wallSeconds: 0,
    seededUsers,
    bcrypt: bcryptResult,
    meOurs,
    meBaseline,
    baselineNote: database.url
      ? `plain \`node:http\` + \`jose\` + one \`select … from users where id = $1\` through a \`pg\` Pool of 10, on the same database as the server.`
      : `plain \`node:http\` + \`jose\` + one \`select … from users where id = $1\` through a \`pg\` Pool of 1. The server's PGlite is private to its process, so the baseline process runs its own PGlite (same version, served by pglite-socket on loopback as in the app) with a \`users\` table of the same shape and the same ${baselineUsers.length} rows.`,
    users,
    login,
    loginCost,
    flood: { me: measuredOf({ ...flood, value: floodMe }), login: floodLogin },
    rss: {
      requests: rssRun.ok,
      durationS: rssRun.durationS,
      rps: rssRun.rps,
      beforeMiB: mib(before.rss),
      afterMiB: mib(after.rss),
      rawBeforeMiB: mib(rawBefore.rss),
      rawAfterMiB: mib(rawAfter.rss),
      heapBeforeMiB: mib(before.heapUsed),
      heapAfterMiB: mib(after.heapUsed),
      startMiB: mib(startStats.rss),
    },
  };
  const targets = evaluateTargets(partial);

  // -- profiles of what missed
  const workloads: Workload[] =
    PROFILE_MODE === 'never'
      ? []
      : PROFILE_MODE === 'always'
        ? PROFILE_ORDER
        : PROFILE_ORDER.filter((workload) => targets.some((target) => !target.met && target.workload === workload));
  let profiles: ProfileNote[] = [];
  let profileError: string | undefined;
  if (workloads.length > 0) {
    try {
      profiles = await profileWorkloads(workloads, { work, serverEnv, meSpec, usersSpec, loginSpec });
    } catch (error) {
      profileError = String(error instanceof Error ? error.message : error);
      step(`profiling failed: ${profileError}`);
    }
  }

  const run: BenchRun = { ...partial, targets, profiles, profileError, wallSeconds: (performance.now() - started) / 1000 };
  process.stdout.write(textReport(run));
  if (WRITE) {
    const path = join(PROJECT_ROOT, 'BENCHMARKS.md');
    updateBenchmarksFile(path, run);
    step(`wrote the ${run.kind} section of ${path}`);
  }
}

/** {@link measureLoginCost} with the counters in PostgreSQL, then (with REDIS_URL) in Redis. */
async function measureLoginCosts(databaseUrl: string, serverEnv: NodeJS.ProcessEnv, work: string): Promise<LoginCost[]> {
  const costs = [await measureLoginCost('PostgreSQL', databaseUrl, { ...serverEnv, RATE_LIMIT_SCALE: '1000' }, work)];
  const redisUrl = process.env.REDIS_URL?.trim();
  if (redisUrl) costs.push(await measureLoginCost('Redis', databaseUrl, { ...serverEnv, RATE_LIMIT_SCALE: '1000', REDIS_URL: redisUrl }, work));
  return costs;
}

/**
 * What one login costs the database: a server whose bcrypt cost is 4 (so hashing no longer hides
 * the database) and whose rate limits count as in production (`RATE_LIMIT_SCALE=1000`: every
 * counter is written, none refuses) reaches PostgreSQL through a {@link WireCounter}. Over
 * DURATION s of logins at LOGIN_CONNECTIONS it records the CPU of PostgreSQL's processes and the
 * statements, round trips and transactions per login; `counters` names where the rate-limit
 * counters live.
 */
async function measureLoginCost(counters: LoginCost['counters'], databaseUrl: string, env: NodeJS.ProcessEnv, work: string): Promise<LoginCost> {
  const target = new URL(databaseUrl);
  const counter = new WireCounter({ host: target.hostname, port: Number(target.port || 5432) });
  const viaCounter = new URL(databaseUrl);
  viaCounter.hostname = '127.0.0.1';
  viaCounter.port = String(await counter.listen());
  const logFile = join(work, `server-login-cost-${counters.toLowerCase()}.log`);
  const child = startChild(`server (login cost, ${counters})`, SERVER_MODULE, {
    env: { ...env, BCRYPT_COST: '4', DATABASE_URL: viaCounter.toString() },
    logFile,
  });
  try {
    const url = await waitReady(child, logFile);
    const prefix = `cost_${counters.toLowerCase()}`;
    const names = await inParallel(LOGIN_COST_USERS, 2 * CORES, async (i) => {
      const username = `${prefix}_${String(i).padStart(3, '0')}`;
      await graphql(url, REGISTER_MUTATION, { input: { email: `${username}@bench.test`, username, password: USER_PASSWORD } });
      return username;
    });
    const bodies = names.map((name) => loginBody(name, USER_PASSWORD));
    let next = 0;
    const spec = (seconds: number): LoadSpec => ({
      title: 'login',
      url,
      connections: LOGIN_CONNECTIONS,
      duration: seconds,
      nextBody: () => bodies[next++ % bodies.length],
      check: (body) => body.startsWith('{"data":{"login":{"accessToken"'),
    });
    step(`login database cost, counters in ${counters}: bcrypt cost 4, 2 s warm-up, then ${DURATION} s at ${LOGIN_CONNECTIONS} connections`);
    await runLoad(spec(2));
    const before = counter.snapshot();
    const watched = await watch(child, () => runLoad(spec(DURATION)));
    const after = counter.snapshot();
    const logins = Math.max(1, watched.value.ok);
    const cost: LoginCost = {
      counters,
      measured: measuredOf(watched),
      postgresMsPerLogin: (watched.postgresCores / watched.value.rps) * 1000,
      statementsPerLogin: (after.statements - before.statements) / logins,
      roundTripsPerLogin: (after.roundTrips - before.roundTrips) / logins,
      transactionsPerLogin: (after.transactions - before.transactions) / logins,
    };
    step(
      `  ${describe(watched.value)}; PostgreSQL ${cost.postgresMsPerLogin.toFixed(2)} ms CPU per login, ${cost.statementsPerLogin.toFixed(1)} statements, ${cost.roundTripsPerLogin.toFixed(1)} round trips, ${cost.transactionsPerLogin.toFixed(1)} transactions`,
    );
    return cost;
  } finally {
    await child.stop();
    await counter.close();
  }
}

/** Login last: requests still queued in the hashing pool when a login run ends would spill into the next window. */
const PROFILE_ORDER: Workload[] = ['me', 'users', 'flood', 'login'];

const WORKLOAD_DESCRIPTIONS: Record<Workload, string> = {
  me: `\`me\` at ${ME_CONNECTIONS} connections`,
  users: `\`users(first:50)\` at ${USERS_CONNECTIONS} connections`,
  login: `\`login\` at ${LOGIN_CONNECTIONS} connections`,
  flood: `\`me\` at ${FLOOD_ME_CONNECTIONS} connections during a login flood at ${LOGIN_CONNECTIONS}`,
};

interface WorkloadContext {
  work: string;
  serverEnv: NodeJS.ProcessEnv;
  meSpec: (target: string, connections: number, seconds: number) => LoadSpec;
  usersSpec: (seconds: number) => LoadSpec;
  loginSpec: (seconds: number) => LoadSpec;
}

/**
 * Starts a second server on the same database with `--cpu-prof`, runs each workload (2 s warm-up,
 * then PROFILE_SECONDS watched), stops the server (which writes the profiles) and summarizes the
 * main thread's samples inside each watched window, plus the busy time of the bcrypt workers.
 */
async function profileWorkloads(workloads: Workload[], context: WorkloadContext): Promise<ProfileNote[]> {
  const directory = join(context.work, 'profiles');
  mkdirSync(directory, { recursive: true });
  const logFile = join(context.work, 'server-profiled.log');
  step(`profiling ${workloads.join(', ')}: a server with --cpu-prof on the same database; per workload 2 s warm-up, ${PROFILE_SECONDS} s measured`);
  const child = startChild('server (profiled)', SERVER_MODULE, {
    env: context.serverEnv,
    execArgv: ['--expose-gc', '--cpu-prof', `--cpu-prof-dir=${directory}`],
    logFile,
  });
  const url = await waitReady(child, logFile);
  const runOnce = async (workload: Workload, seconds: number): Promise<LoadResult> => {
    switch (workload) {
      case 'me':
        return runLoad(context.meSpec(url, ME_CONNECTIONS, seconds));
      case 'users':
        return runLoad({ ...context.usersSpec(seconds), url });
      case 'login':
        return runLoad({ ...context.loginSpec(seconds), url });
      case 'flood': {
        const [me] = await Promise.all([runLoad(context.meSpec(url, FLOOD_ME_CONNECTIONS, seconds)), runLoad({ ...context.loginSpec(seconds), url })]);
        return me;
      }
    }
  };
  const windows: Array<{ workload: Workload; watched: Watched<LoadResult> }> = [];
  try {
    for (const workload of workloads) {
      await runOnce(workload, 2);
      windows.push({ workload, watched: await watch(child, () => runOnce(workload, PROFILE_SECONDS)) });
    }
  } finally {
    await child.stop();
  }
  const files = profilesIn(directory);
  if (!files.main) throw new Error(`no .cpuprofile of the main thread was written to ${directory}`);
  const main = new Profile(files.main);
  const workers = files.workers.map((file) => new Profile(file));
  return windows.map(({ workload, watched }) => ({
    workload,
    description: WORKLOAD_DESCRIPTIONS[workload],
    main: main.summarize(watched.window),
    // piscina's idle workers block in Atomics.wait inside atomicsWaitLoop, which also runs tasks
    // (through onMessage): only the waiting is idle.
    workersBusyMs:
      workers.length > 0
        ? workers.reduce((sum, profile) => sum + profile.summarize(watched.window, { strict: true, idleFunctions: ['atomicsWaitLoop'], workFunctions: ['onMessage'] }).busyMs, 0)
        : undefined,
    measured: measuredOf(watched),
  }));
}

try {
  await main();
  await cleanUp();
  process.exit(0);
} catch (error) {
  process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  await cleanUp();
  process.exit(1);
}

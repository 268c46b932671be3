import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processEnv } from '../src/config/config.js';
import { FORGOT_PASSWORD, LOGIN, newAccountInput, REGISTER } from './support/accounts.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { build, killServerProcesses, postGraphQL, type ServerProcess, serverProcessEnv, startServerProcess } from './support/server-process.js';
import { unusedPort } from './support/smtp.js';
import { waitUntil, within } from './support/wait.js';

// Rate-limit counters in Redis (REDIS_URL), and Redis goes away: a real redis-server the test starts
// and kills. What needs a counter answers SERVICE_UNAVAILABLE (HTTP 503, retryAfter) until Redis is
// back, the log says so once per interval, and nothing is printed outside the JSON log lines.
const DATABASE_URL = processEnv().DATABASE_URL;
const REDIS_SERVER = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((path) => existsSync(path));
const ANSWER_WITHIN_MS = 4000;

/** A redis-server on `port` that keeps nothing on disk. */
function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn(REDIS_SERVER!, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let output = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
      if (output.includes('Ready to accept connections')) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${output}`)));
  });
}

async function stopRedis(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

describe.skipIf(!REDIS_SERVER)('a Redis outage with REDIS_URL (a redis-server of the test\'s own)', () => {
  let database: TestDatabase;
  let dataDir: string;
  let redisPort: number;
  let redis: ChildProcess | undefined;
  let instance: ServerProcess;

  beforeAll(async () => {
    await build();
    database = await createTestDatabase(DATABASE_URL);
    dataDir = mkdtempSync(join(tmpdir(), 'user-server-redis-'));
    redisPort = await unusedPort();
    redis = await startRedis(redisPort);
    instance = await startServerProcess(
      'redis counters',
      serverProcessEnv({ DATA_DIR: dataDir, REDIS_URL: `redis://127.0.0.1:${redisPort}`, RATE_LIMIT_SCALE: '1', ...(database.url ? { DATABASE_URL: database.url } : {}) }),
    );
  }, 120_000);
  afterAll(async () => {
    await killServerProcesses();
    await stopRedis(redis);
    await database?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });


  it('answers SERVICE_UNAVAILABLE (503) with retryAfter, logs it once per interval, prints nothing else, and recovers', async () => {
    const input = newAccountInput();
    expect((await postGraphQL(instance.origin, REGISTER, { input })).data?.register).toBeTruthy();
    const login = () => postGraphQL(instance.origin, LOGIN, { input: { identifier: input.email, password: input.password } });
    expect((await login()).data?.login).toBeTruthy();

    const outputFrom = instance.output.length;
    const logFrom = instance.logs.length;
    await stopRedis(redis);
    for (const [what, call] of [
      ['login', login],
      ['register', () => postGraphQL(instance.origin, REGISTER, { input: newAccountInput() })],
      ['forgotPassword', () => postGraphQL(instance.origin, FORGOT_PASSWORD, { input: { identifier: input.email } })],
    ] as const) {
      const answer = await within(ANSWER_WITHIN_MS, call, what);
      expect(answer.status, `${what}: ${JSON.stringify(answer.errors)}`).toBe(503);
      expect(answer.errors?.[0]?.extensions?.code, what).toBe('SERVICE_UNAVAILABLE');
      expect(answer.errors?.[0]?.extensions?.retryAfter, what).toEqual(expect.any(Number));
    }
    // A few seconds without requests: the client keeps reconnecting meanwhile.
    await sleep(4000);
    const output = instance.output.slice(outputFrom);
    const notJson = output.filter((line) => {
      try {
        JSON.parse(line);
        return false;
      } catch {
        return true;
      }
    });
    expect(notJson).toEqual([]);
    const errors = instance.logs.slice(logFrom).filter((line) => line.level >= 50);
    expect(errors.map((line) => line.msg)).toEqual(['Redis unreachable: answering SERVICE_UNAVAILABLE']);

    redis = await startRedis(redisPort);
    await waitUntil(async () => (await login()).data?.login, 'sign-in to work again', 15_000, 200);
  }, 60_000);
});

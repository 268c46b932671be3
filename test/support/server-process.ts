import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PROJECT_ROOT } from '../../src/config/paths.js';

/** Whether a spawned process is still running. */
export function isRunning(child: { exitCode: number | null; signalCode: NodeJS.Signals | null }): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/**
 * `npx tsc -p tsconfig.json`, serialized with the other test files that build (a lock directory),
 * so no process is started while another build is rewriting dist/.
 */
export async function build(): Promise<void> {
  const lock = join(tmpdir(), `graphql-user-server-build-${createHash('sha256').update(PROJECT_ROOT).digest('hex').slice(0, 16)}.lock`);
  const deadline = Date.now() + 240_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      // A lock left by a killed run: a build never takes five minutes.
      try {
        if (Date.now() - statSync(lock).mtimeMs > 300_000) rmSync(lock, { recursive: true, force: true });
      } catch {}
      if (Date.now() > deadline) throw new Error(`timed out waiting for the build lock ${lock}`);
      await sleep(200);
    }
  }
  try {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: PROJECT_ROOT, stdio: 'pipe', timeout: 240_000 });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: Buffer; stderr?: Buffer };
    const report = `${stdout?.toString() ?? ''}${stderr?.toString() ?? ''}`;
    // tsc still emits on type errors; errors only in files the server never loads (bench/) must
    // not stop this test. Anything in src/ or migrations/ — or no diagnostics at all — does.
    const diagnostics = report.split('\n').filter((line) => /^\S+\(\d+,\d+\): error TS\d+/.test(line));
    const serverFiles = diagnostics.filter((line) => !line.startsWith('bench/'));
    if (diagnostics.length === 0 || serverFiles.length > 0) throw new Error(`npx tsc -p tsconfig.json failed:\n${report}`);
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/**
 * The environment of a test's server process: loopback, a port of its own choosing, fresh secrets,
 * the fastest bcrypt, links to a test domain; `overrides` win. Call it once per group of processes
 * that must share secrets (instances of one deployment).
 */
export function serverProcessEnv(overrides: Record<string, string>): Record<string, string> {
  return {
    HOST: '127.0.0.1',
    PORT: '0',
    NODE_ENV: 'test',
    JWT_SECRET: randomBytes(48).toString('base64url'),
    HMAC_SECRET: randomBytes(48).toString('base64url'),
    APP_URL: 'https://app.example.test',
    BCRYPT_COST: '4',
    LOG_LEVEL: 'info',
    ...overrides,
  };
}

/** How a server process ended; `timedOut` when it did not end in time. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut?: true;
}

/** A `node dist/src/main.js` process and what it printed. */
export interface ServerProcess {
  name: string;
  child: ChildProcess;
  /** Parsed JSON log lines (stdout). */
  logs: Array<Record<string, any>>;
  /** Every line of stdout and stderr, for failure messages. */
  output: string[];
  exited: Promise<ProcessExit>;
  /** `http://127.0.0.1:PORT` */
  origin: string;
  port: number;
}

const started = new Set<ChildProcess>();

/**
 * Spawns `node dist/src/main.js` (after {@link build}) with exactly `env`, and resolves once it
 * logged its URL and /readyz answers 200. Its working directory is `env.DATA_DIR`, so a developer's
 * .env in the project never leaks in.
 */
export async function startServerProcess(
  name: string,
  env: Record<string, string>,
  timeoutMs = 90_000,
  /** Hears each JSON log line as it arrives (during start-up too). */
  onLog?: (line: Record<string, any>) => void,
): Promise<ServerProcess> {
  const child = spawn(process.execPath, [join(PROJECT_ROOT, 'dist/src/main.js')], {
    cwd: env.DATA_DIR,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.add(child);
  const logs: Array<Record<string, any>> = [];
  const output: string[] = [];
  const exited = new Promise<ProcessExit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const collect = (stream: NodeJS.ReadableStream, json: boolean) => {
    let rest = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        if (!line) continue;
        output.push(line);
        if (!json) continue;
        let parsed: Record<string, any>;
        try {
          parsed = JSON.parse(line);
        } catch {
          continue;
        }
        logs.push(parsed);
        onLog?.(parsed);
      }
    });
  };
  collect(child.stdout!, true);
  collect(child.stderr!, false);

  const describeOutput = () => `${name} output:\n${output.slice(-40).join('\n')}`;
  const deadline = Date.now() + timeoutMs;
  let url: string | undefined;
  for (;;) {
    url = logs.find((line) => typeof line.url === 'string' && String(line.msg).startsWith('GraphQL API ready at'))?.url;
    if (url) break;
    if (!isRunning(child)) throw new Error(`${name} exited during start-up\n${describeOutput()}`);
    if (Date.now() > deadline) throw new Error(`${name} did not start within ${timeoutMs} ms\n${describeOutput()}`);
    await sleep(50);
  }
  const { origin, port } = new URL(url);
  for (;;) {
    const status = await fetch(`${origin}/readyz`).then(
      (response) => response.status,
      () => 0,
    );
    if (status === 200) break;
    if (Date.now() > deadline) throw new Error(`${name} /readyz never answered 200 (last: ${status})\n${describeOutput()}`);
    await sleep(100);
  }
  return { name, child, logs, output, exited, origin, port: Number(port) };
}

/** Waits (bounded) for a server process that was signalled to exit. */
export function exitOf(server: ServerProcess, timeoutMs: number): Promise<ProcessExit> {
  return Promise.race([server.exited, sleep(timeoutMs).then((): ProcessExit => ({ code: null, signal: null, timedOut: true }))]);
}

/** Kills every server process this file started that is still running, and waits for them. */
export async function killServerProcesses(): Promise<void> {
  const running = [...started].filter(isRunning);
  for (const child of running) child.kill('SIGKILL');
  await Promise.all(running.map((child) => new Promise((resolve) => child.once('exit', resolve))));
}

/** What a GraphQL request to a server process answered. */
export interface GraphQLAnswer {
  status: number;
  data?: any;
  errors?: Array<{ message: string; extensions?: Record<string, any> }>;
}

/**
 * POSTs one GraphQL operation to a server process at `origin`, with an access token when given and
 * any extra headers (e.g. `x-forwarded-for`).
 */
export async function postGraphQL(
  origin: string,
  query: string,
  variables: Record<string, unknown> = {},
  options: { token?: string; headers?: Record<string, string> } = {},
): Promise<GraphQLAnswer> {
  const response = await fetch(`${origin}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...options.headers, ...(options.token ? { authorization: `Bearer ${options.token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as Omit<GraphQLAnswer, 'status'>;
  return { status: response.status, data: body.data, errors: body.errors };
}

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { type App, type AppOptions, createApp } from '../../src/app.js';
import { type Config, loadConfig, processEnv } from '../../src/config/config.js';
import { createTestDatabase } from './database.js';

/** A GraphQL response as the client sees it. */
export interface GraphQLResponse<TData = Record<string, any>> {
  status: number;
  headers: Headers;
  data?: TData | null;
  errors?: Array<{ message: string; path?: string[]; extensions?: Record<string, any> }>;
}

/** Options of one GraphQL call. */
export interface CallOptions {
  token?: string;
  headers?: Record<string, string>;
}

/** A raw HTTP exchange: the body as text, and parsed when it is JSON. */
export interface RawResponse {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

/** A real server on a real database, listening on a free loopback port. */
export interface TestServer {
  app: App;
  config: Config;
  /** `http://127.0.0.1:PORT` */
  origin: string;
  /** Every JSON log line written so far (across restarts). */
  logs: Array<Record<string, any>>;
  graphql<TData = Record<string, any>>(query: string, variables?: Record<string, unknown>, options?: CallOptions): Promise<GraphQLResponse<TData>>;
  /** Any request to `path`, as sent; the answer is not assumed to be JSON. */
  raw(path: string, init?: RequestInit): Promise<RawResponse>;
  /** POSTs a JSON body written by hand to /graphql, so keys and bytes reach the server as sent. */
  postJson(body: string, headers?: Record<string, string>): Promise<RawResponse>;
  /** Runs SQL on the server's database, outside any request, and returns the rows. */
  sql<T = Record<string, any>>(query: string, params?: unknown[]): Promise<T[]>;
  /** Stops the app and starts a new one on the same database and DATA_DIR, with `env` changes. */
  restart(env?: Record<string, string>): Promise<void>;
  stop(): Promise<void>;
}

/** Outbox timing for tests: look for mail often and retry quickly. */
const TEST_OUTBOX = { pollIntervalMs: 100, retryBaseMs: 200 };

/**
 * Starts the application the way `npm start` does, on its own database: a fresh database on the
 * server named by DATABASE_URL when the suite runs against real PostgreSQL, otherwise embedded
 * PGlite in a temporary DATA_DIR. `env` overrides configuration variables.
 */
export async function startTestServer(env: Record<string, string> = {}, options: AppOptions = {}): Promise<TestServer> {
  const database = await createTestDatabase(processEnv().DATABASE_URL);
  const dataDir = await mkdtemp(join(tmpdir(), 'user-server-test-'));
  const baseEnv: Record<string, string> = {
    NODE_ENV: 'test',
    HOST: '127.0.0.1',
    PORT: '0',
    DATA_DIR: dataDir,
    BCRYPT_COST: '4',
    LOG_LEVEL: 'info',
    // Links in emails must come from here, whatever the request's Host header says.
    APP_URL: 'https://app.example.test',
    // Every test talks from 127.0.0.1, so per-IP limits would couple unrelated tests; the tests of
    // the limits themselves (test/security) turn them on with RATE_LIMIT_SCALE=1.
    RATE_LIMIT_SCALE: '0',
    ...(database.url ? { DATABASE_URL: database.url } : {}),
    ...env,
  };
  const logs: Array<Record<string, any>> = [];
  const logDestination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line));
      done();
    },
  });

  async function boot(environment: Record<string, string>) {
    const config = loadConfig(environment);
    const app = await createApp(config, { logDestination, ...options, outbox: { ...TEST_OUTBOX, ...options.outbox } });
    return { app, config, origin: new URL(await app.listen()).origin };
  }

  async function raw(path: string, init: RequestInit = {}): Promise<RawResponse> {
    const response = await fetch(`${current.origin}${path}`, init);
    const text = await response.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: response.status, headers: response.headers, text, json };
  }

  let currentEnv = baseEnv;
  let current: Awaited<ReturnType<typeof boot>>;
  try {
    current = await boot(currentEnv);
  } catch (error) {
    // A server that refuses to start (a test of bad configuration) leaves nothing behind.
    await database.drop();
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
  return {
    get app() {
      return current.app;
    },
    get config() {
      return current.config;
    },
    get origin() {
      return current.origin;
    },
    logs,
    async graphql(query, variables, callOptions = {}) {
      const response = await fetch(`${current.origin}/graphql`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(callOptions.token ? { authorization: `Bearer ${callOptions.token}` } : {}),
          ...callOptions.headers,
        },
        body: JSON.stringify({ query, variables }),
      });
      const body = (await response.json()) as { data?: any; errors?: any };
      return { status: response.status, headers: response.headers, data: body.data, errors: body.errors };
    },
    raw,
    postJson(body, headers = {}) {
      return raw('/graphql', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
    },
    sql(query, params = []) {
      return current.app.orm.em.fork().getConnection().execute(query, params);
    },
    async restart(changes = {}) {
      await current.app.close();
      currentEnv = { ...currentEnv, ...changes };
      current = await boot(currentEnv);
    },
    async stop() {
      await current.app.close();
      await database.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** The `extensions.code` of the first error, or `undefined` when the call succeeded. */
export function errorCode(response: GraphQLResponse): string | undefined {
  return response.errors?.[0]?.extensions?.code;
}

/** The `extensions.field` of the first error. */
export function errorField(response: GraphQLResponse): string | undefined {
  return response.errors?.[0]?.extensions?.field;
}

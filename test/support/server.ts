import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { type App, createApp } from '../../src/app.js';
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

/** A real server on a real database, listening on a free loopback port. */
export interface TestServer {
  app: App;
  config: Config;
  /** `http://127.0.0.1:PORT` */
  origin: string;
  /** Every JSON log line written so far. */
  logs: Array<Record<string, any>>;
  graphql<TData = Record<string, any>>(query: string, variables?: Record<string, unknown>, options?: CallOptions): Promise<GraphQLResponse<TData>>;
  stop(): Promise<void>;
}

/**
 * Starts the application the way `npm start` does, on its own database: a fresh database on the
 * server named by DATABASE_URL when the suite runs against real PostgreSQL, otherwise embedded
 * PGlite in a temporary DATA_DIR. `env` overrides configuration variables.
 */
export async function startTestServer(env: Record<string, string> = {}): Promise<TestServer> {
  const database = await createTestDatabase(processEnv().DATABASE_URL);
  const dataDir = await mkdtemp(join(tmpdir(), 'user-server-test-'));
  const config = loadConfig({
    NODE_ENV: 'test',
    HOST: '127.0.0.1',
    PORT: '0',
    DATA_DIR: dataDir,
    BCRYPT_COST: '4',
    LOG_LEVEL: 'info',
    ...(database.url ? { DATABASE_URL: database.url } : {}),
    ...env,
  });
  const logs: Array<Record<string, any>> = [];
  const logDestination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line));
      done();
    },
  });
  const app = await createApp(config, { logDestination });
  const url = await app.listen();
  const origin = new URL(url).origin;
  return {
    app,
    config,
    origin,
    logs,
    async graphql(query, variables, options = {}) {
      const response = await fetch(`${origin}/graphql`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
          ...options.headers,
        },
        body: JSON.stringify({ query, variables }),
      });
      const body = (await response.json()) as { data?: any; errors?: any };
      return { status: response.status, headers: response.headers, data: body.data, errors: body.errors };
    },
    async stop() {
      await app.close();
      await database.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

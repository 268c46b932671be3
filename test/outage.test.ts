import { createServer, type Server, type Socket, connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processEnv } from '../src/config/config.js';
import { LOGIN, ME, newAccountInput, REGISTER, registerAccount, type SignedInAccount } from './support/accounts.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { errorCode, type GraphQLResponse, startTestServer, type TestServer } from './support/server.js';
import { unusedPort } from './support/smtp.js';

// A real database outage the test controls: the server reaches PostgreSQL only through a TCP relay
// that the test cuts (every connection dropped, new ones refused) and brings back. Meanwhile every
// request that needs the database must answer SERVICE_UNAVAILABLE with HTTP 503 and a retry hint,
// promptly, and the log must not fill with one line per request.
const DATABASE_URL = processEnv().DATABASE_URL;
/** "Within 2 s": the pool's wait for a connection, plus room for a loaded machine. */
const ANSWER_WITHIN_MS = 4000;

/** A TCP relay to `target` that can be cut and restored. */
class Relay {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  constructor(
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {}
  async up(): Promise<void> {
    if (this.server) return;
    this.server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('error', () => socket.destroy());
        socket.on('close', () => this.sockets.delete(socket));
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
  }
  async cut(): Promise<void> {
    const closed = new Promise((resolve) => (this.server ? this.server.close(resolve) : resolve(undefined)));
    for (const socket of this.sockets) socket.destroy();
    await closed;
    this.server = undefined;
  }
}

describe.skipIf(!DATABASE_URL)('a database outage (PostgreSQL through a relay the test cuts)', () => {
  let database: TestDatabase;
  let relay: Relay;
  let server: TestServer;
  let account: SignedInAccount;

  beforeAll(async () => {
    database = await createTestDatabase(DATABASE_URL);
    const target = new URL(database.url!);
    relay = new Relay(await unusedPort(), { host: target.hostname, port: Number(target.port || 5432) });
    await relay.up();
    const viaRelay = new URL(database.url!);
    viaRelay.hostname = '127.0.0.1';
    viaRelay.port = String(relay.port);
    server = await startTestServer({ DATABASE_URL: viaRelay.toString() });
    account = await registerAccount(server);
  });
  afterAll(async () => {
    await relay?.up();
    await server?.stop();
    await relay?.cut();
    await database?.drop();
  });

  /** Runs `call`, failing if it takes longer than the bound. */
  async function bounded<T>(call: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ANSWER_WITHIN_MS} ms`)), ANSWER_WITHIN_MS);
    });
    try {
      return await Promise.race([call(), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  function expectUnavailable(response: GraphQLResponse, what: string): void {
    expect(response.status, what).toBe(503);
    expect(response.headers.get('retry-after'), what).toMatch(/^\d+$/);
    expect(errorCode(response), `${what}: ${JSON.stringify(response.errors)}`).toBe('SERVICE_UNAVAILABLE');
    expect(response.errors?.[0]?.extensions?.retryAfter, what).toEqual(expect.any(Number));
    expect(JSON.stringify(response.errors), what).not.toMatch(/ECONNREFUSED|Connection|knex|pg/i);
  }

  it('answers 503 SERVICE_UNAVAILABLE with retryAfter, promptly, logs it once per interval, and recovers', async () => {
    const logLinesBefore = server.logs.length;
    await relay.cut();

    // A signed-in query (the viewer lookup fails), sign-in and sign-up (their resolvers fail).
    expectUnavailable(await bounded(() => server.graphql(ME, {}, { token: account.accessToken })), 'me');
    expectUnavailable(await bounded(() => server.graphql(LOGIN, { input: { identifier: account.user.email, password: account.password } })), 'login');
    expectUnavailable(await bounded(() => server.graphql(REGISTER, { input: newAccountInput() })), 'register');
    // What needs no database still works.
    const typename = await bounded(() => server.graphql('{ __typename }'));
    expect(typename.status).toBe(200);
    expect((await bounded(() => server.raw('/readyz'))).status).toBe(503);
    expect((await bounded(() => server.raw('/healthz'))).status).toBe(200);

    // Forty more refusals add no log line per request.
    const burst = await Promise.all(Array.from({ length: 40 }, () => bounded(() => server.graphql(ME, {}, { token: account.accessToken }))));
    for (const response of burst) expectUnavailable(response, 'burst');
    const outageLines = server.logs.slice(logLinesBefore).filter((line) => line.level >= 50);
    expect(outageLines.length, JSON.stringify(outageLines.map((line) => line.msg))).toBeLessThanOrEqual(2);
    expect(outageLines[0]?.msg).toBe('database unreachable: answering SERVICE_UNAVAILABLE');

    await relay.up();
    await expect
      .poll(async () => (await server.graphql(ME, {}, { token: account.accessToken })).data?.me?.id, { timeout: 10_000, interval: 200 })
      .toBe(account.user.id);
    expect((await server.raw('/readyz')).status).toBe(200);
  }, 60_000);
});

import { mkdtempSync, rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processEnv } from '../../src/config/config.js';
import { createHttpServer } from '../../src/http/http-server.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { openRaw, rawRequest } from '../support/raw-http.js';
import { build, isRunning, killServerProcesses, type ServerProcess, startServerProcess } from '../support/server-process.js';
import { startTestServer, type TestServer } from '../support/server.js';

// The HTTP transport under hostile clients, over raw sockets: request-targets Node's parser lets
// through but the URL parser refuses, slow clients, idle connections, too many connections, and the
// security headers of every answer (OWASP ASVS V13 and V14.4, the Denial of Service cheat sheet).

/** Request-targets that once stopped the process with one request each (`new URL()` threw, uncaught). */
const MALFORMED_TARGETS = ['//[x', 'http://[::1/graphql', 'http://a:99999/', '//%zz/', 'http://a%00b/', '//a:b@[/', 'x://:99999'];

function get(target: string): string {
  return `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`;
}

describe('malformed request-targets, sent to a server process', () => {
  let database: TestDatabase;
  let dataDir: string;
  let server: ServerProcess;
  beforeAll(async () => {
    await build();
    database = await createTestDatabase(processEnv().DATABASE_URL);
    dataDir = mkdtempSync(join(tmpdir(), 'user-server-targets-'));
    server = await startServerProcess('targets', {
      NODE_ENV: 'test',
      HOST: '127.0.0.1',
      PORT: '0',
      DATA_DIR: dataDir,
      BCRYPT_COST: '4',
      LOG_LEVEL: 'info',
      ...(database.url ? { DATABASE_URL: database.url } : {}),
    });
  });
  afterAll(async () => {
    await killServerProcesses();
    await database?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it.each(MALFORMED_TARGETS)('answers %j with 400 and keeps running', async (target) => {
    const answer = await rawRequest(server.port, get(target));
    expect(answer.status, answer.text).toBe(400);
    expect(answer.headers['x-content-type-options']).toBe('nosniff');
    await sleep(100);
    expect(isRunning(server.child), server.output.slice(-20).join('\n')).toBe(true);
  });

  it('is still serving after every malformed target, and logged no crash', async () => {
    const health = await rawRequest(server.port, get('/healthz'));
    expect(health.status).toBe(200);
    expect(isRunning(server.child)).toBe(true);
    expect(server.output.join('\n')).not.toMatch(/ERR_INVALID_URL|uncaught/i);
    // Each refusal is an ordinary request in the access log, with no path.
    const refused = server.logs.filter((line) => line.msg === 'request' && line.status === 400);
    expect(refused.length).toBeGreaterThanOrEqual(MALFORMED_TARGETS.length);
  });
});

describe('slow and idle clients, and the connection cap', () => {
  const CAP = 6;
  let server: TestServer;
  let port: number;
  beforeAll(async () => {
    server = await startTestServer({ HTTP_MAX_CONNECTIONS: String(CAP) });
    port = Number(new URL(server.origin).port);
  });
  afterAll(() => server?.stop());

  /** Sends `start`, then one more `byte` a second, until the server closes the connection; what it answered. */
  async function trickle(start: string, byte: string, waitMs: number) {
    const connection = await openRaw(port);
    connection.write(start);
    const sending = (async () => {
      while (!connection.socket.destroyed && !connection.socket.readableEnded) {
        connection.write(byte);
        await sleep(1000);
      }
    })();
    const answer = await connection.answer(waitMs);
    connection.close();
    await sending;
    return answer;
  }

  // The three waits overlap: the longest is the 30 s request limit.
  it.concurrent('closes a connection whose headers trickle in for more than 10 s, with 408', { timeout: 60_000 }, async () => {
    const answer = await trickle('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n', 'X', 20_000);
    expect(answer.closed, `still open after ${answer.ms} ms`).toBe(true);
    expect(answer.status).toBe(408);
  });

  it.concurrent('closes a request whose body trickles in for more than 30 s, with 408', { timeout: 60_000 }, async () => {
    const answer = await trickle('POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"query":"', ' ', 40_000);
    expect(answer.closed, `still open after ${answer.ms} ms`).toBe(true);
    expect(answer.status).toBe(408);
    // A client cut off is not a server fault.
    expect(server.logs.filter((line) => line.level >= 50)).toEqual([]);
  });

  it.concurrent('keeps an idle keep-alive connection for a while, and closes it after 5 s', { timeout: 60_000 }, async () => {
    const connection = await openRaw(port);
    const request = 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';
    connection.write(request);
    expect((await connection.headersReceived(5_000)).status).toBe(200);
    // Two idle seconds are within the limit: the connection still serves.
    await sleep(2_000);
    connection.write(request);
    await sleep(500);
    expect(connection.socket.destroyed).toBe(false);
    expect((await connection.answer(0)).text.match(/HTTP\/1\.1 200/g)).toHaveLength(2);
    // Left alone now, it is closed after 5 s: the wait is bounded a little above that, so a longer
    // idle limit (Node's own default is 5 s too; HTTP_TIMEOUTS pins it) fails here.
    const answer = await connection.answer(8_000);
    connection.close();
    expect(answer.closed, `still open after ${answer.ms} ms`).toBe(true);
  });

  it('closes connections beyond HTTP_MAX_CONNECTIONS at once, and serves again when one is freed', async () => {
    // The three tests above hold up to three connections while this one runs.
    await sleep(200);
    const held = [];
    for (let index = 0; index < CAP; index += 1) held.push(await openRaw(port));
    const extra = await openRaw(port);
    const refused = await extra.answer(3_000);
    expect(refused.closed).toBe(true);
    expect(refused.text).toBe('');
    for (const connection of held) connection.close();
    await sleep(200);
    const served = await rawRequest(port, get('/healthz'));
    expect(served.status).toBe(200);
  });
});

describe('every answer says nosniff', () => {
  let server: TestServer;
  let port: number;
  beforeAll(async () => {
    server = await startTestServer();
    port = Number(new URL(server.origin).port);
  });
  afterAll(() => server?.stop());

  const graphqlPost = (body: string, extra = '') =>
    `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n${extra}\r\n${body}`;

  it.each([
    ['a GraphQL answer', graphqlPost('{"query":"{ __typename }"}'), 200],
    ['a GraphQL error', graphqlPost('{"query":"{ me { id } }"}'), 200],
    ['a body that is not JSON', graphqlPost('{not json'), 400],
    ['a body above 100 KB', `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 200000\r\nConnection: close\r\n\r\n`, 413],
    ['/healthz', get('/healthz'), 200],
    ['/readyz', get('/readyz'), 200],
    ['a POST to /healthz', 'POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n', 405],
    ['a HEAD of /readyz', 'HEAD /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n', 200],
    ['an unknown path', get('/nothing-here'), 404],
    ['the reset page', get('/reset-password'), 200],
    ['a CORS preflight', 'OPTIONS /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://spa.example\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n', 204],
    ['a malformed request-target', get('//[x'), 400],
    ['a request the HTTP parser refuses', 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header Line\r\n\r\n', 400],
    ['an HTTP/1.1 request without Host', 'GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n', 400],
    ['an expectation other than 100-continue', 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 200-ok\r\nConnection: close\r\n\r\n', 417],
    ['CONNECT', 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', 405],
    ['an HTTP/1.0 request without Host (allowed)', 'GET /healthz HTTP/1.0\r\n\r\n', 200],
  ])('%s', async (_name, request, status) => {
    const answer = await rawRequest(port, request);
    expect(answer.status, answer.text.slice(0, 300)).toBe(status);
    expect(answer.headers['x-content-type-options']).toBe('nosniff');
  });

  it('an Accept header that admits no JSON is refused with 406 before the operation runs: a logoutAll sent with it ends nothing', async () => {
    const registered = await server.graphql('mutation R($input: RegisterInput!) { register(input: $input) { accessToken } }', {
      input: { email: `accept-${Date.now()}@example.com`, username: `accept_${Date.now()}`, password: 'a long enough passphrase 77' },
    });
    const token = registered.data!.register.accessToken as string;
    const body = '{"query":"mutation { logoutAll }"}';
    const answer = await rawRequest(port, graphqlPost(body, `Accept: text/html\r\nAuthorization: Bearer ${token}\r\n`));
    expect(answer.status).toBe(406);
    expect(answer.headers['x-content-type-options']).toBe('nosniff');
    // Before, Apollo Server ran the mutation and only then refused the answer: the session was gone.
    expect((await server.graphql('{ me { id } }', {}, { token })).errors).toBeUndefined();
    // Control: the JSON media types and a wildcard are answered (the cases above send no Accept).
    for (const accept of ['application/json', 'application/graphql-response+json', '*/*', 'text/html, application/*;q=0.5']) {
      const served = await rawRequest(port, graphqlPost('{"query":"{ __typename }"}', `Accept: ${accept}\r\n`));
      expect(served.status, accept).toBe(200);
    }
  });
});

describe('an error escaping a request handler', () => {
  it('is logged and answered 500, thrown or rejected, and the server keeps serving', async () => {
    const lines: Array<Record<string, any>> = [];
    const logger = pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _encoding, done) => (lines.push(JSON.parse(chunk.toString())), done()) }));
    const server = createHttpServer({ maxConnections: 10, logger }, (req: IncomingMessage, res: ServerResponse) => {
      if (req.url === '/throws') throw new Error('thrown by the handler');
      if (req.url === '/rejects') return Promise.reject(new Error('rejected by the handler'));
      res.end('fine');
      return Promise.resolve();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      for (const path of ['/throws', '/rejects']) {
        const answer = await rawRequest(port, get(path));
        expect(answer.status).toBe(500);
        expect(answer.text).toContain('INTERNAL_SERVER_ERROR');
        expect(answer.text).not.toContain('by the handler');
      }
      expect((await rawRequest(port, get('/ok'))).status).toBe(200);
      expect(lines.filter((line) => line.msg === 'unhandled error while serving a request').map((line) => line.err.message)).toEqual([
        'thrown by the handler',
        'rejected by the handler',
      ]);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

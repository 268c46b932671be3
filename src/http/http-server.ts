import { createServer, type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../logger.js';

/**
 * How long a client may take (OWASP ASVS V13, slow-request denial of service): the request line
 * and headers within 10 s, the whole request within 30 s; an idle keep-alive connection is closed
 * after 5 s. Node checks these once a second (its default of 30 s would let them overrun).
 */
export const HTTP_TIMEOUTS = { headersMs: 10_000, requestMs: 30_000, keepAliveMs: 5_000, checkIntervalMs: 1_000 } as const;

/** Headers on every answer, the parser's own refusals included (entries made once, not per request). */
const SECURITY_HEADERS = Object.entries({ 'x-content-type-options': 'nosniff' });

/** Transport limits of {@link createHttpServer}. */
export interface HttpServerOptions {
  /** Open connections beyond this are closed at once (`HTTP_MAX_CONNECTIONS`). */
  maxConnections: number;
  logger: Logger;
}

/** How often, at most, the log says that connections are being dropped at the cap. */
const DROP_LOG_INTERVAL_MS = 10_000;

/**
 * Node's HTTP server with the transport hardened, serving `handle`:
 * - timeouts and a connection cap as above;
 * - every answer carries `x-content-type-options: nosniff`;
 * - an error escaping `handle` (thrown, or a rejected promise) is logged and answered 500, or the
 *   connection is closed if the answer had begun; it never reaches the process;
 * - requests the parser refuses get a bare 400 (408 for a timeout, 431 for oversized headers), an
 *   HTTP/1.1 request without Host 400, an unknown expectation 417 and CONNECT 405, all with the
 *   headers above.
 */
export function createHttpServer(options: HttpServerOptions, handle: (req: IncomingMessage, res: ServerResponse) => Promise<void>): Server {
  const { logger } = options;
  const server = createServer({
    headersTimeout: HTTP_TIMEOUTS.headersMs,
    requestTimeout: HTTP_TIMEOUTS.requestMs,
    keepAliveTimeout: HTTP_TIMEOUTS.keepAliveMs,
    connectionsCheckingInterval: HTTP_TIMEOUTS.checkIntervalMs,
    // Checked in the 'request' handler below instead, so that refusal carries the headers too.
    requireHostHeader: false,
  });
  server.maxConnections = options.maxConnections;

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    for (const [name, value] of SECURITY_HEADERS) res.setHeader(name, value);
    // HTTP/1.1 requires Host (RFC 9112 §3.2), as Node would check.
    if (req.httpVersion === '1.1' && !req.headers.host) {
      refuse(res, 400);
      return;
    }
    const unexpected = (error: unknown) => {
      logger.error({ err: error, requestId: res.getHeader('x-request-id'), method: req.method }, 'unhandled error while serving a request');
      if (res.headersSent) {
        res.destroy();
        return;
      }
      res.statusCode = 500;
      res.setHeader('content-type', 'application/json; charset=utf-8');
      res.end(JSON.stringify({ errors: [{ message: 'Internal server error.', extensions: { code: 'INTERNAL_SERVER_ERROR' } }] }));
    };
    try {
      handle(req, res).catch(unexpected);
    } catch (error) {
      unexpected(error);
    }
  });

  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex & { _httpMessage?: ServerResponse }) => {
    // As Node's own handler does: answer unless a response on this connection has begun.
    const inFlight = socket._httpMessage;
    if (socket.writable && error.code !== 'ECONNRESET' && !inFlight?.headersSent) {
      const status = error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : error.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
      socket.write(rawRefusal(status));
    }
    socket.destroy();
  });

  // An expectation other than 100-continue (Node would answer 417 without our headers).
  server.on('checkExpectation', (_req: IncomingMessage, res: ServerResponse) => {
    for (const [name, value] of SECURITY_HEADERS) res.setHeader(name, value);
    refuse(res, 417);
  });
  // CONNECT (Node would close the connection without an answer): no tunnels here.
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    socket.end(rawRefusal(405));
  });

  let lastDropLog = 0;
  let dropped = 0;
  server.on('drop', () => {
    dropped += 1;
    const now = Date.now();
    if (now - lastDropLog < DROP_LOG_INTERVAL_MS) return;
    logger.warn({ dropped, maxConnections: options.maxConnections }, 'connection cap reached: new connections are being closed (HTTP_MAX_CONNECTIONS)');
    lastDropLog = now;
    dropped = 0;
  });
  return server;
}

/** A bodiless refusal that closes the connection, written straight to a socket Node's parser left. */
function rawRefusal(status: number): string {
  const headers = [...SECURITY_HEADERS, ['connection', 'close'], ['content-length', '0']].map(([name, value]) => `${name}: ${value}\r\n`);
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${headers.join('')}\r\n`;
}

/** A bodiless refusal that closes the connection. */
function refuse(res: ServerResponse, status: number): void {
  res.writeHead(status, { connection: 'close', 'content-length': '0' });
  res.end();
}

import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { type AddressInfo, isIP } from 'node:net';
import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { ApolloServerPluginCacheControlDisabled, ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { ApolloServerPluginLandingPageLocalDefault } from '@apollo/server/plugin/landingPage/default';
import type { MikroORM } from '@mikro-orm/postgresql';
import cors from 'cors';
import type { DestinationStream } from 'pino';
import { type Config, ConfigError } from './config/config.js';
import { BadUserInputError } from './errors.js';
import { openDatabase } from './db/database.js';
import { type AppContext, buildContext } from './graphql/context.js';
import { contextUnavailableError, createErrorFormatter, errorLoggingPlugin } from './graphql/errors.js';
import { createGraphQLHandler } from './graphql/http-handler.js';
import { queryLimitRules } from './graphql/limits.js';
import { buildAppSchema } from './graphql/schema.js';
import { productionAnswersPlugin, roleLimitedFields } from './graphql/visibility.js';
import { createHttpServer } from './http/http-server.js';
import { refreshTokenCookie } from './http/refresh-cookie.js';
import { type RenderedPage, sendPage } from './http/hosted-page.js';
import { lockdownPage } from './http/lockdown-page.js';
import { resetPasswordPage } from './http/reset-page.js';
import { type RequestTarget, requestTarget } from './http/request-target.js';
import { createLogger, type Logger } from './logger.js';
import { Maintenance } from './maintenance.js';
import { DEFAULT_OUTBOX_OPTIONS, type OutboxOptions } from './mail/outbox.js';
import type { HostResolver } from './modules/webhooks/destination.js';
import { DEFAULT_WEBHOOK_OPTIONS, type WebhookDispatchOptions } from './modules/webhooks/webhook-dispatcher.js';
import { userAgentOf } from './modules/sessions/request-meta.js';
import { createServices } from './services.js';

/** Where the public keys that verify access tokens are published (RFC 8615 well-known location). */
export const JWKS_PATH = '/.well-known/jwks.json';

/** The pages this server hosts for the links in its emails, by path. */
const HOSTED_PAGES = new Map<string, () => RenderedPage>([
  ['/reset-password', () => resetPasswordPage()],
  ['/lockdown', () => lockdownPage()],
]);

/** Paths served to GET and HEAD alone: any other method is answered 405 with `Allow`. */
const READ_ONLY_PATHS = new Set(['/healthz', '/readyz', JWKS_PATH, ...HOSTED_PAGES.keys()]);

/** A wired, not yet listening server. */
export interface App {
  readonly server: Server;
  readonly orm: MikroORM;
  readonly logger: Logger;
  /**
   * Starts listening on `config.host:config.port`, then the background workers (mail, webhooks,
   * maintenance); resolves with the GraphQL endpoint URL.
   */
  listen(): Promise<string>;
  /** Stops accepting, finishes in-flight requests, closes the database. Idempotent. */
  close(): Promise<void>;
}

/** Options that only tests and embedders need. */
export interface AppOptions {
  /** Where JSON log lines go (default: stdout). */
  logDestination?: DestinationStream;
  /** Mail outbox worker tuning (tests shorten poll and retry delays). */
  outbox?: Partial<OutboxOptions>;
  /** Webhook dispatcher tuning (tests shorten poll, retry and time-out delays). */
  webhooks?: Partial<WebhookDispatchOptions>;
  /** How webhook hosts are resolved (tests stand in for DNS, e.g. to rebind a name). */
  resolveHost?: HostResolver;
  /**
   * Whether `listen()` starts the background workers (default true). Off only where a test looks at
   * what a request alone writes, before any worker acts on it.
   */
  workers?: boolean;
}

const READINESS_TIMEOUT_MS = 2000;
/** After the drain limit: how long the requests still running may take to end (each issues no session any more). */
const CUT_LIMIT_MS = 5_000;
/** What `serve` returns for a request answered without waiting for anything. */
const ANSWERED = Promise.resolve();
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/**
 * The client's address: the socket peer, or — behind `hops` trusted reverse proxies — the entry
 * those proxies appended to `X-Forwarded-For` (entries further left are client-controlled), when it
 * is an IP address.
 */
export function clientIp(req: IncomingMessage, hops: number): string | null {
  const peer = req.socket.remoteAddress ?? null;
  if (hops > 0) {
    const forwarded = String(req.headers['x-forwarded-for'] ?? '')
      .split(',')
      .map((entry) => entry.trim())
      .filter(Boolean);
    const candidate = forwardedAddress(forwarded[Math.max(0, forwarded.length - hops)]);
    if (candidate) return stripIpv4Mapping(candidate);
  }
  return peer && stripIpv4Mapping(peer);
}

/**
 * The IP address of an `X-Forwarded-For` entry (some proxies add a port: `1.2.3.4:5678`,
 * `[::1]:5678`), or `null` when it is no address: such an entry is never stored or counted as one.
 */
function forwardedAddress(entry: string | undefined): string | null {
  // No IPv6 zone (`fe80::1%eth0`, of any length): it names an interface of the proxy, not a client.
  if (!entry || entry.includes('%')) return null;
  if (isIP(entry)) return entry;
  const withPort = /^\[([^\]]+)\]:(\d{1,5})$/.exec(entry) ?? /^([^:]+):(\d{1,5})$/.exec(entry);
  return withPort && isIP(withPort[1]) && Number(withPort[2]) <= 65_535 ? withPort[1] : null;
}

function stripIpv4Mapping(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

/**
 * CORS for CORS_ORIGINS only, with credentials; other origins get no CORS headers at all. The
 * options are decided synchronously, as `serve` expects of the cors middleware. Every answer varies
 * by `Origin`, refusals included, so a shared cache never hands one origin's answer to another.
 */
function credentialedCors(origins: readonly string[]) {
  const allowed = { origin: true, credentials: true, maxAge: 600, exposedHeaders: ['x-request-id'] };
  const handler = cors((req: cors.CorsRequest, decide: (error: Error | null, options: cors.CorsOptions) => void) => {
    decide(null, origins.includes(String(req.headers.origin)) ? allowed : { origin: false });
  });
  return (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => {
    res.setHeader('vary', 'Origin');
    handler(req as cors.CorsRequest, res, next);
  };
}

/** Writes `body` as JSON (for a HEAD, only the headers of what a GET would get). */
function sendJson(res: ServerResponse, status: number, body: unknown, head = false, contentType = 'application/json; charset=utf-8'): void {
  const json = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('content-type', contentType);
  res.setHeader('content-length', Buffer.byteLength(json));
  res.end(head ? undefined : json);
}

/**
 * Wires database, services, GraphQL and HTTP from a validated configuration. Never reads
 * `process.env`. With no `databaseUrl` it starts (and later stops) the embedded database.
 */
export async function createApp(config: Config, options: AppOptions = {}): Promise<App> {
  const logger = createLogger(config, options.logDestination);
  const database = await openDatabase(config, logger);
  const { orm } = database;
  const services = await createServices(config, database, logger, {
    outbox: { ...DEFAULT_OUTBOX_OPTIONS, ...options.outbox },
    webhooks: { ...DEFAULT_WEBHOOK_OPTIONS, ...options.webhooks },
    resolveHost: options.resolveHost,
  });
  if (config.admin) {
    try {
      await services.userAdmin.ensureFirstAdmin(orm.em.fork(), config.admin, logger);
    } catch (error) {
      await services.close();
      // A bad ADMIN_EMAIL / ADMIN_PASSWORD is a configuration problem, reported like one.
      if (error instanceof BadUserInputError) throw new ConfigError([`ADMIN_${(error.field ?? 'password').toUpperCase()}: ${error.message}`]);
      throw error;
    }
  }
  const maintenance = new Maintenance(orm, config.retention, logger.child({ component: 'maintenance' }), services.outages);
  const server = createHttpServer({ maxConnections: config.httpMaxConnections, logger }, serve);
  const schema = await buildAppSchema();
  const { outages } = services;
  const apollo = new ApolloServer<AppContext>({
    schema,
    // Production answers teach nothing about the schema: no suggestions, no echoed values, and
    // role-limited fields look absent to those without the role (errors.ts, visibility.ts).
    formatError: createErrorFormatter({ hideSchema: config.isProduction }),
    logger,
    introspection: !config.isProduction,
    includeStacktraceInErrorResponses: false,
    hideSchemaDetailsFromClientErrors: config.isProduction,
    persistedQueries: false,
    validationRules: queryLimitRules(config.queryLimits, !config.isProduction),
    parseOptions: { maxTokens: config.queryLimits.maxTokens },
    // CSRF prevention happens in createGraphQLHandler, before the body is read.
    csrfPrevention: false,
    allowBatchedHttpRequests: false,
    // main.ts owns shutdown (drain, then close the database); Apollo must not race it on SIGTERM.
    stopOnTerminationSignals: false,
    plugins: [
      errorLoggingPlugin(outages),
      // roleLimitedFields reads what type-graphql recorded while building the schema above.
      ...(config.isProduction ? [productionAnswersPlugin(roleLimitedFields())] : []),
      // Shutdown has already waited for the requests in flight (close() below): connections still
      // open after a second are cut.
      ApolloServerPluginDrainHttpServer({ httpServer: server, stopGracePeriodMillis: 1_000 }),
      // No field has cache hints and every answer is no-store (see http-handler.ts).
      ApolloServerPluginCacheControlDisabled(),
      config.isProduction
        ? ApolloServerPluginLandingPageDisabled()
        : ApolloServerPluginLandingPageLocalDefault({ embed: true, includeCookies: false }),
    ],
  });
  await apollo.start();
  const graphql = createGraphQLHandler(apollo, { landingPage: !config.isProduction });
  // Access tokens travel in a header, never in cookies, so without CORS_ORIGINS any origin may call
  // the API, without credentials. With it only those origins may, with credentials: the opt-in
  // refresh-token cookie (http/refresh-cookie.ts) is theirs alone.
  const corsHandler = config.corsOrigins ? credentialedCors(config.corsOrigins) : cors({ maxAge: 600, exposedHeaders: ['x-request-id'] });
  let draining = false;
  /** GraphQL requests whose handlers are running: shutdown lets them end before it closes the database. */
  const running = new Set<Promise<void>>();

  /** Resolves once no GraphQL request is running, or after `limitMs`. */
  async function idle(limitMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, limitMs);
    });
    try {
      while (running.size > 0) {
        const ended = await Promise.race([Promise.allSettled([...running]).then(() => true), limit.then(() => false)]);
        if (!ended) return;
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** A viewer lookup that found the database unreachable is answered 503, not 500. */
  function withOutageAnswer(context: Promise<AppContext>): Promise<AppContext> {
    return context.catch((error: unknown) => {
      throw outages.record(error) ? contextUnavailableError(error) : error;
    });
  }

  async function isDatabaseReady(): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), READINESS_TIMEOUT_MS);
    });
    // Not ready either when the database answers but refuses writes (a standby, or a primary made
    // read-only during a failover): every sign-in would answer 503.
    const ping = orm.em
      .getConnection()
      .execute<Array<{ read_only: string }>>(`select current_setting('transaction_read_only') as "read_only"`)
      .then(([row]) => row?.read_only === 'off')
      .catch(() => false);
    try {
      return await Promise.race([ping, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async function route(req: IncomingMessage, res: ServerResponse, requestId: string, target: RequestTarget): Promise<void> {
    const { pathname } = target;
    if (READ_ONLY_PATHS.has(pathname)) {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('allow', 'GET, HEAD');
        return sendJson(res, 405, { error: 'Method not allowed' });
      }
      const head = req.method === 'HEAD';
      if (pathname === '/healthz') return sendJson(res, 200, { status: 'ok' }, head);
      if (pathname === '/readyz') {
        const ready = !draining && (await isDatabaseReady());
        return sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'unavailable' }, head);
      }
      if (pathname === JWKS_PATH) {
        // Public keys only; verifiers cache them this long, and fetch again when a token names a key
        // they have not seen (a rotation), so a short lifetime costs nothing.
        res.setHeader('cache-control', 'public, max-age=300');
        return sendJson(res, 200, services.accessTokens.jwks(), head, 'application/jwk-set+json');
      }
      // The hosted pages render HTML only: the token stays in the query string for the page's
      // script, and a GET spends nothing.
      return sendPage(res, HOSTED_PAGES.get(pathname)!(), head);
    }
    if (pathname === '/graphql') {
      // Shutting down: whatever reaches us is still answered (it may have been sent before the signal),
      // but the connection is not kept for more.
      if (draining) res.setHeader('connection', 'close');
      const handled = graphql(req, res, target, () =>
        withOutageAnswer(buildContext({
          requestId,
          authorization: req.headers.authorization,
          refreshCookie: refreshTokenCookie(req, res, { corsOrigins: config.corsOrigins }),
          meta: { ip: clientIp(req, config.trustProxyHops), userAgent: userAgentOf(req.headers['user-agent']) },
          rootEm: orm.em,
          services,
          logger,
        })),
      );
      running.add(handled);
      void handled.finally(() => running.delete(handled)).catch(() => {});
      return handled;
    }
    sendJson(res, 404, { error: 'Not found' });
  }

  function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const incoming = req.headers['x-request-id'];
    const requestId = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    res.setHeader('x-request-id', requestId);
    const startedAt = performance.now();
    const target = requestTarget(req.url);
    // One access line per request: the path only, never the query string (reset links carry tokens there).
    res.once('finish', () => {
      logger.info({ requestId, method: req.method, path: target?.pathname ?? null, status: res.statusCode, ms: Math.round(performance.now() - startedAt) }, 'request');
    });
    if (!target) {
      sendJson(res, 400, { error: 'Bad request target' });
      return ANSWERED;
    }
    // cors decides synchronously (fixed options, or credentialedCors): it answers a preflight itself, or calls next.
    let routed = ANSWERED;
    corsHandler(req, res, (error?: unknown) => {
      if (error) throw error;
      routed = route(req, res, requestId, target);
    });
    return routed;
  }

  let closing: Promise<void> | undefined;
  return {
    server,
    orm,
    logger,
    listen() {
      // A closed app has no database left to serve from.
      if (closing) return Promise.reject(new Error('the app is closed'));
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.port, config.host, () => {
          server.off('error', reject);
          // Only an instance that serves works the queues: one that cannot listen (the port is
          // taken) exits without having claimed or sent anything. close() stops them once the
          // listener has closed.
          if (!closing && options.workers !== false) {
            services.start();
            maintenance.start();
          }
          const { port } = server.address() as AddressInfo;
          const host = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host;
          resolve(`http://${host.includes(':') ? `[${host}]` : host}:${port}/graphql`);
        });
      });
    },
    close() {
      closing ??= (async () => {
        // From here /readyz answers 503 while the listener stays open for the requests in flight (up
        // to the drain limit): an orchestrator sees "not ready", not a refused connection, and
        // stops sending. Then the listener closes (drain plugin).
        draining = true;
        // Emails being sent get the drain limit too; the mail worker cuts those still out then.
        services.outbox.drainUntil(Date.now() + config.shutdownDrainSeconds * 1000);
        await idle(config.shutdownDrainSeconds * 1000);
        // The drain limit: what still runs is cut. Its answers may reach no one (the listener closes
        // next, taking open connections with it), so from here it issues no session. Its handlers
        // still get a bounded moment to end, on an open database, before that closes.
        services.signInGate.close();
        await apollo.stop();
        await idle(CUT_LIMIT_MS);
        await maintenance.stop();
        await services.close();
      })();
      return closing;
    },
  };
}

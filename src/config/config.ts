import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parseEnv } from 'node:util';
import { type JwtSigning, parseJwtSigning } from './signing-keys.js';

/** Runtime profile; `production` hardens the server (see CONTRACT.md). */
export type NodeEnv = 'development' | 'test' | 'production';

/** pino log levels accepted by `LOG_LEVEL`. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The validated, frozen configuration of one server process. */
export interface Config {
  readonly nodeEnv: NodeEnv;
  readonly isProduction: boolean;
  readonly port: number;
  readonly host: string;
  /** `postgresql://…` of a real server; `undefined` runs the embedded PGlite database. */
  readonly databaseUrl: string | undefined;
  /** Seconds start-up keeps retrying an unreachable `databaseUrl` (`DATABASE_CONNECT_TIMEOUT`). */
  readonly databaseConnectTimeoutSeconds: number;
  /**
   * Seconds shutdown lets requests in flight finish (`SHUTDOWN_DRAIN_SECONDS`); what is still running
   * then is cut, and issues no session.
   */
  readonly shutdownDrainSeconds: number;
  /**
   * `postgresql://…` of read replicas of `databaseUrl` (`DATABASE_REPLICA_URLS`), empty when none.
   * Only reads that may lag (admin listings) go to them; everything else reads the primary.
   */
  readonly databaseReplicaUrls: readonly string[];
  /** Absolute path of the local data folder (embedded database, generated secrets, outbox). */
  readonly dataDir: string;
  /**
   * HS256 key for access tokens, and the key material `hmacSecret` defaults to. In production with
   * EdDSA and `HMAC_SECRET` set, nothing uses it: when not configured it is then random bytes of
   * this process, never kept anywhere.
   */
  readonly jwtSecret: string;
  /** Whether `jwtSecret` was generated and kept in `dataDir` rather than configured. */
  readonly jwtSecretGenerated: boolean;
  /** How access tokens are signed and verified (`JWT_ALGORITHM`, `JWT_PRIVATE_KEY`, `JWT_VERIFY_KEYS`). */
  readonly jwtSigning: JwtSigning;
  /**
   * Key material for the password pepper, one-time-token hashes and outbox encryption; `undefined`
   * derives them from `jwtSecret` (then rotating the JWT secret invalidates every password).
   */
  readonly hmacSecret: string | undefined;
  /**
   * This server's public URL, without a trailing slash: the issuer and audience of its access tokens,
   * and the base of the default link targets below. Never where links point by itself. An origin
   * with an optional path: no query, fragment or user info.
   */
  readonly appUrl: string;
  /** Where the links in emails point (`RESET_PASSWORD_URL`, `LOCKDOWN_URL`); the token is added as `?token=`. */
  readonly links: LinkTargets;
  /** Lifetimes of the tokens a sign-in hands out (`ACCESS_TOKEN_TTL`, `REFRESH_TOKEN_TTL`, `REFRESH_TOKEN_REUSE_INTERVAL`). */
  readonly tokenLifetimes: TokenLifetimes;
  /**
   * Origins allowed to call the API from a browser with credentials (`CORS_ORIGINS`); `undefined`
   * lets any origin call it, without credentials.
   */
  readonly corsOrigins: readonly string[] | undefined;
  readonly smtpUrl: string | undefined;
  readonly mailFrom: string;
  readonly bcryptCost: number;
  readonly admin: { readonly email: string; readonly password: string; readonly username: string } | undefined;
  readonly logLevel: LogLevel;
  /** Number of reverse-proxy hops whose `X-Forwarded-For` entries are believed; 0 trusts none. */
  readonly trustProxyHops: number;
  readonly rateLimitScale: number;
  /** `redis://…` to keep rate-limit counters in Redis instead of PostgreSQL. */
  readonly redisUrl: string | undefined;
  /** Limits every GraphQL document must stay within; checked before anything executes. */
  readonly queryLimits: QueryLimits;
  /** Open HTTP connections beyond this are closed at once (`HTTP_MAX_CONNECTIONS`). */
  readonly httpMaxConnections: number;
  /** What maintenance purges, and how often it runs (see maintenance.ts). */
  readonly retention: Retention;
  /** Where webhook endpoints may point (see modules/webhooks/destination.ts). */
  readonly webhooks: WebhookDestinations;
}

/** Rules for webhook endpoint URLs. */
export interface WebhookDestinations {
  /** Only `https://` URLs (production). */
  readonly httpsOnly: boolean;
  /**
   * Hosts whose URLs may resolve to loopback, link-local or private addresses
   * (`WEBHOOK_ALLOWED_HOSTS`), each as the URL parser writes the host of a URL (see
   * {@link urlHostname}); every other host must resolve to public ones only.
   */
  readonly allowedHosts: readonly string[];
}

/** Absolute URLs that email links point at; any scheme but script-running ones (`myapp://reset` for deep links). */
export interface LinkTargets {
  readonly resetPassword: string;
  readonly lockdown: string;
}

/** Token lifetimes, in seconds. */
export interface TokenLifetimes {
  readonly accessTokenSeconds: number;
  readonly refreshTokenSeconds: number;
  /** How long a just-rotated refresh token still gets a working pair of its device session; 0 = strict. */
  readonly refreshReuseIntervalSeconds: number;
}

/** Retention of rows that are done with (`SESSION_RETENTION_DAYS`, `AUDIT_RETENTION_DAYS`, `MAINTENANCE_INTERVAL_SECONDS`). */
export interface Retention {
  readonly sessionDays: number;
  readonly auditDays: number;
  readonly intervalSeconds: number;
}

/** Size limits of one GraphQL document (`GRAPHQL_MAX_*`). */
export interface QueryLimits {
  readonly maxDepth: number;
  readonly maxAliases: number;
  readonly maxDirectives: number;
  readonly maxTokens: number;
  readonly maxCost: number;
}

/**
 * A reason the process cannot start that the operator must fix, with a message written for them:
 * printed as it is (no stack trace), and the process exits with status 1.
 */
export class StartupError extends Error {}

/** Thrown by {@link loadConfig} with every problem found, one per line. */
export class ConfigError extends StartupError {
  constructor(readonly problems: readonly string[]) {
    super(`Invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** HMAC keys shorter than the hash output weaken the MAC (RFC 7518 §3.2); applies to every secret. */
export const MIN_JWT_SECRET_BYTES = 32;

const JWT_SECRET_FILE = 'jwt-secret';

type Env = Readonly<Record<string, string | undefined>>;

/**
 * Reads the `.env` file of `cwd` when there is one. Variables already present in the real
 * environment win, as with every dotenv loader, so a deployment can override a checked-out file.
 */
export function readEnvFile(cwd: string = process.cwd()): Record<string, string> {
  const path = join(cwd, '.env');
  return existsSync(path) ? (parseEnv(readFileSync(path, 'utf8')) as Record<string, string>) : {};
}

/**
 * The one place the process environment is read: `.env` (when present) under the real environment.
 */
export function processEnv(): Env {
  return { ...readEnvFile(), ...process.env };
}

/**
 * Parses and validates every variable of CONTRACT.md at once. Reports all problems together in a
 * {@link ConfigError}; never reads `process.env` itself, so tests pass their own map.
 */
export function loadConfig(env: Env): Config {
  const problems: string[] = [];
  const value = (name: string): string | undefined => {
    const raw = env[name];
    return raw === undefined || raw.trim() === '' ? undefined : raw.trim();
  };
  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const raw = value(name);
    if (raw === undefined) return fallback;
    if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
      problems.push(`${name} must be a whole number from ${min} to ${max} (got "${raw}")`);
      return fallback;
    }
    return Number(raw);
  };
  const url = (name: string, protocols: readonly string[]): string | undefined => {
    const raw = value(name);
    if (raw === undefined) return undefined;
    try {
      const parsed = new URL(raw);
      if (!protocols.includes(parsed.protocol)) throw new Error('protocol');
      return raw;
    } catch {
      problems.push(`${name} must be a ${protocols.map((p) => `${p}//…`).join(' or ')} URL`);
      return undefined;
    }
  };

  const nodeEnvRaw = value('NODE_ENV') ?? 'development';
  let nodeEnv: NodeEnv = 'development';
  if (nodeEnvRaw === 'development' || nodeEnvRaw === 'test' || nodeEnvRaw === 'production') {
    nodeEnv = nodeEnvRaw;
  } else {
    problems.push(`NODE_ENV must be development, test or production (got "${nodeEnvRaw}")`);
  }
  const isProduction = nodeEnv === 'production';

  const port = integer('PORT', 4000, 0, 65535);
  const host = value('HOST') ?? '0.0.0.0';
  const databaseUrl = url('DATABASE_URL', ['postgresql:', 'postgres:']);
  const databaseReplicaUrls = replicaUrls(value('DATABASE_REPLICA_URLS'), value('DATABASE_URL') !== undefined, problems);
  const databaseConnectTimeoutSeconds = integer('DATABASE_CONNECT_TIMEOUT', 60, 0, 3600);
  const shutdownDrainSeconds = integer('SHUTDOWN_DRAIN_SECONDS', 10, 1, 300);
  const dataDirRaw = value('DATA_DIR') ?? './.data';
  const dataDir = isAbsolute(dataDirRaw) ? dataDirRaw : resolve(dataDirRaw);

  const appUrl = (appBase(url('APP_URL', ['http:', 'https:']), problems) ?? `http://localhost:${port}`).replace(/\/+$/, '');
  const links = Object.freeze({
    resetPassword: linkTarget('RESET_PASSWORD_URL', value('RESET_PASSWORD_URL'), `${appUrl}/reset-password`, isProduction, problems),
    lockdown: linkTarget('LOCKDOWN_URL', value('LOCKDOWN_URL'), `${appUrl}/lockdown`, isProduction, problems),
  });
  const tokenLifetimes = Object.freeze({
    accessTokenSeconds: integer('ACCESS_TOKEN_TTL', 900, 60, 86_400),
    refreshTokenSeconds: integer('REFRESH_TOKEN_TTL', 2_592_000, 3600, 31_536_000),
    refreshReuseIntervalSeconds: integer('REFRESH_TOKEN_REUSE_INTERVAL', 10, 0, 300),
  });
  // The allowance is for requests racing one refresh, never a second lifetime for a stolen token.
  if (tokenLifetimes.refreshReuseIntervalSeconds > tokenLifetimes.accessTokenSeconds) {
    problems.push(`REFRESH_TOKEN_REUSE_INTERVAL (${tokenLifetimes.refreshReuseIntervalSeconds}) must not be longer than ACCESS_TOKEN_TTL (${tokenLifetimes.accessTokenSeconds})`);
  }
  // A refresh token that dies before the access token it renews would sign clients out early.
  if (tokenLifetimes.refreshTokenSeconds < tokenLifetimes.accessTokenSeconds) {
    problems.push(`REFRESH_TOKEN_TTL (${tokenLifetimes.refreshTokenSeconds}) must not be shorter than ACCESS_TOKEN_TTL (${tokenLifetimes.accessTokenSeconds})`);
  }
  const corsOrigins = allowedOrigins(value('CORS_ORIGINS'), isProduction, problems);
  const smtpUrl = url('SMTP_URL', ['smtp:', 'smtps:']);
  const mailFrom = value('MAIL_FROM') ?? 'no-reply@localhost';
  if (!/^[^\s@<>]+@[^\s@<>]+$/.test(mailFrom) && !/^[^<>\r\n]*<[^\s@<>]+@[^\s@<>]+>$/.test(mailFrom)) {
    problems.push(`MAIL_FROM must be an email address, optionally as "Name <address>"`);
  }
  const bcryptCost = integer('BCRYPT_COST', 12, 4, 15);

  const adminEmail = value('ADMIN_EMAIL');
  const adminPassword = env.ADMIN_PASSWORD === '' ? undefined : env.ADMIN_PASSWORD;
  if ((adminEmail === undefined) !== (adminPassword === undefined)) {
    problems.push('ADMIN_EMAIL and ADMIN_PASSWORD must be set together');
  } else if (adminEmail === undefined && value('ADMIN_USERNAME') !== undefined) {
    problems.push('ADMIN_USERNAME is set without ADMIN_EMAIL and ADMIN_PASSWORD, which it goes with');
  }
  const admin =
    adminEmail !== undefined && adminPassword !== undefined
      ? { email: adminEmail, password: adminPassword, username: value('ADMIN_USERNAME') ?? 'admin' }
      : undefined;

  const logLevelRaw = value('LOG_LEVEL') ?? 'info';
  const logLevel = (LOG_LEVELS as readonly string[]).includes(logLevelRaw) ? (logLevelRaw as LogLevel) : 'info';
  if (logLevel !== logLevelRaw) problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);

  const trustProxyHops = integer('TRUST_PROXY', 0, 0, 10);
  const redisUrl = url('REDIS_URL', ['redis:', 'rediss:']);

  const scaleRaw = value('RATE_LIMIT_SCALE');
  let rateLimitScale = 1;
  if (scaleRaw !== undefined) {
    rateLimitScale = Number(scaleRaw);
    if (!/^\d+(\.\d+)?$/.test(scaleRaw) || rateLimitScale > 1000) {
      problems.push(`RATE_LIMIT_SCALE must be a number from 0 to 1000 (got "${scaleRaw}")`);
      rateLimitScale = 1;
    }
  }

  const queryLimits = Object.freeze({
    maxDepth: integer('GRAPHQL_MAX_DEPTH', 8, 1, 100),
    maxAliases: integer('GRAPHQL_MAX_ALIASES', 15, 0, 1000),
    maxDirectives: integer('GRAPHQL_MAX_DIRECTIVES', 50, 0, 1000),
    maxTokens: integer('GRAPHQL_MAX_TOKENS', 2000, 100, 100_000),
    maxCost: integer('GRAPHQL_MAX_COST', 10_000, 10, 1_000_000),
  });

  const httpMaxConnections = integer('HTTP_MAX_CONNECTIONS', 1000, 1, 1_000_000);
  const retention = Object.freeze({
    sessionDays: integer('SESSION_RETENTION_DAYS', 30, 1, 3650),
    auditDays: integer('AUDIT_RETENTION_DAYS', 400, 1, 36_500),
    intervalSeconds: integer('MAINTENANCE_INTERVAL_SECONDS', 3600, 1, 604_800),
  });
  const webhooks = Object.freeze({ httpsOnly: isProduction, allowedHosts: webhookAllowedHosts(value('WEBHOOK_ALLOWED_HOSTS'), problems) });

  // The secrets are not trimmed: every byte of them is key material.
  const jwtSecretRaw = env.JWT_SECRET === '' ? undefined : env.JWT_SECRET;
  if (jwtSecretRaw !== undefined && Buffer.byteLength(jwtSecretRaw) < MIN_JWT_SECRET_BYTES) {
    problems.push(`JWT_SECRET must be at least ${MIN_JWT_SECRET_BYTES} bytes long`);
  }
  const hmacSecret = env.HMAC_SECRET === '' ? undefined : env.HMAC_SECRET;
  if (hmacSecret !== undefined && Buffer.byteLength(hmacSecret) < MIN_JWT_SECRET_BYTES) {
    problems.push(`HMAC_SECRET must be at least ${MIN_JWT_SECRET_BYTES} bytes long`);
  }
  // JWT_SECRET signs HS256 tokens, and is the key material HMAC_SECRET defaults to: with EdDSA and
  // HMAC_SECRET set, nothing uses it.
  const signsWithEdDSA = value('JWT_ALGORITHM') === 'EdDSA';
  if (jwtSecretRaw === undefined && isProduction) {
    if (!signsWithEdDSA) problems.push(`JWT_SECRET is required in production (at least ${MIN_JWT_SECRET_BYTES} random bytes)`);
    else if (hmacSecret === undefined) {
      problems.push(
        `JWT_SECRET or HMAC_SECRET is required in production with JWT_ALGORITHM=EdDSA (at least ${MIN_JWT_SECRET_BYTES} random bytes): the password pepper and other keys are derived from HMAC_SECRET, or from JWT_SECRET when HMAC_SECRET is unset; set HMAC_SECRET`,
      );
    }
  }
  // Outside production a missing JWT_SECRET is generated into DATA_DIR; in production it never is.
  const generatesJwtSecret = jwtSecretRaw === undefined && !isProduction;

  const generatesSigningKey = signsWithEdDSA && value('JWT_PRIVATE_KEY') === undefined;
  // The folder is needed for the embedded database, a generated secret or key, or mail kept as files.
  if (!databaseUrl || generatesJwtSecret || generatesSigningKey || !smtpUrl) {
    const unusable = unusableDirectory(dataDir);
    if (unusable) problems.push(`DATA_DIR (${dataDir}) ${unusable}`);
  }

  const jwtSigning = parseJwtSigning(
    { algorithm: value('JWT_ALGORITHM'), privateKey: value('JWT_PRIVATE_KEY'), verifyKeys: value('JWT_VERIFY_KEYS') },
    { isProduction, dataDir },
    problems,
  );

  if (problems.length > 0) throw new ConfigError(problems);

  return Object.freeze({
    nodeEnv,
    isProduction,
    port,
    host,
    databaseUrl,
    databaseConnectTimeoutSeconds,
    shutdownDrainSeconds,
    databaseReplicaUrls,
    dataDir,
    // Unset in production only where nothing uses it (EdDSA with HMAC_SECRET): random, kept nowhere.
    jwtSecret: jwtSecretRaw ?? (generatesJwtSecret ? developmentJwtSecret(dataDir) : randomBytes(48).toString('base64url')),
    jwtSecretGenerated: generatesJwtSecret,
    jwtSigning,
    hmacSecret,
    appUrl,
    links,
    tokenLifetimes,
    corsOrigins,
    smtpUrl,
    mailFrom,
    bcryptCost,
    admin: admin && Object.freeze(admin),
    logLevel,
    trustProxyHops,
    rateLimitScale,
    redisUrl,
    queryLimits,
    httpMaxConnections,
    retention,
    webhooks,
  });
}

/** The entries of a comma-separated list variable, trimmed, without empty ones. */
function commaSeparated(raw: string | undefined): string[] {
  return (raw ?? '')
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);
}

/**
 * The host of `http://<host>/` as the WHATWG URL parser writes it, IPv6 without brackets, or
 * `undefined` when the parser refuses it. The parser lower-cases names and rewrites every IP address
 * to one form (`127.1` → `127.0.0.1`, `[0:0:0:0:0:0:0:1]` → `::1`, `::ffff:127.0.0.1` → `::ffff:7f00:1`):
 * a host put through it compares equal to the host of any URL that names the same one.
 */
export function urlHostname(host: string): string | undefined {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  try {
    return new URL(`http://${bare.includes(':') ? `[${bare}]` : bare}/`).hostname.replace(/^\[(.*)\]$/, '$1');
  } catch {
    return undefined;
  }
}

/**
 * `WEBHOOK_ALLOWED_HOSTS`: comma-separated host names or IP addresses, compared with the host of an
 * endpoint URL as written there (case-insensitive; IPv6 with or without brackets). Each entry is
 * kept as the URL parser writes a host ({@link urlHostname}), so an IP address matches however
 * either side spells it. Names are letters, digits, dots, hyphens and underscores (Docker Compose
 * service names such as `hook_receiver`).
 */
function webhookAllowedHosts(raw: string | undefined, problems: string[]): readonly string[] {
  const hosts: string[] = [];
  for (const entry of commaSeparated(raw).map((part) => part.toLowerCase())) {
    const host = entry.replace(/^\[(.*)\]$/, '$1');
    const written = /^[a-z0-9._-]+$/.test(host) || (host.includes(':') && /^[0-9a-f:.]+$/.test(host));
    const parsed = written ? urlHostname(host) : undefined;
    if (parsed !== undefined) hosts.push(parsed);
    else if (written) problems.push(`WEBHOOK_ALLOWED_HOSTS entry "${entry}" is not a valid host name or IP address`);
    else problems.push(`WEBHOOK_ALLOWED_HOSTS entry "${entry}" must be a host name or an IP address (no scheme, port or path)`);
  }
  return Object.freeze(hosts);
}

/**
 * `APP_URL`, already checked to be an `http(s)://` URL: the tokens' issuer and audience, and the
 * base the default link targets are built on (`$APP_URL/reset-password?token=…`), so an origin and
 * an optional path only. A `#fragment` or `?query` would end up before the path appended to it, and
 * a `user:password@` in every issuer and email link. `undefined` (the default is used) when refused.
 */
function appBase(raw: string | undefined, problems: string[]): string | undefined {
  if (raw === undefined) return undefined;
  const parsed = new URL(raw);
  const userInfo = parsed.username !== '' || parsed.password !== '' || /^[^:]+:\/*[^/?#]*@/.test(raw);
  if (!userInfo && parsed.search === '' && parsed.hash === '' && !/[?#]/.test(raw)) return raw;
  problems.push(
    'APP_URL must be an origin with an optional path, such as https://auth.example.com or https://example.com/auth, without a ?query, #fragment or user:password@ (it is the access tokens\' issuer and audience, and the base of the links in emails)',
  );
  return undefined;
}

/**
 * `DATABASE_REPLICA_URLS`: comma-separated `postgresql://…` URLs, each checked like `DATABASE_URL`
 * (problems name the entry by position, never by its text, which may hold a password). Replicas
 * only make sense beside a real primary: the embedded database belongs to one process.
 */
function replicaUrls(raw: string | undefined, hasPrimary: boolean, problems: string[]): readonly string[] {
  if (raw === undefined) return Object.freeze([]);
  const entries = commaSeparated(raw);
  if (!hasPrimary) {
    problems.push('DATABASE_REPLICA_URLS needs DATABASE_URL: read replicas replicate a PostgreSQL server, not the embedded database');
  }
  const urls: string[] = [];
  entries.forEach((entry, index) => {
    try {
      const parsed = new URL(entry);
      if (parsed.protocol !== 'postgresql:' && parsed.protocol !== 'postgres:') throw new Error('protocol');
      urls.push(entry);
    } catch {
      problems.push(`DATABASE_REPLICA_URLS entry ${index + 1} must be a postgresql://… or postgres://… URL`);
    }
  });
  return Object.freeze(urls);
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

function plainHttpBeyondLoopback(url: URL): boolean {
  return url.protocol === 'http:' && !LOOPBACK_HOSTS.has(url.hostname);
}

/** Schemes that run script or read local files when a link is opened: never a link target. */
const UNSAFE_LINK_SCHEMES = new Set(['javascript:', 'data:', 'vbscript:', 'file:', 'blob:']);

/**
 * `RESET_PASSWORD_URL` / `LOCKDOWN_URL`: an absolute URL of any scheme a mail client may open (a
 * frontend route, or an app's deep link such as `myapp://reset`), without a fragment, which would
 * swallow the `?token=` added after it; in production not plain `http:` beyond loopback.
 */
function linkTarget(name: string, raw: string | undefined, fallback: string, isProduction: boolean, problems: string[]): string {
  if (raw === undefined) {
    if (isProduction && plainHttpBeyondLoopback(new URL(fallback))) problems.push(`${name} (by default under APP_URL) must use https:// in production (its links carry tokens): set APP_URL to the https:// address clients use`);
    return fallback;
  }
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    problems.push(`${name} must be an absolute URL such as https://app.example.com/reset or myapp://reset (got "${raw}")`);
    return fallback;
  }
  if (UNSAFE_LINK_SCHEMES.has(parsed.protocol)) {
    problems.push(`${name} must not use the ${parsed.protocol} scheme`);
  } else if (isProduction && plainHttpBeyondLoopback(parsed)) {
    problems.push(`${name} must use https:// in production (its links carry tokens)`);
  } else if (parsed.hash !== '' || raw.includes('#')) {
    problems.push(`${name} must not have a #fragment (the token is added as a query parameter)`);
  } else if (/[\s<>"]/u.test(raw)) {
    problems.push(`${name} must not contain spaces, quotes or angle brackets`);
  }
  return raw;
}

/**
 * `CORS_ORIGINS`: comma-separated origins (`https://app.example.com`, `http://localhost:5173`),
 * each a scheme, host and optional port with nothing after it, compared exactly as browsers send them
 * (no wildcards).
 * In production only `https:` (or loopback) origins: a page served over plain HTTP can be rewritten
 * by anyone on the network, and these origins may use the refresh-token cookie.
 */
function allowedOrigins(raw: string | undefined, isProduction: boolean, problems: string[]): readonly string[] | undefined {
  if (raw === undefined) return undefined;
  const origins: string[] = [];
  for (const entry of commaSeparated(raw)) {
    // The URL parser takes `*` as part of a host name: stored, it would be an origin no browser sends.
    if (entry.includes('*')) {
      problems.push(`CORS_ORIGINS entry "${entry}" has a wildcard: CORS_ORIGINS lists exact origins (name each one, e.g. https://app.example.com,https://admin.example.com; leave it unset to allow any origin without credentials)`);
      continue;
    }
    let origin: string | undefined;
    try {
      const parsed = new URL(entry);
      const bare = parsed.pathname === '/' && parsed.search === '' && parsed.hash === '' && parsed.username === '' && parsed.password === '';
      if ((parsed.protocol === 'http:' || parsed.protocol === 'https:') && bare && !entry.endsWith('/')) origin = parsed.origin;
    } catch {
      // reported below
    }
    if (origin === undefined) problems.push(`CORS_ORIGINS entry "${entry}" must be an origin such as https://app.example.com (scheme, host, optional port; no path)`);
    else if (isProduction && origin.startsWith('http:') && !LOOPBACK_HOSTS.has(new URL(origin).hostname)) problems.push(`CORS_ORIGINS entry "${entry}" must use https:// in production`);
    else origins.push(origin);
  }
  if (origins.length === 0 && !problems.some((problem) => problem.startsWith('CORS_ORIGINS'))) {
    problems.push('CORS_ORIGINS must list at least one origin (leave it unset to allow any origin without credentials)');
  }
  return Object.freeze(origins);
}

/**
 * Why `path` cannot serve as the data folder (created when missing), or `undefined` when it can:
 * it must be a directory this process may write to.
 */
function unusableDirectory(path: string): string | undefined {
  try {
    createDirectories(path);
    if (!statSync(path).isDirectory()) return 'is not a directory (a file is in the way)';
    accessSync(path, constants.W_OK | constants.X_OK);
    return undefined;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' || code === 'ENOTDIR') return 'is not a directory (a file is in the way)';
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return 'is not writable by this process';
    // A parent that exists, yet "no such file" for the folder below it: a file system (procfs,
    // sysfs) where no folder can be made. The error names the level that failed, whose parent exists.
    if (code === 'ENOENT') return `cannot be created: the file system under ${dirname((error as NodeJS.ErrnoException).path ?? resolve(path))} accepts no new folders`;
    return `cannot be used: ${(error as Error).message}`;
  }
}

/**
 * `mkdir -p`, one level at a time. Node's recursive mkdirSync loops forever where the kernel answers
 * ENOENT for a parent that exists (`/proc/sys/x`); here that ENOENT is thrown.
 */
function createDirectories(path: string): void {
  const missing: string[] = [];
  for (let current = resolve(path); !existsSync(current); current = dirname(current)) {
    missing.unshift(current);
    if (dirname(current) === current) break;
  }
  for (const directory of missing) {
    try {
      mkdirSync(directory);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error; // created meanwhile: fine
    }
  }
}

/**
 * Outside production a missing secret is generated once and kept in `DATA_DIR`, so tokens survive
 * restarts without anyone having to invent a secret to try the server.
 */
function developmentJwtSecret(dataDir: string): string {
  const path = join(dataDir, JWT_SECRET_FILE);
  if (existsSync(path)) {
    const kept = readFileSync(path, 'utf8').trim();
    if (Buffer.byteLength(kept) >= MIN_JWT_SECRET_BYTES) return kept;
  }
  mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(48).toString('base64url');
  writeFileSync(path, `${secret}\n`, { mode: 0o600 });
  return secret;
}

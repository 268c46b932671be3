import type { MikroORM } from '@mikro-orm/postgresql';
import { Redis } from 'ioredis';
import { type RateLimiterAbstract, RateLimiterPostgres, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { Config } from './config/config.js';
import { sendNamed, type Statement } from './db/named-statements.js';
import { OUTAGE_RETRY_AFTER_SECONDS, OutageLog } from './db/outage.js';
import { STATEMENT_TIMEOUT_MS } from './db/statement-timeout.js';
import { RateLimitedError, ServiceUnavailableError } from './errors.js';
import { createLogger, type Logger } from './logger.js';

/** Every limit the server applies, per window. Each is multiplied by `RATE_LIMIT_SCALE`. */
export const LIMITS = {
  /** Sign-in attempts from one IP address. */
  loginPerIp: { points: 50, durationSeconds: 15 * 60 },
  /** Sign-in attempts naming one email or username (existing or not), without a valid device token. */
  loginPerIdentifier: { points: 10, durationSeconds: 15 * 60 },
  /**
   * Sign-in attempts presenting one device's valid device token, and re-authentications of one
   * signed-in device session (a success starts over).
   */
  loginPerDevice: { points: 10, durationSeconds: 60 * 60 },
  /**
   * Sign-in attempts of an account's former devices together (tokens from before its last reset or
   * change of the password): beyond it they sign in like any other client, in the account's backoff.
   */
  formerDevicesPerAccount: { points: 100, durationSeconds: 7 * 24 * 60 * 60 },
  registerPerIp: { points: 10, durationSeconds: 60 * 60 },
  /** forgotPassword and sendVerificationEmail requests from one IP address. */
  mailRequestsPerIp: { points: 20, durationSeconds: 60 * 60 },
  /** forgotPassword requests naming one identifier; beyond it requests are dropped silently. */
  mailRequestsPerIdentifier: { points: 5, durationSeconds: 60 * 60 },
  /** verifyEmail and resetPassword attempts from one IP address. */
  codeAttemptsPerIp: { points: 30, durationSeconds: 15 * 60 },
  /** verifyEmail and resetPassword attempts for one account. */
  codeAttemptsPerAccount: { points: 10, durationSeconds: 15 * 60 },
  /**
   * Tries the account's own devices make outside its backoff — second-factor codes of sign-ins from
   * trusted devices, and every re-authentication of a signed-in session — under its current
   * credentials (the key names their version: a reset or change starts over) since one of them last
   * succeeded: NIST SP 800-63B §5.2.2's cap of 100 consecutive failures for the tries strangers
   * cannot reach. The window only lets a forgotten count go after a year.
   */
  ownDeviceTriesPerAccount: { points: 100, durationSeconds: 365 * 24 * 60 * 60 },
} as const;

export type LimitName = keyof typeof LIMITS;

/**
 * rate-limiter-flexible's PostgreSQL limiter, its statements named while the database keeps them
 * (see named-statements.ts): the per-IP count of every sign-in then costs PostgreSQL less. The
 * library's names are fixed and its texts the same in every instance.
 */
class NamedRateLimiterPostgres extends RateLimiterPostgres {
  // The library's one place that runs a statement (rate-limiter-flexible 11, lib/RateLimiterPostgres.js).
  _query(query: Statement): Promise<unknown> {
    const run = (RateLimiterPostgres.prototype as unknown as { _query(query: Statement): Promise<unknown> })._query;
    return query.name ? sendNamed(query, (statement) => run.call(this, statement)) : run.call(this, query);
  }
}

/** The table rate-limiter-flexible keeps its counters in (created by a migration). */
export const RATE_LIMIT_TABLE = 'rate_limits';

/** Every failure of Redis is an outage of the counters kept there. */
const REDIS_OUTAGE = { name: 'Redis', matches: () => true };

/**
 * The one rate limiter (rate-limiter-flexible). Counters live in PostgreSQL by default — shared by
 * every instance on the database — or in Redis with `REDIS_URL`. Services call it once per field
 * executed, so fifty aliased `login` fields in one document count fifty.
 *
 * Expired rows of the PostgreSQL table are purged by maintenance (src/maintenance.ts), in batches
 * and by one instance at a time; the library's own purge (one unbatched DELETE every 5 minutes on
 * every instance) stays off. While Redis cannot be reached, whatever needs a counter answers
 * SERVICE_UNAVAILABLE (HTTP 503), like a request that needs an unreachable database, and the
 * outage is logged once per interval ({@link OutageLog}) however many requests or reconnection
 * attempts fail.
 */
export class RateLimits {
  private constructor(
    private readonly limiters: ReadonlyMap<LimitName, RateLimiterAbstract>,
    private readonly close: () => Promise<void>,
    /** With Redis: where its failures are logged; they answer SERVICE_UNAVAILABLE. */
    private readonly redisOutages?: OutageLog,
  ) {}

  /**
   * Builds the limiters; with `RATE_LIMIT_SCALE=0` every limit is off. A Redis outage is logged
   * through `logger` (by default a logger of its own, configured as the app's).
   */
  static create(config: Pick<Config, 'rateLimitScale' | 'redisUrl'> & Partial<Pick<Config, 'logLevel'>>, orm: MikroORM, logger?: Logger): RateLimits {
    if (config.rateLimitScale === 0) return new RateLimits(new Map(), async () => {});
    let redis: Redis | undefined;
    let redisOutages: OutageLog | undefined;
    if (config.redisUrl) {
      redisOutages = new OutageLog((logger ?? createLogger({ logLevel: config.logLevel ?? 'info' })).child({ component: 'rate-limits' }), undefined, REDIS_OUTAGE);
      // No offline queue and a bound on every command: without Redis a request fails at once, or
      // after the time a database statement may take, instead of waiting for a reconnection.
      redis = new Redis(config.redisUrl, { enableOfflineQueue: false, lazyConnect: false, commandTimeout: STATEMENT_TIMEOUT_MS });
      // The client reconnects by itself; each failed attempt is an `error` event, which unheard
      // would be printed to stderr with its stack.
      const outages = redisOutages;
      redis.on('error', (error: unknown) => outages.record(error));
    }
    const knex = orm.em.getConnection().getKnex();
    const limiters = new Map<LimitName, RateLimiterAbstract>();
    for (const [name, limit] of Object.entries(LIMITS) as Array<[LimitName, (typeof LIMITS)[LimitName]]>) {
      const options = { keyPrefix: name, points: Math.max(1, Math.round(limit.points * config.rateLimitScale)), duration: limit.durationSeconds };
      limiters.set(
        name,
        redis
          ? new RateLimiterRedis({ ...options, storeClient: redis })
          : new NamedRateLimiterPostgres({ ...options, storeClient: knex, storeType: 'knex', tableName: RATE_LIMIT_TABLE, tableCreated: true, clearExpiredByTimeout: false }),
      );
    }
    return new RateLimits(
      limiters,
      async () => {
        redis?.disconnect();
      },
      redisOutages,
    );
  }

  /**
   * Runs one call of a limiter. A failure of Redis is logged as an outage and answered
   * SERVICE_UNAVAILABLE; PostgreSQL's failures go on as they are (the error formatter knows them).
   */
  private async store<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      if (error instanceof RateLimiterRes || !this.redisOutages) throw error;
      this.redisOutages.record(error);
      throw new ServiceUnavailableError(OUTAGE_RETRY_AFTER_SECONDS);
    }
  }

  /** Counts one attempt under `name` for `key`; RATE_LIMITED (with `retryAfter`) beyond the limit. */
  async consume(name: LimitName, key: string | null): Promise<void> {
    const refused = await this.refusal(name, key);
    if (refused) throw refused;
  }

  /** Counts one attempt; beyond the limit, the RATE_LIMITED error to throw (for callers that record it first). */
  async refusal(name: LimitName, key: string | null): Promise<RateLimitedError | null> {
    const refused = await this.attempt(name, key);
    return refused ? refusalAfter(refused.msBeforeNext) : null;
  }

  /** Counts one attempt; `false` beyond the limit (for limits that must stay silent). */
  async allows(name: LimitName, key: string | null): Promise<boolean> {
    return (await this.attempt(name, key)) === null;
  }

  /** The limiter's refusal, or `null` when the attempt is within the limit (or there is no key). */
  private async attempt(name: LimitName, key: string | null): Promise<RateLimiterRes | null> {
    const limiter = this.limiters.get(name);
    if (!limiter || key === null) return null;
    try {
      await this.store(() => limiter.consume(key));
      return null;
    } catch (rejection) {
      if (rejection instanceof RateLimiterRes) return rejection;
      throw rejection;
    }
  }

  /**
   * How many attempts `name` has counted for `key` in the current window, without counting one,
   * and the RATE_LIMITED error once they reach the limit: for limits that count failures after the
   * fact ({@link count}) because something else already stops parallel attempts.
   */
  async peek(name: LimitName, key: string): Promise<{ counted: number; refusal: RateLimitedError | null }> {
    const limiter = this.limiters.get(name);
    const state = limiter ? await this.store(() => limiter.get(key)) : null;
    if (!limiter || !state) return { counted: 0, refusal: null };
    const refusal = state.consumedPoints >= limiter.points ? refusalAfter(state.msBeforeNext) : null;
    return { counted: state.consumedPoints, refusal };
  }

  /** Counts one attempt after the fact (see {@link peek}); never refuses. */
  async count(name: LimitName, key: string): Promise<void> {
    const limiter = this.limiters.get(name);
    if (limiter) await this.store(() => limiter.penalty(key, 1));
  }

  /**
   * Gives back one attempt counted under `name` for `key` (work it was counted for did not happen).
   * Not to a window that has ended since: that count is gone already, and a new window must not start
   * below zero.
   */
  async refund(name: LimitName, key: string): Promise<void> {
    const limiter = this.limiters.get(name);
    if (!limiter) return;
    const state = await this.store(() => limiter.get(key));
    if (state && state.consumedPoints > 0) await this.store(() => limiter.reward(key, 1));
  }

  /**
   * Runs `work` within the limit `name` of `key`, counting it only when it did what it is counted
   * for (`work` resolves `true`): beyond the limit `work` does not run and this resolves `false`; a
   * `work` that resolves `false` or throws gets its point back (should the refund fail, the point
   * stays counted). The limiter's statements need a connection of their own: call it outside a
   * transaction.
   */
  async countedIf(name: LimitName, key: string, work: () => Promise<boolean>): Promise<boolean> {
    if (!(await this.allows(name, key))) return false;
    let done = false;
    try {
      done = await work();
      return done;
    } finally {
      if (!done) await this.refund(name, key).catch(() => {});
    }
  }

  /** Forgets the counts of `key` (e.g. a successful sign-in clears its identifier's failures). */
  async reset(name: LimitName, key: string): Promise<void> {
    const limiter = this.limiters.get(name);
    if (limiter) await this.store(() => limiter.delete(key));
  }

  /** Releases the Redis connection, if any. */
  async stop(): Promise<void> {
    await this.close();
  }
}

/** RATE_LIMITED with the whole seconds until the window frees a point (at least one). */
function refusalAfter(msBeforeNext: number): RateLimitedError {
  return new RateLimitedError(Math.max(1, Math.ceil(msBeforeNext / 1000)));
}

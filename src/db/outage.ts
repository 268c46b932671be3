import { ConnectionException } from '@mikro-orm/core';
import type { Logger } from '../logger.js';

/** What a client is told to wait before retrying while the database is unreachable (seconds). */
export const OUTAGE_RETRY_AFTER_SECONDS = 5;

/** Socket-level failures: the server is down, restarting, or the network between is. */
const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
/** SQLSTATE class 08 (connection exception) and 57P01–57P03 (shutting down, crashed, not accepting connections yet). */
const SQLSTATE = /^(08|57P0[123])/;
/** Messages of pg, knex and the embedded socket when the connection went away or never came. */
const MESSAGES = /Connection terminated|Connection ended unexpectedly|Timeout acquiring a connection|terminating connection due to|the database system is (starting up|shutting down)|Client has encountered a connection error|connect ECONNREFUSED|socket hang up/i;

/**
 * Whether `error` (or what caused it) says the database cannot be reached, as opposed to a query
 * that failed: such requests answer SERVICE_UNAVAILABLE (HTTP 503) rather than an internal error.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (let cause = error, hops = 0; cause && hops < 10; hops += 1) {
    if (cause instanceof ConnectionException) return true;
    if (cause instanceof Error) {
      const code = (cause as { code?: unknown }).code;
      if (typeof code === 'string' && (SOCKET_CODES.has(code) || SQLSTATE.test(code))) return true;
      if (MESSAGES.test(cause.message)) return true;
    }
    cause = (cause as { originalError?: unknown; cause?: unknown }).originalError ?? (cause as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * Logs a database outage once per interval with a count, instead of once per refused request: the
 * first refusal is logged at once with its cause, later ones are summed up when the interval ends.
 */
export class OutageLog {
  private refused = 0;
  private since = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly intervalMs = 10_000,
  ) {}

  /**
   * Counts `error` when it says the database is unreachable (see {@link isDatabaseUnavailable}),
   * and says whether it did: anything else is the caller's to log.
   */
  record(error: unknown): boolean {
    if (!isDatabaseUnavailable(error)) return false;
    if (this.timer === undefined) {
      this.logger.error({ err: error }, 'database unreachable: answering SERVICE_UNAVAILABLE');
      this.since = Date.now();
      this.timer = setTimeout(() => this.flush(), this.intervalMs);
      this.timer.unref();
    } else {
      this.refused += 1;
    }
    return true;
  }

  private flush(): void {
    this.timer = undefined;
    if (this.refused === 0) return;
    this.logger.error({ refused: this.refused, seconds: Math.round((Date.now() - this.since) / 1000) }, 'database still unreachable: requests answered SERVICE_UNAVAILABLE');
    this.refused = 0;
  }
}

import { ConnectionException } from '@mikro-orm/core';
import type { Logger } from '../logger.js';

/** What a client is told to wait before retrying while the database is unreachable (seconds). */
export const OUTAGE_RETRY_AFTER_SECONDS = 5;

/** Socket-level failures: the server is down, restarting, or the network between is. */
const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
/**
 * SQLSTATEs that say the database cannot do the work now, whatever the statement: class 08
 * (connection exception), class 53 (insufficient resources: too many connections, disk full, out of
 * memory), 57014 (a statement cancelled, as by `statement_timeout`), 55P03 (a lock not had within
 * `lock_timeout`, as the README advises setting), 57P01–57P03 (shutting down,
 * crashed, not accepting connections yet), and 25006 (a read-only transaction was asked to write:
 * the server is a standby, or the primary was made read-only, as during a failover).
 */
const SQLSTATE = /^(08|53|57014|55P03|57P0[123]|25006)/;
/**
 * Messages of pg, knex, the embedded socket and PgBouncer when the connection went away, never
 * came, or stopped answering ("timeout expired": pg gave up opening one). "Transaction query
 * already complete" is knex refusing the statements of a transaction whose `BEGIN` failed because
 * the connection was gone.
 */
const MESSAGES =
  /^timeout expired$|Connection terminated|Connection ended unexpectedly|Timeout acquiring a connection|terminating connection due to|the database system is (starting up|shutting down|in recovery mode|not yet accepting connections)|Client has encountered a connection error|Client was closed and is not queryable|Query read timeout|Transaction query already complete|connect ECONNREFUSED|socket hang up|server conn crashed|server login has been failing|pgbouncer cannot connect to server|query_wait_timeout|no more connections allowed/i;

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

/** What an {@link OutageLog} watches: which errors are the outage, and what is unreachable. */
export interface OutageKind {
  /** What is unreachable, as the log lines name it ("database", "Redis"). */
  name: string;
  /** Whether `error` is (caused by) this outage. */
  matches(error: unknown): boolean;
}

const DATABASE: OutageKind = { name: 'database', matches: isDatabaseUnavailable };

/**
 * Logs an outage once per interval with a count, instead of once per refused request: the first
 * failure is logged at once with its cause (`err`); while failures go on, each interval ends with one
 * line counting them (`failures`, over `seconds`) and naming the latest `reason`. An interval
 * without failures ends the outage; the next failure starts a new one.
 */
export class OutageLog {
  /** Failures since the last line. */
  private failures = 0;
  private reason = '';
  private since = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly intervalMs = 10_000,
    private readonly kind: OutageKind = DATABASE,
  ) {}

  /**
   * Counts `error` when it is this log's kind of outage (by default: the database is unreachable,
   * see {@link isDatabaseUnavailable}), and says whether it did: anything else is the caller's to log.
   */
  record(error: unknown): boolean {
    if (!this.kind.matches(error)) return false;
    if (this.timer === undefined) {
      this.logger.error({ err: error }, `${this.kind.name} unreachable: answering SERVICE_UNAVAILABLE`);
      this.since = Date.now();
      this.failures = 0;
      this.schedule();
    } else {
      this.failures += 1;
      this.reason = reasonOf(error);
    }
    return true;
  }

  private schedule(): void {
    this.timer = setTimeout(() => this.flush(), this.intervalMs);
    this.timer.unref();
  }

  private flush(): void {
    if (this.failures === 0) {
      this.timer = undefined;
      return;
    }
    this.logger.error(
      { failures: this.failures, seconds: Math.round((Date.now() - this.since) / 1000), reason: this.reason },
      `${this.kind.name} still unreachable: answering SERVICE_UNAVAILABLE`,
    );
    this.failures = 0;
    this.schedule();
  }
}

/** The message of `error`, without its stack: what a summary line says about the latest failure. */
function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

import { AsyncLocalStorage } from 'node:async_hooks';
import type pg from 'pg';

/**
 * How long one statement on a PostgreSQL server may go unanswered: with {@link ACQUIRE_TIMEOUT_MS},
 * what keeps an unresponsive database (a hung server, a network that drops packets, a pooler waiting
 * for a server that is gone) from holding a request longer than the contract's "SERVICE_UNAVAILABLE
 * within 2 s" (1.8 s, and the answer itself). Every statement a request sends is an indexed lookup or
 * a short write; anything that legitimately takes longer runs under {@link withStatementTimeout}.
 */
export const STATEMENT_TIMEOUT_MS = 1800;

/** How long a request waits for a connection of the pool to a PostgreSQL server (see above). */
export const ACQUIRE_TIMEOUT_MS = 1800;

/** How long opening a connection to a server may take (TCP, TLS, authentication) before it is given up. */
export const CONNECT_TIMEOUT_MS = 5000;

/** Idle connections are probed after this long without traffic (TCP keepalive), so a dead peer is noticed. */
export const KEEPALIVE_DELAY_MS = 10_000;

/** The bound of the statements sent within {@link withStatementTimeout}, where one is running. */
const bounds = new AsyncLocalStorage<number>();

/**
 * Runs `work` with another bound on each of its statements: longer for a batch that may
 * legitimately take a while (maintenance), `0` for none (migrations, which may rewrite big tables).
 */
export function withStatementTimeout<T>(ms: number, work: () => Promise<T>): Promise<T> {
  return bounds.run(ms, work);
}

/** A statement the database did not answer in time; its connection has been closed. */
export class StatementTimeoutError extends Error {
  /** An operation that timed out, as the socket layer says it: the database did not answer. */
  readonly code = 'ETIMEDOUT';

  constructor(ms: number) {
    super(`the database did not answer a statement within ${ms} ms`);
    this.name = 'StatementTimeoutError';
  }
}

type Callback = (error: Error | null, result?: unknown) => void;
type Query = (...args: unknown[]) => unknown;

/**
 * Bounds every statement sent on `client` (a connection of the ORM's pool) by `defaultMs`, or by the
 * bound of the {@link withStatementTimeout} it runs in; `0` bounds nothing. A statement still
 * unanswered by then fails with a {@link StatementTimeoutError}, and the connection is closed on
 * the spot, not left waiting for the answer: the pool drops it, and a transaction on it fails at
 * once instead of queueing its ROLLBACK behind the lost statement. (pg's own `query_timeout` fails
 * the statement but keeps the connection busy with it.)
 */
export function boundStatements(client: pg.Client, defaultMs: number): void {
  // The class's method as it is at the time of the call (instrumentation may wrap it later).
  const inherited = () => (Object.getPrototypeOf(client) as { query: Query }).query;
  const socket = () => (client as unknown as { connection: { stream: { destroy(error: Error): void } } }).connection.stream;
  (client as unknown as { query: Query }).query = function (this: pg.Client, ...args: unknown[]): unknown {
    const send = inherited();
    const ms = bounds.getStore() ?? defaultMs;
    // Submittables (cursors, streams) manage their own life; nothing here sends one.
    if (ms <= 0 || typeof (args[0] as { submit?: unknown } | null)?.submit === 'function') return send.apply(this, args);
    const timer = setTimeout(() => socket().destroy(new StatementTimeoutError(ms)), ms);
    const settle = () => clearTimeout(timer);
    const last = args.length - 1;
    try {
      if (typeof args[last] === 'function') {
        const callback = args[last] as Callback;
        args[last] = (error: Error | null, result?: unknown) => {
          settle();
          callback(error, result);
        };
        return send.apply(this, args);
      }
      const result = send.apply(this, args) as Promise<unknown>;
      result.then(settle, settle);
      return result;
    } catch (error) {
      settle();
      throw error;
    }
  };
}

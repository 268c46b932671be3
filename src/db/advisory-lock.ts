import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { CONNECT_TIMEOUT_MS, KEEPALIVE_DELAY_MS, STATEMENT_TIMEOUT_MS } from './statement-timeout.js';

/** Keys of the application's PostgreSQL advisory locks: any constants, the same in every instance. */
export const ADVISORY_LOCKS = {
  /** Held while migrations run at start-up. */
  migrations: 7_216_004_311,
} as const;

/** How often a `wait` for a lock held elsewhere tries again. */
const RETRY_MS = 250;

/**
 * Runs `work` while holding the advisory lock `key`, on a connection of its own to `clientUrl`
 * (the lock belongs to that connection, so it cannot come from the pool). `wait` tries again until
 * the holder is done; `try` gives up at once and resolves `null` without running `work`.
 *
 * Built to work through a pooler in transaction mode (PgBouncer) as well as directly:
 * - The lock is transaction-level, held by a transaction that stays open while `work` runs. A
 *   session-level lock would not survive the pooler, which hands the server connection to another
 *   client between transactions: that client would "hold" the lock too, and the lock would outlive
 *   its holder. An open transaction keeps its server connection; ending it, or losing the
 *   connection, releases the lock.
 * - Waiting holds no connection: each try is a transaction that ends at once when the lock is
 *   taken, so waiters cannot use up the pooler's server connections that the holder's `work`
 *   needs.
 */
export async function withAdvisoryLock<T>(clientUrl: string, key: number, mode: 'wait' | 'try', work: () => Promise<T>): Promise<T | null> {
  // Its statements are short (the lock is held by an idle open transaction), and bounded like a
  // request's: a database that stops answering fails start-up instead of hanging it.
  const client = new pg.Client({
    connectionString: clientUrl,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    query_timeout: STATEMENT_TIMEOUT_MS,
    keepAlive: true,
    keepAliveInitialDelayMillis: KEEPALIVE_DELAY_MS,
  });
  client.on('error', () => {}); // a connection dropped while working surfaces through `work` or `end`
  await client.connect();
  try {
    for (;;) {
      await client.query('begin');
      // The lock's transaction sits idle while `work` runs on other connections: a server that ends
      // idle transactions (idle_in_transaction_session_timeout) would release the lock under it.
      await client.query('set local idle_in_transaction_session_timeout = 0');
      const { rows } = await client.query<{ locked: boolean }>('select pg_try_advisory_xact_lock($1) as locked', [key]);
      if (rows[0]?.locked) break;
      await client.query('rollback');
      if (mode === 'try') return null;
      await sleep(RETRY_MS);
    }
    return await work();
  } finally {
    await client.query('rollback').catch(() => {});
    await client.end().catch(() => {});
  }
}

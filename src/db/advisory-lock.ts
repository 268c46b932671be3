import pg from 'pg';

/** Keys of the application's PostgreSQL advisory locks: any constants, the same in every instance. */
export const ADVISORY_LOCKS = {
  /** Held while migrations run at start-up. */
  migrations: 7_216_004_311,
  /** Held while maintenance purges (see maintenance.ts). */
  maintenance: 7_216_004_312,
} as const;

/**
 * Runs `work` while holding the session-level advisory lock `key`, on a connection of its own to
 * `clientUrl` (the lock belongs to that session, so it cannot come from the pool). `wait` queues
 * behind another holder; `try` gives up at once and resolves `null` without running `work`.
 */
export async function withAdvisoryLock<T>(clientUrl: string, key: number, mode: 'wait' | 'try', work: () => Promise<T>): Promise<T | null> {
  const client = new pg.Client({ connectionString: clientUrl });
  client.on('error', () => {}); // a connection dropped while working surfaces through `work` or `end`
  await client.connect();
  try {
    if (mode === 'wait') {
      await client.query('select pg_advisory_lock($1)', [key]);
    } else {
      const { rows } = await client.query<{ locked: boolean }>('select pg_try_advisory_lock($1) as locked', [key]);
      if (!rows[0]?.locked) return null;
    }
    return await work();
  } finally {
    await client.end().catch(() => {});
  }
}

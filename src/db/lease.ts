import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';

/** The table of leases (created by a migration). */
export const LEASE_TABLE = 'leases';

/** Thrown by `renew` when the lease expired and another holder took it: stop working. */
export class LeaseLostError extends Error {
  constructor(name: string) {
    super(`the lease "${name}" expired and was taken over`);
  }
}

/**
 * Runs `work` while holding the lease `name`: a row of {@link LEASE_TABLE} that at most one holder
 * has until it expires, `ttlSeconds` after it was taken or last renewed (`renew`, which `work` calls
 * between steps). `null`, without running `work`, while another holder has it.
 *
 * Every statement is a transaction of its own and no connection is held in between, so it works
 * the same directly and through a pooler in transaction mode (PgBouncer), where a session-level
 * advisory lock leaks and a transaction-level one ties up a server connection for the whole run.
 * A holder that dies without releasing blocks the others until the lease expires.
 */
export async function withLease<T>(em: EntityManager, name: string, ttlSeconds: number, work: (renew: () => Promise<void>) => Promise<T>): Promise<T | null> {
  const connection = em.getConnection();
  const holder = randomUUID();
  const taken = await connection.execute<Array<{ holder: string }>>(
    `insert into "${LEASE_TABLE}" ("name", "holder", "expires_at") values (?, ?, now() + ? * interval '1 second')
       on conflict ("name") do update set "holder" = excluded."holder", "expires_at" = excluded."expires_at"
       where "${LEASE_TABLE}"."expires_at" <= now()
     returning "holder"`,
    [name, holder, ttlSeconds],
  );
  if (taken.length === 0) return null;
  const renew = async () => {
    const renewed = await connection.execute<{ affectedRows: number }>(
      `update "${LEASE_TABLE}" set "expires_at" = now() + ? * interval '1 second' where "name" = ? and "holder" = ?`,
      [ttlSeconds, name, holder],
      'run',
    );
    if (renewed.affectedRows === 0) throw new LeaseLostError(name);
  };
  try {
    return await work(renew);
  } finally {
    await connection
      .execute(`update "${LEASE_TABLE}" set "expires_at" = now() where "name" = ? and "holder" = ?`, [name, holder], 'run')
      .catch(() => {}); // unreachable database: the lease expires by itself
  }
}

import type { EntityManager } from '@mikro-orm/postgresql';

/**
 * Runs one parameterized statement (`$1`, `$2`… placeholders) on a connection of the ORM's own
 * pool, skipping the ORM's query pipeline: value inlining, query logging and knex's runner. That
 * pipeline costs more than a primary-key lookup itself, so this is for the hottest statements: the
 * one that runs on every authenticated request and the one that commits a sign-in (see
 * BENCHMARKS.md); everything else goes through the ORM. Statements are unnamed (parsed each time),
 * so they also work through a pooler in transaction mode.
 *
 * Rows come back as the driver returns them (timestamps as strings): map them with the ORM's
 * result mapper. Not for use inside a transaction, whose statements must run on its connection.
 */
export async function pooledQuery<Row>(em: EntityManager, text: string, values: unknown[]): Promise<Row[]> {
  if (em.getTransactionContext()) throw new Error('pooledQuery runs outside transactions only');
  // The same knex pool the ORM uses (its size, its embedded-mode single connection, its health checks).
  const { client } = em.getConnection().getKnex();
  const connection = (await client.acquireConnection()) as { query(config: { text: string; values: unknown[] }): Promise<{ rows: Row[] }> };
  try {
    return (await connection.query({ text, values })).rows;
  } finally {
    await client.releaseConnection(connection);
  }
}

import type { EntityManager } from '@mikro-orm/postgresql';
import { sendNamed, type Statement } from './named-statements.js';

/**
 * Runs one parameterized statement (`$1`, `$2`… placeholders) on a connection of the ORM's own
 * pool, skipping the ORM's query pipeline: value inlining, query logging and knex's runner. That
 * pipeline costs more than a primary-key lookup itself, so this is for the hottest statements: the
 * one that runs on every authenticated request and the one that commits a sign-in (see
 * BENCHMARKS.md); everything else goes through the ORM. Statements are named while the database
 * keeps them (see named-statements.ts), and unnamed behind a pooler in transaction mode.
 *
 * Rows come back as the driver returns them (timestamps as strings): map them with the ORM's
 * result mapper. Not for use inside a transaction, whose statements must run on its connection.
 */
export async function pooledQuery<Row>(em: EntityManager, text: string, values: unknown[]): Promise<Row[]> {
  return withPooledConnection(em, 'pooledQuery', async (connection) => (await sendNamed({ text, values }, (statement) => connection.query<Row>(statement))).rows);
}

/**
 * Runs one statement (`?` placeholders, inlined by the ORM's platform as its own query pipeline
 * does) in a transaction that commits without waiting for the write-ahead log to reach the disk
 * (`synchronous_commit = off`), in one round trip: for bookkeeping whose loss in a database crash
 * is harmless, such as counting a sign-in attempt. PostgreSQL still writes it within a fraction of
 * a second (three `wal_writer_delay`s at most) and never reorders it after later durable commits.
 * Outside transactions only, like {@link pooledQuery}.
 */
export async function pooledQueryCommittedLazily<Row>(em: EntityManager, sql: string, params: unknown[]): Promise<Row[]> {
  const text = `begin; set local synchronous_commit = off; ${em.getPlatform().formatQuery(sql, params)}; commit`;
  return withPooledConnection(em, 'pooledQueryCommittedLazily', async (connection) => {
    try {
      // A query of several statements answers one result each: the third is the statement's.
      const results = (await connection.query<Row>(text)) as unknown as Array<{ rows: Row[] }>;
      return results[2].rows;
    } catch (error) {
      // A failed statement leaves the explicit transaction open and aborted: end it before the
      // connection goes back to the pool.
      await connection.query('rollback').catch(() => {});
      throw error;
    }
  });
}

/** A driver connection of the ORM's pool, as the functions above use it. */
interface PooledConnection {
  query<Row>(query: string | Statement): Promise<{ rows: Row[] }>;
}

/**
 * Lends `work` a connection of the same knex pool the ORM uses (its size, its embedded-mode single
 * connection, its health checks), outside any transaction, and gives it back.
 */
async function withPooledConnection<T>(em: EntityManager, caller: string, work: (connection: PooledConnection) => Promise<T>): Promise<T> {
  if (em.getTransactionContext()) throw new Error(`${caller} runs outside transactions only`);
  const { client } = em.getConnection().getKnex();
  const connection = (await client.acquireConnection()) as PooledConnection;
  try {
    return await work(connection);
  } finally {
    await client.releaseConnection(connection);
  }
}

import { LockMode } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import { isUuid } from '../../db/base.entity.js';
import { User } from './user.entity.js';

/**
 * An account whose row the transaction of `em` holds locked (`SELECT … FOR UPDATE`) until it ends.
 *
 * Every change to a user's sessions — signing in, rotating a refresh token, ending one device
 * session or all of them — every use of its one-time tokens that also changes the account (reset,
 * verification), and the deletion of the user take this lock first: the user row, then session and
 * token rows, always in that order. Two consequences, both proven by test/security/session-races.test.ts:
 *
 * - Ending sessions cannot race a rotation. Without the lock, a rotation's new row, inserted while
 *   "end every session" ran, was invisible to that UPDATE and outlived a password reset. With it,
 *   whichever comes second sees the other's committed work: the ending finds the new row, or the
 *   rotation finds its token already ended.
 * - Deletion cannot deadlock against a rotation, since both lock the user row before any session row.
 *
 * Only {@link lockAccount} and {@link newAccount} make one, so a session change without the lock
 * does not type-check.
 */
export interface LockedAccount {
  /** The transaction holding the lock; work done for the account goes through it. */
  readonly em: EntityManager;
  /** The account as read under the lock: the current password hash, status and role. */
  readonly user: User;
}

/**
 * Locks the user's row in the transaction of `tx` and reads it; `null` when there is no such user.
 * Must run inside a transaction (MikroORM refuses a lock outside one).
 */
export async function lockAccount(tx: EntityManager, userId: string): Promise<LockedAccount | null> {
  if (!isUuid(userId)) return null;
  const user = await tx.findOne(User, { id: userId }, { lockMode: LockMode.PESSIMISTIC_WRITE, refresh: true });
  return user ? { em: tx, user } : null;
}

/**
 * Runs `work` in a transaction holding the account's lock; `null` (and nothing done) when the
 * account does not exist (any more).
 */
export function withLockedAccount<T>(em: EntityManager, userId: string, work: (account: LockedAccount) => Promise<T>): Promise<T | null> {
  return em.transactional(async (tx) => {
    const account = await lockAccount(tx, userId);
    return account ? work(account) : null;
  });
}

/**
 * An account being created in `em`'s unit of work. Its row is invisible to every other transaction
 * until it commits, which serves as the lock.
 */
export function newAccount(em: EntityManager, user: User): LockedAccount {
  return { em, user };
}

import type { EntityManager } from '@mikro-orm/postgresql';
import { pooledQueryCommittedLazily } from '../../db/pooled-query.js';
import { User } from '../users/user.entity.js';
import type { IdentifierMatch } from '../users/user.service.js';

/** Failed sign-ins an account tolerates before delays start; the delay then doubles per failure. */
export const FREE_FAILED_LOGINS = 5;
/** The longest delay a stranger's guesses can impose on the owner (15 minutes). */
export const MAX_LOGIN_DELAY_SECONDS = 15 * 60;
/** After this many consecutive failures only a password reset opens the account (NIST SP 800-63B §5.2.2). */
export const FAILED_LOGINS_BEFORE_RESET = 100;

/** Why an attempt was not even checked. */
export type LoginRefusal = { retryAfterSeconds: number; resetRequired: boolean };

/** An account an attempt named, and whether that attempt was counted or refused. */
export interface Reservation {
  /** The account as read by the statement that counted the attempt (or found it waiting). */
  user: User;
  refusal: LoginRefusal | null;
}

// The exponent is bounded (2^20 s is far beyond the cap) to keep the interval arithmetic in range.
const COUNT_ATTEMPT = `"failed_login_count" = "failed_login_count" + 1,
  "login_blocked_until" = case
    when "failed_login_count" + 1 >= ${FREE_FAILED_LOGINS}
      then now() + least(${MAX_LOGIN_DELAY_SECONDS} * interval '1 second', power(2, least("failed_login_count" + 1 - ${FREE_FAILED_LOGINS}, 20)) * interval '1 second')
    else null end`;
const ADMITTED = `"failed_login_count" < ${FAILED_LOGINS_BEFORE_RESET} and ("login_blocked_until" is null or "login_blocked_until" <= now())`;

/**
 * Per-account brute-force backoff. An attempt is counted *before* the password is compared, by one
 * conditional UPDATE: parallel guesses serialize on the account row, so once the limit is reached
 * no further guess is compared, however many arrive at once.
 */
export class LoginBackoff {
  /**
   * Counts an attempt on the account `match` names (a condition on `users`, see identifierMatch or
   * {@link byId}) and opens the delay it earns. The same UPDATE finds the account, so a sign-in
   * needs no separate lookup. `null` when no account matches; a refusal when it is still waiting.
   */
  async reserve(em: EntityManager, match: IdentifierMatch): Promise<Reservation | null> {
    const connection = em.getConnection();
    const count = `update "users" set ${COUNT_ATTEMPT} where ${match.sql} and ${ADMITTED} returning *`;
    // Outside a transaction (every sign-in) the count commits without waiting for the disk: a crash
    // may forget the last fraction of a second of counts, which no attacker can arrange.
    const [counted] = em.getTransactionContext()
      ? await connection.execute<Array<Record<string, unknown>>>(count, match.params, 'all', em.getTransactionContext())
      : await pooledQueryCommittedLazily<Record<string, unknown>>(em, count, match.params);
    if (counted) return { user: em.map(User, counted), refusal: null };
    // Not counted: there is no such account, or it is waiting.
    const [waiting] = await connection.execute<Array<Record<string, unknown>>>(
      `select *, ceil(extract(epoch from ("login_blocked_until" - now()))) as "wait_seconds" from "users" where ${match.sql}`,
      match.params,
      'all',
      em.getTransactionContext(),
    );
    if (!waiting) return null;
    const { wait_seconds: wait, ...row } = waiting;
    const user = em.map(User, row);
    const refusal =
      user.failedLoginCount >= FAILED_LOGINS_BEFORE_RESET
        ? { retryAfterSeconds: MAX_LOGIN_DELAY_SECONDS, resetRequired: true }
        : // A delay that ended between the two statements still answers "wait a second".
          { retryAfterSeconds: Math.max(1, Number(wait ?? 1)), resetRequired: false };
    return { user, refusal };
  }

  /** The condition naming one account by id, for {@link reserve}. */
  static byId(userId: string): IdentifierMatch {
    return { sql: '"id" = ?', params: [userId] };
  }
}

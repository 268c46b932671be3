import type { EntityManager } from '@mikro-orm/postgresql';
import { BadUserInputError, RateLimitedError } from '../../errors.js';
import { User } from '../users/user.entity.js';
import type { PasswordHasher } from './password.js';

/** Failed sign-ins an account tolerates before delays start; the delay then doubles per failure. */
export const FREE_FAILED_LOGINS = 5;
/** The longest delay a stranger's guesses can impose on the owner (15 minutes). */
export const MAX_LOGIN_DELAY_SECONDS = 15 * 60;
/** After this many consecutive failures only a password reset opens the account (NIST SP 800-63B §5.2.2). */
export const FAILED_LOGINS_BEFORE_RESET = 100;

/** Why an attempt was not even checked. */
export type LoginRefusal = { retryAfterSeconds: number; resetRequired: boolean };

/**
 * Per-account brute-force backoff. An attempt is counted *before* the password is compared, by one
 * conditional UPDATE: parallel guesses serialize on the account row, so once the limit is reached
 * no further guess is compared, however many arrive at once.
 */
export class LoginBackoff {
  /** Counts an attempt and opens the delay it earns; the refusal when the account is still waiting. */
  async reserve(em: EntityManager, userId: string): Promise<LoginRefusal | null> {
    // The exponent is bounded (2^20 s is far beyond the cap) to keep the interval arithmetic in range.
    const counted = await em.getConnection().execute<Array<{ failed_login_count: number }>>(
      `update "users"
          set "failed_login_count" = "failed_login_count" + 1,
              "login_blocked_until" = case
                when "failed_login_count" + 1 >= ? then now() + least(? * interval '1 second', power(2, least("failed_login_count" + 1 - ?, 20)) * interval '1 second')
                else null end
        where "id" = ? and "failed_login_count" < ? and ("login_blocked_until" is null or "login_blocked_until" <= now())
        returning "failed_login_count"`,
      [FREE_FAILED_LOGINS, MAX_LOGIN_DELAY_SECONDS, FREE_FAILED_LOGINS, userId, FAILED_LOGINS_BEFORE_RESET],
      'all',
      em.getTransactionContext(),
    );
    if (counted.length > 0) return null;
    const [state] = await em.getConnection().execute<Array<{ wait: number | null; reset_required: boolean }>>(
      `select ceil(extract(epoch from ("login_blocked_until" - now()))) as "wait", "failed_login_count" >= ? as "reset_required"
         from "users" where "id" = ?`,
      [FAILED_LOGINS_BEFORE_RESET, userId],
      'all',
      em.getTransactionContext(),
    );
    if (!state) return null;
    return state.reset_required
      ? { retryAfterSeconds: MAX_LOGIN_DELAY_SECONDS, resetRequired: true }
      : { retryAfterSeconds: Math.max(1, Number(state.wait ?? 1)), resetRequired: false };
  }

  /**
   * Re-authentication of a signed-in user (changePassword, deleteMe): the attempt counts like a
   * sign-in, so a stolen session cannot be used to guess the password at full speed. Throws
   * RATE_LIMITED while the account waits and BAD_USER_INPUT (on `field`) for a wrong password.
   */
  async check(em: EntityManager, userId: string, password: string, storedHash: string, passwords: PasswordHasher, field: string): Promise<void> {
    const refusal = await this.reserve(em, userId);
    if (refusal) throw new RateLimitedError(refusal.retryAfterSeconds, 'Too many wrong passwords for this account. Try again later.');
    if (!(await passwords.verify(password, storedHash))) throw new BadUserInputError('The password is incorrect.', field);
    await this.clear(em, userId);
  }

  /** Forgets the failures (a successful re-authentication). */
  async clear(em: EntityManager, userId: string): Promise<void> {
    await em.nativeUpdate(User, { id: userId }, { failedLoginCount: 0, loginBlockedUntil: null });
  }
}

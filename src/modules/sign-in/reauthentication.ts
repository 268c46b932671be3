import type { EntityManager } from '@mikro-orm/postgresql';
import { BadUserInputError, RateLimitedError } from '../../errors.js';
import type { PasswordHasher } from '../passwords/password.js';
import { LoginBackoff } from './login-backoff.js';

/** The signed-in caller who is asked to prove it again: its account and its stored password hash. */
export interface Reauthenticating {
  user: { id: string };
  passwordHash: string;
}

/**
 * Re-authentication of a signed-in user before a sensitive operation (changePassword, deleteMe):
 * the one place that asks for the current password. The attempt counts in the account's backoff like
 * a sign-in, so a stolen session cannot be used to guess the password at full speed.
 */
export class Reauthentication {
  constructor(
    private readonly backoff: LoginBackoff,
    private readonly passwords: PasswordHasher,
  ) {}

  /**
   * Checks `password` for `caller`. Throws RATE_LIMITED while the account waits and BAD_USER_INPUT
   * (on `field`) for a wrong password; a right one clears the account's failures.
   */
  async confirm(em: EntityManager, caller: Reauthenticating, password: string, field: string): Promise<void> {
    const refusal = (await this.backoff.reserve(em, LoginBackoff.byId(caller.user.id)))?.refusal;
    if (refusal) throw new RateLimitedError(refusal.retryAfterSeconds, 'Too many wrong passwords for this account. Try again later.');
    if (!(await this.passwords.verify(password, caller.passwordHash))) throw new BadUserInputError('The password is incorrect.', field);
    await this.backoff.clear(em, caller.user.id);
  }
}

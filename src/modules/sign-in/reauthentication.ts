import type { EntityManager } from '@mikro-orm/postgresql';
import { BadUserInputError } from '../../errors.js';
import type { SecondFactor } from '../mfa/second-factor.js';
import type { PasswordHasher } from '../passwords/password.js';
import type { RequestMeta } from '../sessions/request-meta.js';
import type { LoginGuard } from './login-guard.js';

/** The signed-in caller who is asked to prove it again: its account, device session, credentials and stored password hash. */
export interface Reauthenticating {
  user: { id: string };
  session: { family: string };
  /** The version of the credentials when the request began: the own devices' cap is theirs. */
  credentialsVersion: number;
  passwordHash: string;
}

/** What the caller presents: the current password, and a TOTP or recovery code where MFA is on. */
export interface Proof {
  password: string;
  /** The input field the password came in (named by BAD_USER_INPUT). */
  passwordField: string;
  /** Asked for only where MFA is on; `undefined` for operations that never ask (enrolling MFA). */
  code?: string | null;
  /**
   * Checks of the operation itself that need the right password but must not spend a code when
   * they fail (an email change to a taken address): run after the password, before the code.
   */
  beforeCode?: () => Promise<void>;
}

/**
 * Re-authentication of a signed-in user before a sensitive operation (changePassword, deleteMe,
 * email change, MFA changes): the one place that asks for the current password and, for the
 * operations that say so, the second factor. Every attempt is the device session's, counted before
 * the check (see LoginGuard.admitSession): 10 an hour, and 100 in all across the account's own
 * devices until one succeeds, then only a password reset goes on. The account's backoff is for
 * sign-ins: strangers' guesses there never keep the owner from changing the password, and a stolen
 * session's guesses never lock the owner out of signing in.
 */
export class Reauthentication {
  constructor(
    private readonly guard: LoginGuard,
    private readonly passwords: PasswordHasher,
    private readonly secondFactor: SecondFactor,
  ) {}

  /**
   * Checks `proof` for `caller`. Throws RATE_LIMITED beyond the session's budget, BAD_USER_INPUT on
   * the password field for a wrong password, and on `code` for a missing or wrong code where one is
   * asked for; only a complete proof starts the counts over.
   */
  async confirm(em: EntityManager, caller: Reauthenticating, proof: Proof, meta: RequestMeta): Promise<void> {
    const account = { id: caller.user.id, credentialsVersion: caller.credentialsVersion };
    const family = caller.session.family;
    await this.guard.admitSession(family, account);
    if (!(await this.passwords.verify(proof.password, caller.passwordHash))) throw new BadUserInputError('The password is incorrect.', proof.passwordField);
    // MFA as the row is now, not as the request began: an enrollment that just committed counts.
    const mfaOn = await this.mfaOn(em, caller.user.id);
    try {
      await proof.beforeCode?.();
    } catch (error) {
      // The right password, stopped by the operation's own check (a taken address): no failure.
      await this.guard.refundSession(family, account);
      throw error;
    }
    if (proof.code !== undefined && mfaOn) {
      if (!proof.code) throw new BadUserInputError('Enter a code from your authenticator app, or a recovery code.', 'code');
      if (!(await this.secondFactor.check(em, caller.user.id, proof.code, meta))) throw new BadUserInputError('The code is incorrect or was used already.', 'code');
    }
    // Only a complete proof forgets the failures: with MFA on, a password alone must not wipe the
    // wrong codes counted before it.
    if (!mfaOn || proof.code !== undefined) await this.guard.forgetSession(family, account);
  }

  private async mfaOn(em: EntityManager, userId: string): Promise<boolean> {
    const [row] = await em.getConnection().execute<Array<{ on: boolean }>>(
      `select "mfa_enabled_at" is not null as "on" from "users" where "id" = ?`,
      [userId],
      'all',
      em.getTransactionContext(),
    );
    return row?.on ?? false;
  }
}

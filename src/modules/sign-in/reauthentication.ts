import type { EntityManager } from '@mikro-orm/postgresql';
import { BadUserInputError, RateLimitedError } from '../../errors.js';
import type { RateLimits } from '../../rate-limits.js';
import type { SecondFactor } from '../mfa/second-factor.js';
import type { PasswordHasher } from '../passwords/password.js';
import type { RequestMeta } from '../sessions/request-meta.js';
import { LoginBackoff, type LoginRefusal } from './login-backoff.js';

/** The signed-in caller who is asked to prove it again: its account, device session and stored password hash. */
export interface Reauthenticating {
  user: { id: string; mfaEnabledAt: Date | null };
  session: { family: string };
  passwordHash: string;
}

const WAIT = 'Too many wrong passwords or codes for this account. Try again later.';

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
 * operations that say so, the second factor. Every attempt counts in the account's backoff like a
 * sign-in, so a stolen session cannot be used to guess the password or a code at full speed. While
 * the account waits (strangers' wrong passwords, say), the signed-in device session pays instead,
 * like a trusted device at sign-in: 10 an hour, within the cap the account's own devices share
 * (`ownDeviceTriesPerAccount`), so strangers cannot keep the owner from changing the password.
 */
export class Reauthentication {
  constructor(
    private readonly backoff: LoginBackoff,
    private readonly passwords: PasswordHasher,
    private readonly secondFactor: SecondFactor,
    private readonly limits: RateLimits,
  ) {}

  /**
   * Checks `proof` for `caller`. Throws RATE_LIMITED while the account waits, BAD_USER_INPUT on the
   * password field for a wrong password, and on `code` for a missing or wrong code where one is
   * asked for; only a complete proof clears the account's failures.
   */
  async confirm(em: EntityManager, caller: Reauthenticating, proof: Proof, meta: RequestMeta): Promise<void> {
    const reservation = await this.backoff.reserve(em, LoginBackoff.byId(caller.user.id));
    // The account's backoff counted this attempt, or (while it waits) the device session pays.
    const sessionPays = reservation?.refusal ? await this.admitSession(caller, reservation.refusal) : null;
    if (!(await this.passwords.verify(proof.password, caller.passwordHash))) throw new BadUserInputError('The password is incorrect.', proof.passwordField);
    const counted = reservation && !reservation.refusal ? reservation.user : null;
    // MFA as the row is now, not as the request began: an enrollment that just committed counts.
    const mfaOn = (reservation?.user ?? caller.user).mfaEnabledAt !== null;
    // Only a complete proof forgets the failures: with MFA on, a password alone must not wipe the
    // wrong codes counted before it.
    const complete = !mfaOn || proof.code !== undefined;
    try {
      await proof.beforeCode?.();
    } catch (error) {
      // The right password, stopped by the operation's own check: no failure to count against the
      // owner (a taken address, asked for five times, must not lock the account).
      if (counted) await (mfaOn ? this.backoff.refund(em, counted) : this.backoff.clear(em, counted));
      throw error;
    }
    if (proof.code !== undefined && mfaOn) {
      if (!proof.code) throw new BadUserInputError('Enter a code from your authenticator app, or a recovery code.', 'code');
      if (!(await this.secondFactor.check(em, caller.user.id, proof.code, meta))) throw new BadUserInputError('The code is incorrect or was used already.', 'code');
    }
    if (!complete) return;
    if (counted) await this.backoff.clear(em, counted);
    if (sessionPays) {
      // The strangers' failures stay counted (as after a trusted device's sign-in).
      await this.limits.reset('loginPerDevice', sessionPays);
      await this.limits.reset('ownDeviceTriesPerAccount', caller.user.id);
    }
  }

  /**
   * The account waits: the signed-in device session may try on its own budget, within the cap of
   * the account's own devices (the key it paid under is returned); RATE_LIMITED beyond either.
   */
  private async admitSession(caller: Reauthenticating, waiting: LoginRefusal): Promise<string> {
    const key = `session:${caller.session.family}`;
    const refused = await this.limits.refusal('loginPerDevice', key);
    if (refused) throw new RateLimitedError(refused.retryAfter, WAIT);
    if (!(await this.limits.allows('ownDeviceTriesPerAccount', caller.user.id))) throw new RateLimitedError(waiting.retryAfterSeconds, WAIT);
    return key;
  }
}

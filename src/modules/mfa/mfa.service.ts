import type { EntityManager } from '@mikro-orm/postgresql';
import { BadUserInputError, NotFoundError } from '../../errors.js';
import type { RateLimits } from '../../rate-limits.js';
import type { AuditService } from '../audit/audit.service.js';
import { AuditEventType } from '../audit/audit-event.entity.js';
import type { SecurityNotices } from '../lockdown/security-notices.js';
import { OneTimeTokenPurpose } from '../one-time-tokens/one-time-token.entity.js';
import type { OneTimeTokenService } from '../one-time-tokens/one-time-token.service.js';
import type { RequestMeta } from '../sessions/request-meta.js';
import { withLiveViewer } from '../sessions/session.service.js';
import type { Viewer } from '../sign-in/auth.service.js';
import type { Reauthentication } from '../sign-in/reauthentication.js';
import { type LockedAccount, withLockedAccount } from '../users/account-lock.js';
import { User } from '../users/user.entity.js';
import { type UserView, userView } from '../users/user.view.js';
import type { RecoveryCodes } from './recovery-codes.js';
import type { SecondFactor } from './second-factor.js';
import type { NewTotpSecret, TotpAuthenticator } from './totp.js';

/** What MfaService needs besides its own pieces. */
export interface MfaDependencies {
  totp: TotpAuthenticator;
  recoveryCodes: RecoveryCodes;
  secondFactor: SecondFactor;
  reauthentication: Reauthentication;
  tokens: OneTimeTokenService;
  notices: SecurityNotices;
  audit: AuditService;
  limits: RateLimits;
}

const NO_ENROLLMENT = 'Start the enrollment first (startTotpEnrollment), then enter a code from the app.';
const WRONG_CODE = 'The code is incorrect or was used already. Enter the current code from your authenticator app.';

/**
 * TOTP two-factor sign-in: enrollment (password, then a code from the app), recovery codes, and
 * turning it off (by the user with password and code, or by an admin for a lost device). Sign-in
 * with a second factor is AuthService.verifyMfa; the code check itself is {@link SecondFactor}.
 */
export class MfaService {
  constructor(private readonly deps: MfaDependencies) {}

  /**
   * Creates a new secret after checking the password, kept beside the account but not in force
   * until {@link confirmEnrollment}: nothing about sign-in changes yet. A second call replaces it.
   */
  async startEnrollment(em: EntityManager, viewer: Viewer, password: string, meta: RequestMeta): Promise<Omit<NewTotpSecret, 'sealed'>> {
    if (viewer.user.mfaEnabledAt) throw new BadUserInputError('Two-factor sign-in is already on. Turn it off first to enroll another authenticator.', 'password');
    await this.deps.reauthentication.confirm(em, viewer, { password, passwordField: 'password' }, meta);
    const { sealed, ...shown } = this.deps.totp.create(viewer.user.email);
    // Under the account's lock, with the session still live: a lockdown that committed during the
    // password check ended it, and a pending secret written after that would outlive the lockdown.
    const stored = await withLiveViewer(em, viewer, async (account) => {
      const written = await account.em.nativeUpdate(User, { id: viewer.user.id, mfaEnabledAt: null }, { totpSecret: sealed });
      if (written > 0) this.deps.audit.record(account.em, AuditEventType.MFA_ENROLLMENT_STARTED, { userId: viewer.user.id, actorId: viewer.user.id }, meta);
      return written;
    });
    if (stored === 0) throw new BadUserInputError('Two-factor sign-in is already on.', 'password');
    return shown;
  }

  /**
   * Turns MFA on with a current code of the pending secret; returns the recovery codes, shown once.
   * A notice with a "this wasn't me" link goes to the account's address.
   */
  async confirmEnrollment(em: EntityManager, viewer: Viewer, code: string, meta: RequestMeta): Promise<string[]> {
    await this.deps.limits.consume('codeAttemptsPerIp', meta.ip);
    await this.deps.limits.consume('codeAttemptsPerAccount', viewer.user.id);
    const outcome = await withLiveViewer(em, viewer, async (account) => {
      const { user } = account;
      if (!user.totpSecret || user.mfaEnabledAt) return NO_ENROLLMENT;
      const step = this.deps.totp.matchingStep(user.totpSecret, code.replace(/\s/g, ''));
      if (step === null) {
        this.deps.audit.record(account.em, AuditEventType.MFA_FAILED, { userId: user.id }, meta);
        return WRONG_CODE;
      }
      const now = new Date();
      await account.em.nativeUpdate(User, { id: user.id }, { mfaEnabledAt: now, totpLastStep: step, updatedAt: now });
      const codes = await this.deps.recoveryCodes.replace(account.em, user);
      this.deps.audit.record(account.em, AuditEventType.MFA_ENABLED, { userId: user.id, actorId: user.id }, meta);
      await this.deps.notices.send(account.em, user, { name: 'mfa-enabled' });
      return codes;
    });
    if (typeof outcome === 'string') throw new BadUserInputError(outcome, 'code');
    viewer.user.mfaEnabledAt = new Date();
    return outcome;
  }

  /** Turns MFA off after the password and a code; a notice goes out. */
  async disable(em: EntityManager, viewer: Viewer, password: string, code: string, meta: RequestMeta): Promise<true> {
    this.assertOn(viewer);
    await this.deps.reauthentication.confirm(em, viewer, { password, passwordField: 'password', code }, meta);
    await withLiveViewer(em, viewer, (account) => this.turnOffAndNotify(account, viewer.user.id, meta));
    viewer.user.mfaEnabledAt = null;
    return true;
  }

  /** Replaces the recovery codes after the password and a code; the old ones stop working. */
  async regenerateRecoveryCodes(em: EntityManager, viewer: Viewer, password: string, code: string, meta: RequestMeta): Promise<string[]> {
    this.assertOn(viewer);
    await this.deps.reauthentication.confirm(em, viewer, { password, passwordField: 'password', code }, meta);
    const codes = await withLiveViewer(em, viewer, async (account) => {
      if (!account.user.mfaEnabledAt) return null;
      const fresh = await this.deps.recoveryCodes.replace(account.em, account.user);
      this.deps.audit.record(account.em, AuditEventType.MFA_RECOVERY_CODES_REGENERATED, { userId: account.user.id, actorId: account.user.id }, meta);
      return fresh;
    });
    if (!codes) throw new BadUserInputError('Two-factor sign-in is off.', 'code');
    return codes;
  }

  /** An admin turns a user's MFA off (a lost authenticator); audited with the admin as actor, and the user is told. */
  async disableFor(em: EntityManager, actorId: string, userId: string, meta: RequestMeta): Promise<UserView> {
    const user = await withLockedAccount(em, userId, async (account) => {
      if (account.user.mfaEnabledAt || account.user.totpSecret) await this.turnOffAndNotify(account, actorId, meta);
      return account.user;
    });
    if (!user) throw new NotFoundError('No user has this id.');
    return userView(await em.findOneOrFail(User, { id: userId }, { refresh: true }));
  }

  /**
   * Removes the account's authenticator, pending enrollment and recovery codes, and voids its
   * unfinished MFA sign-ins. Also used by a lockdown (which sends notices of its own).
   */
  async turnOff(account: LockedAccount): Promise<void> {
    const { em, user } = account;
    await em.nativeUpdate(User, { id: user.id }, { totpSecret: null, mfaEnabledAt: null, totpLastStep: null, updatedAt: new Date() });
    await this.deps.recoveryCodes.clear(em, user.id);
    await this.deps.tokens.voidAll(em, user.id, [OneTimeTokenPurpose.MFA_CHALLENGE]);
  }

  private async turnOffAndNotify(account: LockedAccount, actorId: string, meta: RequestMeta): Promise<void> {
    const wasOn = account.user.mfaEnabledAt !== null;
    await this.turnOff(account);
    if (!wasOn) return;
    this.deps.audit.record(account.em, AuditEventType.MFA_DISABLED, { userId: account.user.id, actorId }, meta);
    await this.deps.notices.send(account.em, account.user, { name: 'mfa-disabled' });
  }

  private assertOn(viewer: Viewer): void {
    if (!viewer.user.mfaEnabledAt) throw new BadUserInputError('Two-factor sign-in is off.', 'code');
  }
}

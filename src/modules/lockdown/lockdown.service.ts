import type { EntityManager } from '@mikro-orm/postgresql';
import { BadUserInputError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { MailOutbox } from '../../mail/outbox.js';
import type { RateLimits } from '../../rate-limits.js';
import type { AuditService } from '../audit/audit.service.js';
import { AuditEventType } from '../audit/audit-event.entity.js';
import type { MfaService } from '../mfa/mfa.service.js';
import { OneTimeTokenPurpose } from '../one-time-tokens/one-time-token.entity.js';
import { type OneTimeTokenService, TOKEN_KINDS } from '../one-time-tokens/one-time-token.service.js';
import type { RequestMeta } from '../sessions/request-meta.js';
import { SessionEndReason } from '../sessions/session.entity.js';
import type { SessionService } from '../sessions/session.service.js';
import { FAILED_LOGINS_BEFORE_RESET } from '../sign-in/login-backoff.js';
import { type LockedAccount, withLockedAccount } from '../users/account-lock.js';
import { User } from '../users/user.entity.js';
import type { UserService } from '../users/user.service.js';

/** What LockdownService needs. */
export interface LockdownDependencies {
  users: UserService;
  sessions: SessionService;
  tokens: OneTimeTokenService;
  mfa: MfaService;
  outbox: MailOutbox;
  audit: AuditService;
  limits: RateLimits;
  logger: Logger;
}

/** How far back a lockdown reaches: a lockdown link's lifetime. */
const LOCKDOWN_WINDOW_MS = TOKEN_KINDS[OneTimeTokenPurpose.LOCKDOWN].ttlMs;

export const INVALID_LOCKDOWN_TOKEN = 'This link is invalid, was used already or has expired.';

/**
 * "This wasn't me": the owner of a hijacked account takes it back with the link of any security
 * notice from the last 7 days (the link's lifetime). One transaction under the account's lock:
 * every session ends; the address the account had 7 days ago comes back if it was replaced; an MFA
 * enrollment of the last 7 days is turned off; sign-in is refused until a password reset; every
 * other pending link and code dies, except the lockdown links mailed to the address kept; and a
 * reset link goes to that address.
 */
export class LockdownService {
  constructor(private readonly deps: LockdownDependencies) {}

  /** Locks the account of a live lockdown link (once); BAD_USER_INPUT, changing nothing, otherwise. */
  async lock(em: EntityManager, token: string, meta: RequestMeta): Promise<true> {
    await this.deps.limits.consume('codeAttemptsPerIp', meta.ip);
    const ownerId = await this.deps.tokens.ownerOf(em, OneTimeTokenPurpose.LOCKDOWN, token);
    const locked = ownerId
      ? await withLockedAccount(em, ownerId, async (account) => {
          const link = await this.deps.tokens.consume(account.em, OneTimeTokenPurpose.LOCKDOWN, token);
          if (link?.userId !== ownerId) return false;
          await this.lockDown(account, meta);
          return true;
        })
      : null;
    if (!locked) throw new BadUserInputError(INVALID_LOCKDOWN_TOKEN, 'token');
    return true;
  }

  private async lockDown(account: LockedAccount, meta: RequestMeta): Promise<void> {
    const { em, user } = account;
    const restored = await this.restorableEmail(account);
    const address = restored ?? user.email;
    // Every pending link and code dies. So does every lockdown link mailed anywhere but the address
    // the account keeps, spent ones included: a hijacker's own notices must neither lock the account
    // again once its owner has reset the password, nor later count as an address the account had
    // (restorableEmail), nor cancel the owner's links (which keep the address reserved).
    await this.deps.tokens.voidAll(em, user.id, Object.values(OneTimeTokenPurpose).filter((purpose) => purpose !== OneTimeTokenPurpose.LOCKDOWN));
    await this.deps.tokens.forgetAllBut(em, user.id, OneTimeTokenPurpose.LOCKDOWN, address);
    // Any enrollment of the last 7 days, whenever the link was mailed: a hijacker who turned MFA on
    // before changing the address must not keep the account behind their authenticator.
    if (user.mfaEnabledAt && user.mfaEnabledAt.getTime() > Date.now() - LOCKDOWN_WINDOW_MS) {
      await this.deps.mfa.turnOff(account);
      this.deps.audit.record(em, AuditEventType.MFA_DISABLED, { userId: user.id }, meta);
    }
    const now = new Date();
    // Sign-in waits for a password reset (the backoff's "reset required" state), and device tokens
    // issued before (a hijacker's devices skip the backoff) are disowned with the credentials.
    await em.nativeUpdate(User, { id: user.id }, {
      ...(restored ? { email: restored, emailVerifiedAt: now } : {}),
      failedLoginCount: FAILED_LOGINS_BEFORE_RESET,
      loginBlockedUntil: null,
      credentialsVersion: user.credentialsVersion + 1,
      updatedAt: now,
    });
    if (restored) this.deps.audit.record(em, AuditEventType.EMAIL_RESTORED, { userId: user.id }, meta);
    await this.deps.sessions.endAllOf(account, SessionEndReason.LOCKED);
    // A deactivated account cannot be reset (an admin reactivates it first): no dead link is sent.
    if (user.active) {
      const resetToken = await this.deps.tokens.issue(em, user, OneTimeTokenPurpose.PASSWORD_RESET);
      this.deps.outbox.enqueue(em, address, { name: 'account-locked', token: resetToken });
    }
    this.deps.audit.record(em, AuditEventType.ACCOUNT_LOCKED, { userId: user.id }, meta);
    // Mirrors that follow only user.updated learn of the restored address too.
    await this.deps.users.announce(em, restored ? ['user.locked', 'user.updated'] : 'user.locked', user.id);
  }

  /**
   * The address the account had 7 days ago (the first one a security notice went to since), when an
   * email change has replaced it: it comes back, whichever notice's link was followed — the
   * hijacker's own link restores the owner's address too. `null` when no address was replaced, or
   * when another account holds it now despite the reservation (see UserService.isEmailAvailable) —
   * then the account is still locked, at its current address.
   */
  private async restorableEmail(account: LockedAccount): Promise<string | null> {
    const { user } = account;
    const original = await this.deps.tokens.oldestTarget(account.em, user.id, OneTimeTokenPurpose.LOCKDOWN);
    if (!original || original === user.email) return null;
    if (await this.deps.users.isEmailAvailable(account.em, original, user.id)) return original;
    this.deps.logger.warn({ userId: user.id }, 'lockdown could not restore the previous email address: another account holds it');
    return null;
  }
}

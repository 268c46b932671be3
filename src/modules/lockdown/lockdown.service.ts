import type { EntityManager } from '@mikro-orm/postgresql';
import { BadUserInputError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { MailOutbox } from '../../mail/outbox.js';
import type { RateLimits } from '../../rate-limits.js';
import type { AuditService } from '../audit/audit.service.js';
import { AuditEventType } from '../audit/audit-event.entity.js';
import type { MfaService } from '../mfa/mfa.service.js';
import { OneTimeTokenPurpose } from '../one-time-tokens/one-time-token.entity.js';
import type { IssuedLink, OneTimeTokenService } from '../one-time-tokens/one-time-token.service.js';
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

export const INVALID_LOCKDOWN_TOKEN = 'This link is invalid, was used already or has expired.';

/**
 * "This wasn't me": the owner of a hijacked account takes it back with the link of any security
 * notice from the last 7 days (the link's lifetime). One transaction under the account's lock:
 * every session ends; if the address the link was mailed to has been replaced since, it comes back;
 * an MFA enrollment made after the link was mailed is turned off; sign-in is refused until a
 * password reset; every other pending link and code dies; and a reset link goes to the restored
 * address.
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
          await this.lockDown(account, link, meta);
          return true;
        })
      : null;
    if (!locked) throw new BadUserInputError(INVALID_LOCKDOWN_TOKEN, 'token');
    return true;
  }

  private async lockDown(account: LockedAccount, link: IssuedLink, meta: RequestMeta): Promise<void> {
    const { em, user } = account;
    // Every pending link and code dies, the other lockdown links too: a hijacker's own notices must
    // not let them lock the account again once its owner has reset the password.
    await this.deps.tokens.voidAll(em, user.id, Object.values(OneTimeTokenPurpose));
    const restored = await this.restorableEmail(account, link.target);
    // Only an enrollment made after the link was mailed: a link from before cannot undo the
    // owner's own second factor.
    if (user.mfaEnabledAt && user.mfaEnabledAt > link.issuedAt) {
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
    await this.deps.sessions.endAllOf(account, SessionEndReason.LOCKED);
    // A deactivated account cannot be reset (an admin reactivates it first): no dead link is sent.
    if (user.active) {
      const resetToken = await this.deps.tokens.issue(em, user, OneTimeTokenPurpose.PASSWORD_RESET);
      this.deps.outbox.enqueue(em, restored ?? user.email, { name: 'account-locked', token: resetToken });
    }
    this.deps.audit.record(em, AuditEventType.ACCOUNT_LOCKED, { userId: user.id }, meta);
    // Mirrors that follow only user.updated learn of the restored address too.
    await this.deps.users.announce(em, restored ? ['user.locked', 'user.updated'] : 'user.locked', user.id);
  }

  /**
   * The address the link was mailed to, when an email change has replaced it since (within the
   * link's 7 days): it comes back. `null` when it is still the account's address, or when another
   * account holds it now despite the reservation (see UserService.assertEmailAvailable) — then the
   * account is still locked, at its current address.
   */
  private async restorableEmail(account: LockedAccount, mailedTo: string | null): Promise<string | null> {
    const { user } = account;
    if (!mailedTo || mailedTo === user.email) return null;
    if (await this.deps.users.isEmailAvailable(account.em, mailedTo, user.id)) return mailedTo;
    this.deps.logger.warn({ userId: user.id }, 'lockdown could not restore the previous email address: another account holds it');
    return null;
  }
}

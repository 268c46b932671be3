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
 * every session ends; the address the followed link was mailed to comes back if an email change
 * has replaced it; an MFA enrollment of the last 7 days is turned off; sign-in is refused until a
 * password reset; every other pending link and code dies, and so do the lockdown links of every
 * address the account had after that one; and a reset link goes to the address kept.
 *
 * So each address the account had in the last 7 days can take it back to itself, and an earlier
 * address overrides a later one, never the reverse: a hijacker who moved the account on (A → B → C)
 * gets nothing from the links mailed to B or C that the owner's link from A does not undo for good,
 * and an owner who moved from A to B on purpose, then was hijacked to C, gets B back with B's link.
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
          await this.lockDown(account, link.target ?? account.user.email, meta);
          return true;
        })
      : null;
    if (!locked) throw new BadUserInputError(INVALID_LOCKDOWN_TOKEN, 'token');
    return true;
  }

  /** Locks the account down for the holder of a link mailed to `linkAddress`. */
  private async lockDown(account: LockedAccount, linkAddress: string, meta: RequestMeta): Promise<void> {
    const { em, user } = account;
    const restored = await this.restorableEmail(account, linkAddress);
    const address = restored ?? user.email;
    // Every pending link and code dies. So does every lockdown link mailed to an address the account
    // had after the link's, spent ones included: a hijacker's later addresses must neither lock the
    // account again once its owner has reset the password, nor take it back to themselves. The
    // links of the link's own address and of earlier ones stay (they keep those addresses reserved).
    await this.deps.tokens.voidAll(em, user.id, Object.values(OneTimeTokenPurpose).filter((purpose) => purpose !== OneTimeTokenPurpose.LOCKDOWN));
    await this.deps.tokens.forgetTargetsAfter(em, user.id, OneTimeTokenPurpose.LOCKDOWN, linkAddress);
    // Any enrollment of the last 7 days, whenever the link was mailed: a hijacker who turned MFA on
    // before changing the address must not keep the account behind their authenticator. A started,
    // unconfirmed enrollment goes too, so it cannot be confirmed afterwards.
    const recentEnrollment = user.mfaEnabledAt !== null && user.mfaEnabledAt.getTime() > Date.now() - LOCKDOWN_WINDOW_MS;
    if (recentEnrollment || (user.totpSecret !== null && user.mfaEnabledAt === null)) await this.deps.mfa.turnOff(account);
    if (recentEnrollment) this.deps.audit.record(em, AuditEventType.MFA_DISABLED, { userId: user.id, detail: 'lockdown' }, meta);
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
    if (restored) this.deps.audit.record(em, AuditEventType.EMAIL_RESTORED, { userId: user.id, detail: `${user.email} → ${restored}` }, meta);
    await this.deps.sessions.endAllOf(account, SessionEndReason.LOCKED);
    // A deactivated account cannot be reset (an admin reactivates it first): no dead link is sent.
    if (user.active) {
      const resetToken = await this.deps.tokens.issue(em, user, OneTimeTokenPurpose.PASSWORD_RESET);
      this.deps.outbox.enqueue(em, address, { name: 'account-locked', token: resetToken });
    }
    // Who locked: the request's address and browser; with which link: the address it was mailed to.
    this.deps.audit.record(em, AuditEventType.ACCOUNT_LOCKED, { userId: user.id, detail: `link mailed to ${linkAddress}` }, meta);
    // Mirrors that follow only user.updated learn of the restored address too, and it counts as
    // verified (its owner followed a link mailed to it): a verified address, new to the account again.
    await this.deps.users.announce(em, restored ? ['user.locked', 'user.updated', 'user.email_verified'] : 'user.locked', user.id);
  }

  /**
   * The address the followed link was mailed to, when an email change has replaced it since: it
   * comes back. `null` when it is the account's address now, or when another account holds it
   * despite the reservation (see UserService.isEmailAvailable) — then the account is still locked,
   * at its current address.
   */
  private async restorableEmail(account: LockedAccount, original: string): Promise<string | null> {
    const { user } = account;
    if (original === user.email) return null;
    if (await this.deps.users.isEmailAvailable(account.em, original, user.id)) return original;
    this.deps.logger.warn({ userId: user.id }, 'lockdown could not restore the previous email address: another account holds it');
    return null;
  }
}

import { LockMode } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import { BadUserInputError, UnauthenticatedError, UnauthenticatedReason } from '../../errors.js';
import type { MailOutbox } from '../../mail/outbox.js';
import type { RateLimits } from '../../rate-limits.js';
import type { AuditService } from '../audit/audit.service.js';
import { AuditEventType } from '../audit/audit-event.entity.js';
import { withLockedAccount } from '../users/account-lock.js';
import { User } from '../users/user.entity.js';
import type { UserService } from '../users/user.service.js';
import type { UserView } from '../users/user.view.js';
import { OneTimeTokenPurpose } from '../one-time-tokens/one-time-token.entity.js';
import type { OneTimeTokenService } from '../one-time-tokens/one-time-token.service.js';
import type { RequestMeta } from '../sessions/request-meta.js';

const INVALID_CODE = 'The verification code is invalid or has expired. Ask for a new one.';

/** Email verification: codes by mail at registration and on request, and their checking. */
export class VerificationService {
  constructor(
    private readonly tokens: OneTimeTokenService,
    private readonly outbox: MailOutbox,
    private readonly audit: AuditService,
    private readonly limits: RateLimits,
    private readonly users: UserService,
  ) {}

  /** Adds a fresh code and its email to `em`'s unit of work (used by register; the caller flushes). */
  async queueCode(em: EntityManager, user: User): Promise<void> {
    const code = await this.tokens.issue(em, user, OneTimeTokenPurpose.EMAIL_VERIFICATION);
    this.outbox.enqueue(em, user.email, { name: 'verification-code', code });
  }

  /**
   * Sends a fresh code (voiding the previous one) unless the account is already verified or got a
   * code less than a minute ago. Always `true`: the throttle is silent. Only a request that sends
   * counts toward the account's hourly budget (as with forgotPassword): repeated clicks within the
   * minute, or on a verified account, cost it nothing.
   */
  async resend(em: EntityManager, userId: string, meta: RequestMeta): Promise<true> {
    await this.limits.consume('mailRequestsPerIp', meta.ip);
    await this.limits.countedIf('mailRequestsPerIdentifier', userId, () =>
      em.transactional(async (tx) => {
        // The row lock serializes concurrent requests of one account, so the throttle holds.
        const user = await tx.findOne(User, { id: userId }, { lockMode: LockMode.PESSIMISTIC_WRITE });
        // Deleted since the request was authenticated: its sessions went with it.
        if (!user) throw UnauthenticatedError.because(UnauthenticatedReason.SESSION_ENDED);
        if (user.emailVerifiedAt) return false;
        if (await this.tokens.issuedRecently(tx, user.id, OneTimeTokenPurpose.EMAIL_VERIFICATION)) return false;
        await this.queueCode(tx, user);
        return true;
      }),
    );
    return true;
  }

  /**
   * Checks a code for the signed-in account; five tries per code, one message for wrong, expired,
   * used and exhausted codes. Verifying an already-verified account succeeds without a code check.
   */
  async verify(em: EntityManager, user: UserView, code: string, meta: RequestMeta): Promise<UserView> {
    if (user.emailVerifiedAt) return user;
    await this.limits.consume('codeAttemptsPerIp', meta.ip);
    await this.limits.consume('codeAttemptsPerAccount', user.id);
    const verifiedAt = new Date();
    // A wrong try commits too (it is counted); a match marks the account in the same transaction.
    // The account is locked before its code row, the order every path that touches an account's
    // tokens keeps (deletion cascades to them under the same lock), so none can deadlock another.
    const matched = await withLockedAccount(em, user.id, async (account) => {
      if (!(await this.tokens.attempt(account.em, OneTimeTokenPurpose.EMAIL_VERIFICATION, user.id, code.trim()))) return false;
      await account.em.nativeUpdate(User, { id: user.id }, { emailVerifiedAt: verifiedAt, updatedAt: verifiedAt });
      this.audit.record(account.em, AuditEventType.EMAIL_VERIFIED, { userId: user.id, actorId: user.id }, meta);
      await this.users.announce(account.em, 'user.email_verified', user.id);
      return true;
    });
    if (!matched) throw new BadUserInputError(INVALID_CODE, 'code');
    Object.assign(user, { emailVerifiedAt: verifiedAt, updatedAt: verifiedAt });
    return user;
  }
}

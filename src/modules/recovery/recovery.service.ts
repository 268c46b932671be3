import { LockMode } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import { BadUserInputError } from '../../errors.js';
import type { MailOutbox } from '../../mail/outbox.js';
import type { RateLimits } from '../../rate-limits.js';
import type { AuditService } from '../audit/audit.service.js';
import { AuditEventType } from '../audit/audit-event.entity.js';
import { withLockedAccount } from '../users/account-lock.js';
import { User } from '../users/user.entity.js';
import type { UserService } from '../users/user.service.js';
import type { Viewer } from '../sign-in/auth.service.js';
import { OneTimeTokenPurpose } from '../one-time-tokens/one-time-token.entity.js';
import type { OneTimeTokenService } from '../one-time-tokens/one-time-token.service.js';
import type { LoginGuard } from '../sign-in/login-guard.js';
import type { Reauthentication } from '../sign-in/reauthentication.js';
import type { SecurityNotices } from '../lockdown/security-notices.js';
import type { PasswordHasher } from '../passwords/password.js';
import { checkNewPassword } from '../passwords/password-policy.js';
import { type RequestMeta, storedUserAgent } from '../sessions/request-meta.js';
import { SessionEndReason } from '../sessions/session.entity.js';
import { type SessionService, withLiveViewer } from '../sessions/session.service.js';

/** One message for unknown, expired, used and voided reset tokens. */
export const INVALID_RESET_TOKEN = 'This password reset link is invalid or has expired. Ask for a new one.';
const IDENTIFIER_MAX_LENGTH = 254;

/** What RecoveryService needs. */
export interface RecoveryDependencies {
  users: UserService;
  sessions: SessionService;
  passwords: PasswordHasher;
  tokens: OneTimeTokenService;
  outbox: MailOutbox;
  audit: AuditService;
  limits: RateLimits;
  reauthentication: Reauthentication;
  notices: SecurityNotices;
  guard: LoginGuard;
  /** A fresh unit of work, for the jobs the outbox worker runs. */
  fork: () => EntityManager;
}

/** Forgot / reset password by email, and change of password by a signed-in user. */
export class RecoveryService {
  constructor(private readonly deps: RecoveryDependencies) {
    deps.outbox.handle('password-reset-request', (job) =>
      this.queueReset(deps.fork(), job.identifier, { ip: job.ip, userAgent: job.userAgent }),
    );
  }

  /**
   * Answers `true` for every identifier, once a job row holding the request is written — the same
   * write whoever asks, so neither the answer nor its timing tells whether the account exists, is
   * inactive, or was throttled. The outbox worker does the lookup, the token and the email
   * ({@link queueReset}); a crash after the answer loses nothing.
   */
  async forgotPassword(em: EntityManager, identifier: string, meta: RequestMeta): Promise<true> {
    // Counted in characters (code points), as every length here is.
    if (identifier.length > IDENTIFIER_MAX_LENGTH && [...identifier].length > IDENTIFIER_MAX_LENGTH) {
      throw new BadUserInputError(`Identifier must be at most ${IDENTIFIER_MAX_LENGTH} characters.`, 'identifier');
    }
    await this.deps.limits.consume('mailRequestsPerIp', meta.ip);
    this.deps.outbox.enqueueJob(em, { name: 'password-reset-request', identifier, ip: meta.ip, userAgent: storedUserAgent(meta) });
    await em.flush();
    return true;
  }

  /**
   * The job behind {@link forgotPassword}, run by the outbox worker (at least once: a repeat finds
   * the token it issued and sends nothing more).
   */
  private async queueReset(em: EntityManager, identifier: string, meta: RequestMeta): Promise<void> {
    const found = await this.deps.users.findByIdentifier(em, identifier);
    if (!found?.active) return;
    // A link went out within the minute: this request adds nothing, and costs the account nothing.
    if (await this.deps.tokens.issuedRecently(em, found.id, OneTimeTokenPurpose.PASSWORD_RESET)) return;
    // Counted per account, so no spelling of its address or username (full-width letters, another
    // case) earns more emails. Silent: beyond the limit the request is dropped, and nobody learns
    // whether the account exists (this runs after the answer). Only a request that sends counts:
    // when nothing is sent (a concurrent request sent it, or this attempt failed and the outbox runs
    // the job again) the point goes back, or a few database hiccups would drop an acknowledged request.
    await this.deps.limits.countedIf('mailRequestsPerIdentifier', `account:${found.id}`, () =>
      em.transactional(async (tx) => {
        // The row lock serializes concurrent requests for one account, so the throttle holds.
        const user = await tx.findOneOrFail(User, { id: found.id }, { lockMode: LockMode.PESSIMISTIC_WRITE });
        if (await this.deps.tokens.issuedRecently(tx, user.id, OneTimeTokenPurpose.PASSWORD_RESET)) return false;
        const token = await this.deps.tokens.issue(tx, user, OneTimeTokenPurpose.PASSWORD_RESET);
        this.deps.outbox.enqueue(tx, user.email, { name: 'password-reset', token });
        this.deps.audit.record(tx, AuditEventType.PASSWORD_RESET_REQUESTED, { userId: user.id }, meta);
        return true;
      }),
    );
  }

  /**
   * Sets a new password with a mailed token. The token is consumed by one conditional UPDATE in the
   * same transaction that sets the hash, ends every session, records the event and queues the
   * notice, so of concurrent calls with one token exactly one changes the password. It does not
   * sign the user in. A device token of the account presented with it (current or former) makes
   * that device the one that reset the password: its token stays current (User.resetDevice).
   */
  async resetPassword(em: EntityManager, token: string, newPassword: string, deviceToken: string | null, meta: RequestMeta): Promise<true> {
    await this.deps.limits.consume('codeAttemptsPerIp', meta.ip);
    const ownerId = await this.deps.tokens.ownerOf(em, OneTimeTokenPurpose.PASSWORD_RESET, token);
    const user = ownerId ? await em.findOne(User, { id: ownerId, active: true }) : null;
    if (!user) throw new BadUserInputError(INVALID_RESET_TOKEN, 'token');
    await this.deps.limits.consume('codeAttemptsPerAccount', user.id);
    // Policy and hashing come before the token is spent: a rejected password leaves the link usable.
    const passwordHash = await this.deps.passwords.hash(checkNewPassword(newPassword, user, 'newPassword'));
    const now = new Date();
    // The account is locked before the token is spent: every path that touches an account's tokens
    // and sessions locks the user row first, so none of them can deadlock against another.
    const done = await withLockedAccount(em, user.id, async (account) => {
      // Throwing rolls the consumption back: a link that changed nothing stays as it was.
      if ((await this.deps.tokens.consume(account.em, OneTimeTokenPurpose.PASSWORD_RESET, token))?.userId !== user.id || !account.user.active) throw new BadUserInputError(INVALID_RESET_TOKEN, 'token');
      // Following the emailed link proves the mailbox is the user's; it also lifts any sign-in backoff.
      const credentialsVersion = account.user.credentialsVersion + 1;
      const device = deviceToken ? this.deps.guard.recognisedDevice(account.user, deviceToken) : null;
      await account.em.nativeUpdate(User, { id: user.id }, {
        passwordHash,
        credentialsVersion,
        resetDevice: device ? `${credentialsVersion}:${device}` : null,
        updatedAt: now,
        emailVerifiedAt: account.user.emailVerifiedAt ?? now,
        failedLoginCount: 0,
        loginBlockedUntil: null,
      });
      await this.deps.sessions.endAllOf(account, SessionEndReason.PASSWORD_RESET);
      this.deps.audit.record(account.em, AuditEventType.PASSWORD_RESET_COMPLETED, { userId: user.id }, meta);
      // Following the link verified the address too, if it was not yet.
      await this.deps.users.announce(account.em, account.user.emailVerifiedAt ? 'user.password_changed' : ['user.email_verified', 'user.password_changed'], user.id);
      await this.deps.tokens.voidAll(account.em, user.id, [OneTimeTokenPurpose.MFA_CHALLENGE]);
      await this.deps.notices.send(account.em, account.user, { name: 'password-changed' });
      return true;
    });
    if (!done) throw new BadUserInputError(INVALID_RESET_TOKEN, 'token');
    return true;
  }

  /**
   * Changes the signed-in user's password after checking the current one (and, where MFA is on, a
   * code: with a stolen session and the password alone, a hijacker could otherwise end every other
   * session and lock the owner out); every other session ends, the calling one stays, and a notice
   * is mailed.
   */
  async changePassword(em: EntityManager, viewer: Viewer, currentPassword: string, newPassword: string, code: string | null, meta: RequestMeta): Promise<true> {
    const { user } = viewer;
    await this.deps.reauthentication.confirm(em, viewer, { password: currentPassword, passwordField: 'currentPassword', code }, meta);
    const password = checkNewPassword(newPassword, user, 'newPassword');
    if (await this.deps.passwords.verify(password, viewer.passwordHash)) {
      throw new BadUserInputError('The new password must be different from the current one.', 'newPassword');
    }
    const passwordHash = await this.deps.passwords.hash(password);
    const now = new Date();
    const changed = await withLiveViewer(em, viewer, async (account) => {
      // Checked against the credentials read with the request: a reset or change since then wins.
      // It ended this session too (SESSION_ENDED), or (a second submit of one form) this very session made it.
      if (account.user.credentialsVersion !== viewer.credentialsVersion) return 'changed meanwhile';
      await account.em.nativeUpdate(User, { id: user.id }, { passwordHash, credentialsVersion: account.user.credentialsVersion + 1, updatedAt: now });
      await this.deps.sessions.endAllOf(account, SessionEndReason.PASSWORD_CHANGED, viewer.session.family);
      this.deps.audit.record(account.em, AuditEventType.PASSWORD_CHANGED, { userId: user.id, actorId: user.id }, meta);
      await this.deps.users.announce(account.em, 'user.password_changed', user.id);
      await this.deps.tokens.voidAll(account.em, user.id, [OneTimeTokenPurpose.MFA_CHALLENGE]);
      await this.deps.notices.send(account.em, account.user, { name: 'password-changed' });
      return true;
    });
    if (changed === 'changed meanwhile') throw new BadUserInputError('The password was changed by another request just now. Use the new password.', 'currentPassword');
    viewer.passwordHash = passwordHash;
    viewer.credentialsVersion += 1;
    user.updatedAt = now;
    return true;
  }
}

import type { EntityManager } from '@mikro-orm/postgresql';
import { BadUserInputError } from '../../errors.js';
import type { MailOutbox } from '../../mail/outbox.js';
import type { RateLimits } from '../../rate-limits.js';
import type { AuditService } from '../audit/audit.service.js';
import { AuditEventType } from '../audit/audit-event.entity.js';
import type { SecurityNotices } from '../lockdown/security-notices.js';
import { MAILBOX_PURPOSES, OneTimeTokenPurpose } from '../one-time-tokens/one-time-token.entity.js';
import type { OneTimeTokenService } from '../one-time-tokens/one-time-token.service.js';
import type { RequestMeta } from '../sessions/request-meta.js';
import { SessionEndReason } from '../sessions/session.entity.js';
import { type SessionService, withLiveViewer } from '../sessions/session.service.js';
import type { Viewer } from '../sign-in/auth.service.js';
import type { Reauthentication } from '../sign-in/reauthentication.js';
import { User } from '../users/user.entity.js';
import { normalizeEmail } from '../users/user.rules.js';
import { translatingConflicts, type UserService } from '../users/user.service.js';
import { type UserView, userView } from '../users/user.view.js';

/** What EmailChangeService needs. */
export interface EmailChangeDependencies {
  users: UserService;
  sessions: SessionService;
  tokens: OneTimeTokenService;
  outbox: MailOutbox;
  notices: SecurityNotices;
  reauthentication: Reauthentication;
  audit: AuditService;
  limits: RateLimits;
}

const INVALID_CODE = 'The code is invalid or has expired. Ask for a new one.';

/**
 * Changing the account's email address: a code to the new address proves it, a notice with a
 * "this wasn't me" link tells the current one, and the new address is not reserved until confirmed.
 */
export class EmailChangeService {
  constructor(private readonly deps: EmailChangeDependencies) {}

  /**
   * After the password (and a code where MFA is on), mails a 6-digit code to `newEmail` and a
   * notice to the current address. CONFLICT when the address is taken; a newer request voids the
   * older code.
   */
  async request(em: EntityManager, viewer: Viewer, newEmail: string, password: string, code: string | null, meta: RequestMeta): Promise<true> {
    const email = normalizeEmail(newEmail, 'newEmail');
    if (email === viewer.user.email) throw new BadUserInputError('This is already the email address of your account.', 'newEmail');
    await this.deps.limits.consume('mailRequestsPerIp', meta.ip);
    // A taken address is told only to a caller who knows the password, and spends no code.
    const available = () => this.deps.users.assertEmailAvailable(em, email, 'newEmail', viewer.user.id);
    await this.deps.reauthentication.confirm(em, viewer, { password, passwordField: 'password', code, beforeCode: available }, meta);
    await this.deps.limits.consume('mailRequestsPerIdentifier', `email-change:${viewer.user.id}`);
    await withLiveViewer(em, viewer, async (account) => {
      const secret = await this.deps.tokens.issue(account.em, account.user, OneTimeTokenPurpose.EMAIL_CHANGE, email);
      this.deps.outbox.enqueue(account.em, email, { name: 'email-change-code', code: secret });
      await this.deps.notices.send(account.em, account.user, { name: 'email-change-requested', newEmail: email });
      this.deps.audit.record(account.em, AuditEventType.EMAIL_CHANGE_REQUESTED, { userId: account.user.id, actorId: account.user.id, detail: `${account.user.email} → ${email}` }, meta);
    });
    return true;
  }

  /**
   * Switches to the address the code was sent to (now verified): the other sessions end, codes and
   * reset links sent to the old address die, and the old address gets a notice with a "this wasn't
   * me" link that can restore it for 7 days (the address stays reserved that long). CONFLICT when the address was taken meanwhile.
   */
  async confirm(em: EntityManager, viewer: Viewer, code: string, meta: RequestMeta): Promise<UserView> {
    await this.deps.limits.consume('codeAttemptsPerIp', meta.ip);
    await this.deps.limits.consume('codeAttemptsPerAccount', viewer.user.id);
    // A wrong try commits (it is counted); a CONFLICT rolls the whole change back, code included.
    const changed = await withLiveViewer(em, viewer, async (account) => {
      const { user } = account;
      const matched = await this.deps.tokens.attempt(account.em, OneTimeTokenPurpose.EMAIL_CHANGE, user.id, code.trim());
      if (!matched?.target) return 'wrong code';
      const email = matched.target;
      await this.deps.users.assertEmailAvailable(account.em, email, 'code', user.id);
      const now = new Date();
      const oldEmail = user.email;
      await translatingConflicts(() => account.em.nativeUpdate(User, { id: user.id }, { email, emailVerifiedAt: now, updatedAt: now }), 'code');
      await this.deps.tokens.voidAll(account.em, user.id, MAILBOX_PURPOSES);
      await this.deps.sessions.endAllOf(account, SessionEndReason.EMAIL_CHANGED, viewer.session.family);
      await this.deps.notices.send(account.em, user, { name: 'email-changed', newEmail: email }, oldEmail);
      this.deps.audit.record(account.em, AuditEventType.EMAIL_CHANGED, { userId: user.id, actorId: user.id, detail: `${oldEmail} → ${email}` }, meta);
      const fresh = await account.em.findOneOrFail(User, { id: user.id }, { refresh: true });
      // The new address is verified by the code: a verified address of the account, new to it.
      await this.deps.users.announce(account.em, ['user.updated', 'user.email_verified'], fresh);
      return userView(fresh);
    });
    if (changed === 'wrong code') throw new BadUserInputError(INVALID_CODE, 'code');
    return changed;
  }
}

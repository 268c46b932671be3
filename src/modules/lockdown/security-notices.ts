import type { EntityManager } from '@mikro-orm/postgresql';
import type { MailOutbox } from '../../mail/outbox.js';
import type { SecurityNoticeContent } from '../../mail/templates.js';
import { OneTimeTokenPurpose } from '../one-time-tokens/one-time-token.entity.js';
import type { OneTimeTokenService } from '../one-time-tokens/one-time-token.service.js';
import type { User } from '../users/user.entity.js';

/**
 * The one sender of security notices (password reset or changed, email change requested and done,
 * MFA on or off): each carries a fresh "this wasn't me" link, valid 7 days, that does not void the
 * links of earlier notices.
 */
export class SecurityNotices {
  constructor(
    private readonly tokens: OneTimeTokenService,
    private readonly outbox: MailOutbox,
  ) {}

  /** Queues `notice` for `user` in `em`'s unit of work, to `to` (the account's address unless given). */
  async send(em: EntityManager, user: User, notice: SecurityNoticeContent, to = user.email): Promise<void> {
    // The link remembers where it went: a lockdown gives the account back to that address.
    await this.sendWithLink(em, user, notice, to, to);
  }

  /**
   * An admin set the account's address (a correction after a hijack, or a lost mailbox): the
   * admin's decision stands. Every lockdown link mailed before is forgotten, so none gives the
   * account back to an address the admin moved it away from, and the previous address hears of it
   * with a link that locks the account without restoring anything (a reset then goes to the
   * address the admin set).
   */
  async sendAfterAdminEmailChange(em: EntityManager, user: User, previousEmail: string): Promise<void> {
    await this.tokens.forgetAll(em, user.id, OneTimeTokenPurpose.LOCKDOWN);
    await this.sendWithLink(em, user, { name: 'email-changed', newEmail: user.email }, previousEmail, user.email);
  }

  private async sendWithLink(em: EntityManager, user: User, notice: SecurityNoticeContent, to: string, restores: string): Promise<void> {
    const lockdownToken = await this.tokens.issue(em, user, OneTimeTokenPurpose.LOCKDOWN, restores);
    this.outbox.enqueue(em, to, { ...notice, lockdownToken });
  }
}

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
    const lockdownToken = await this.tokens.issue(em, user, OneTimeTokenPurpose.LOCKDOWN, to);
    this.outbox.enqueue(em, to, { ...notice, lockdownToken });
  }
}

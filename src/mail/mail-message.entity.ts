import { Entity, Index, Property } from '@mikro-orm/core';
import { QueuedRow } from '../db/queue.js';

/**
 * One email in the transactional outbox. It is written in the same transaction as whatever it
 * announces (a reset token, a verification code), and sent afterwards by the outbox worker, so a
 * failing SMTP server or a restart never loses it. Its content is encrypted at rest and erased once
 * sent, because until then it carries a live token.
 */
@Entity({ tableName: 'mail_outbox' })
@Index({
  name: 'mail_outbox_due_idx',
  expression: 'create index "mail_outbox_due_idx" on "mail_outbox" ("next_attempt_at") where "sent_at" is null and "failed_at" is null',
})
export class MailMessage extends QueuedRow {
  @Property({ type: 'varchar', length: 254 })
  recipient!: string;

  /** Template name, kept after sending for investigations (the content is not). */
  @Property({ type: 'varchar', length: 32 })
  template!: string;

  /** AES-256-GCM encrypted template parameters; null once sent. */
  @Property({ type: 'text', nullable: true })
  payload: string | null = null;

  @Property({ type: 'timestamptz', nullable: true })
  sentAt: Date | null = null;

  /** The last delivery error (never the content). */
  @Property({ type: 'varchar', length: 500, nullable: true })
  lastError: string | null = null;
}

import { Entity, Index, ManyToOne, Property, Unique } from '@mikro-orm/core';
import { QueuedRow } from '../../db/queue.js';
import { WebhookEndpoint } from './webhook-endpoint.entity.js';

/**
 * One event on its way to one endpoint: the webhook dispatcher's queue, claimed and retried like
 * the mail outbox. At most one per event and endpoint (the unique index makes a repeated fan-out
 * harmless). The body is erased once delivered or given up.
 */
@Entity({ tableName: 'webhook_messages' })
@Unique({ name: 'webhook_messages_endpoint_event_unique', properties: ['endpoint', 'eventId'] })
@Index({
  name: 'webhook_messages_due_idx',
  expression: 'create index "webhook_messages_due_idx" on "webhook_messages" ("next_attempt_at") where "delivered_at" is null and "failed_at" is null',
})
export class WebhookMessage extends QueuedRow {
  @ManyToOne(() => WebhookEndpoint, { deleteRule: 'cascade' })
  endpoint!: WebhookEndpoint;

  /** The `webhook-id` header: the same on every attempt. */
  @Property({ type: 'varchar', length: 64 })
  eventId!: string;

  @Property({ type: 'varchar', length: 40 })
  eventType!: string;

  /** The JSON body, exactly as signed; null once delivered or given up. */
  @Property({ type: 'text', nullable: true })
  body: string | null = null;

  @Property({ type: 'timestamptz', nullable: true })
  deliveredAt: Date | null = null;
}

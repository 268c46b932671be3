import { randomUUID } from 'node:crypto';
import { Entity, Index, ManyToOne, type Opt, PrimaryKey, Property } from '@mikro-orm/core';
import { Field, Int, ObjectType } from 'type-graphql';
import { WebhookEndpoint } from './webhook-endpoint.entity.js';

/** One attempt to deliver an event to an endpoint: the delivery log admins read. */
@ObjectType({ simpleResolvers: true, description: 'One attempt to deliver an event to an endpoint.' })
@Entity({ tableName: 'webhook_deliveries' })
@Index({ name: 'webhook_deliveries_endpoint_created_idx', properties: ['endpoint', 'createdAt'] })
@Index({ name: 'webhook_deliveries_created_idx', properties: ['createdAt'] })
export class WebhookDelivery {
  @PrimaryKey({ type: 'uuid' })
  id: string & Opt = randomUUID();

  @ManyToOne(() => WebhookEndpoint, { deleteRule: 'cascade' })
  endpoint!: WebhookEndpoint;

  @Field(() => String, { description: 'The webhook-id header: the same on every attempt at one event.' })
  @Property({ type: 'varchar', length: 64 })
  webhookId!: string;

  @Field(() => String, { description: 'e.g. user.created.' })
  @Property({ type: 'varchar', length: 40 })
  eventType!: string;

  @Field(() => Int, { description: '1 for the first attempt at this event, 2 for the first retry, and so on.' })
  @Property({ type: 'smallint' })
  attempt!: number;

  @Field(() => Int, { nullable: true, description: 'HTTP status the endpoint answered; null when it did not answer.' })
  @Property({ type: 'smallint', nullable: true })
  status: number | null = null;

  @Field(() => String, { nullable: true, description: 'Why the attempt failed (null when the endpoint answered 2xx).' })
  @Property({ type: 'varchar', length: 500, nullable: true })
  error: string | null = null;

  @Field(() => Date, { description: 'When the attempt was made.' })
  @Property({ type: 'timestamptz' })
  createdAt: Date & Opt = new Date();
}

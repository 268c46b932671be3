import { ArrayType, Entity, Property } from '@mikro-orm/core';
import { Field, ObjectType } from 'type-graphql';
import { BaseEntity } from '../../db/base.entity.js';

/** A URL that receives signed events about accounts (Standard Webhooks), registered by an admin. */
@ObjectType({ simpleResolvers: true, description: 'A URL that receives signed events about accounts (Standard Webhooks).' })
@Entity({ tableName: 'webhook_endpoints' })
export class WebhookEndpoint extends BaseEntity {
  @Field(() => String, { description: 'Where events are POSTed.' })
  @Property({ type: 'varchar', length: 2048 })
  url!: string;

  @Field(() => [String], { description: 'Event types it receives (see the README\'s event catalogue), e.g. user.created.' })
  @Property({ type: ArrayType })
  events!: string[];

  /** The signing secret (`whsec_…`), sealed with a server key (SecretBox): read back to sign, never shown again. */
  @Property({ type: 'varchar', length: 255, hidden: true })
  secret!: string;
}

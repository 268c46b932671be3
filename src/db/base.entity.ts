import { randomUUID } from 'node:crypto';
import { type Opt, PrimaryKey, Property } from '@mikro-orm/core';
import { Field, ID, ObjectType } from 'type-graphql';

/**
 * Columns every table shares: a random UUID key (never guessable, safe to show to clients) and
 * the creation time. Ids are generated in the application so an entity has one before it is flushed.
 */
// Registered as an object type only so GraphQL types extending it inherit its fields; no field
// returns it, so it never appears in the schema itself.
@ObjectType({ simpleResolvers: true, description: 'Fields every stored record has.' })
export abstract class BaseEntity {
  @Field(() => ID, { description: 'Stable, opaque identifier (a UUID).' })
  @PrimaryKey({ type: 'uuid' })
  id: string & Opt = randomUUID();

  @Field(() => Date, { description: 'When this record was created.' })
  @Property({ type: 'timestamptz' })
  createdAt: Date & Opt = new Date();
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether `value` has the shape of the ids this server issues (so it is safe to query by). */
export function isUuid(value: string): boolean {
  return UUID.test(value);
}

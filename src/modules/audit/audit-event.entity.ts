import { Entity, Enum, Index, Property } from '@mikro-orm/core';
import { Field, ID, ObjectType } from 'type-graphql';
import { BaseEntity } from '../../db/base.entity.js';

/** Security events worth keeping (never with a password or token in them). */
export enum AuditEventType {
  LOGIN_SUCCEEDED = 'LOGIN_SUCCEEDED',
  LOGIN_FAILED = 'LOGIN_FAILED',
  LOGOUT = 'LOGOUT',
  SESSION_REVOKED = 'SESSION_REVOKED',
  REFRESH_REUSE_DETECTED = 'REFRESH_REUSE_DETECTED',
  PASSWORD_RESET_REQUESTED = 'PASSWORD_RESET_REQUESTED',
  PASSWORD_RESET_COMPLETED = 'PASSWORD_RESET_COMPLETED',
  PASSWORD_CHANGED = 'PASSWORD_CHANGED',
  EMAIL_VERIFIED = 'EMAIL_VERIFIED',
  USER_CREATED = 'USER_CREATED',
  USER_UPDATED = 'USER_UPDATED',
  ROLE_CHANGED = 'ROLE_CHANGED',
  USER_DEACTIVATED = 'USER_DEACTIVATED',
  USER_DELETED = 'USER_DELETED',
}

/**
 * Who did what to which account, from where. `userId` and `actorId` are plain columns, not foreign
 * keys, so the events of a deleted account stay.
 */
@ObjectType({ simpleResolvers: true, description: 'A security event: who did what to which account, from where.' })
@Entity({ tableName: 'audit_events' })
@Index({ name: 'audit_events_user_created_idx', properties: ['userId', 'createdAt'] })
@Index({ name: 'audit_events_created_idx', properties: ['createdAt'] })
export class AuditEvent extends BaseEntity {
  @Field(() => String, {
    description:
      'e.g. LOGIN_SUCCEEDED, LOGIN_FAILED, PASSWORD_RESET_REQUESTED, PASSWORD_RESET_COMPLETED, PASSWORD_CHANGED, ROLE_CHANGED, USER_DELETED',
  })
  @Enum({ items: () => AuditEventType, type: 'varchar', length: 40 })
  type!: AuditEventType;

  /** The account the event is about. */
  @Field(() => ID, { nullable: true, description: 'The account the event is about (it may since have been deleted).' })
  @Property({ type: 'uuid', nullable: true })
  userId: string | null = null;

  /** Who caused it, when that is a signed-in account (an admin acting on a user, or the user). */
  @Field(() => ID, { nullable: true, description: 'The signed-in account that caused the event, if any.' })
  @Property({ type: 'uuid', nullable: true })
  actorId: string | null = null;

  @Field(() => String, { nullable: true, description: 'Client IP address of the request.' })
  @Property({ type: 'varchar', length: 64, nullable: true })
  ip: string | null = null;

  @Field(() => String, { nullable: true, description: 'User-Agent header of the request.' })
  @Property({ type: 'varchar', length: 512, nullable: true })
  userAgent: string | null = null;
}

/** Every property of an event: what the `AuditEvent` type shows, read by the listing. */
export const AUDIT_EVENT_FIELDS = ['id', 'createdAt', 'type', 'userId', 'actorId', 'ip', 'userAgent'] as const satisfies ReadonlyArray<keyof AuditEvent>;

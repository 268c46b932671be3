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
  /** The password was right and a second factor was asked for. */
  MFA_CHALLENGED = 'MFA_CHALLENGED',
  /** An authenticator secret was created (not in force until a code confirms it). */
  MFA_ENROLLMENT_STARTED = 'MFA_ENROLLMENT_STARTED',
  /** A wrong TOTP or recovery code (at sign-in, re-authentication or enrollment). */
  MFA_FAILED = 'MFA_FAILED',
  /** A recovery code was spent (at sign-in or re-authentication). */
  MFA_RECOVERY_CODE_USED = 'MFA_RECOVERY_CODE_USED',
  MFA_ENABLED = 'MFA_ENABLED',
  /** By the user (actor = user) or by an admin (actor = the admin), or undone by a lockdown. */
  MFA_DISABLED = 'MFA_DISABLED',
  MFA_RECOVERY_CODES_REGENERATED = 'MFA_RECOVERY_CODES_REGENERATED',
  EMAIL_CHANGE_REQUESTED = 'EMAIL_CHANGE_REQUESTED',
  EMAIL_CHANGED = 'EMAIL_CHANGED',
  /** A "this wasn't me" link was followed: sessions ended, recent changes undone, sign-in blocked until a reset. */
  ACCOUNT_LOCKED = 'ACCOUNT_LOCKED',
  /** A lockdown gave the account back the address an email change had replaced. */
  EMAIL_RESTORED = 'EMAIL_RESTORED',
  /** An admin registered a webhook endpoint (actor = the admin). */
  WEBHOOK_ENDPOINT_CREATED = 'WEBHOOK_ENDPOINT_CREATED',
  WEBHOOK_ENDPOINT_DELETED = 'WEBHOOK_ENDPOINT_DELETED',
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
      'e.g. LOGIN_SUCCEEDED, LOGIN_FAILED, PASSWORD_RESET_REQUESTED, PASSWORD_RESET_COMPLETED, PASSWORD_CHANGED, ROLE_CHANGED, USER_DELETED, MFA_ENABLED, MFA_DISABLED, EMAIL_CHANGE_REQUESTED, EMAIL_CHANGED, ACCOUNT_LOCKED, EMAIL_RESTORED',
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

  /** What the event concerns beyond the account: addresses, never a password, token or code. */
  @Field(() => String, {
    nullable: true,
    description:
      'What the event concerns beyond the account, where that matters: the address a lockdown link was mailed to (ACCOUNT_LOCKED), the addresses of an email change (EMAIL_CHANGE_REQUESTED, EMAIL_CHANGED, EMAIL_RESTORED), "lockdown" for MFA undone by one (MFA_DISABLED).',
  })
  @Property({ type: 'varchar', length: 600, nullable: true })
  detail: string | null = null;
}

/** Every property of an event: what the `AuditEvent` type shows, read by the listing. */
export const AUDIT_EVENT_FIELDS = ['id', 'createdAt', 'type', 'userId', 'actorId', 'ip', 'userAgent', 'detail'] as const satisfies ReadonlyArray<keyof AuditEvent>;

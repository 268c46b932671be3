import { Entity, Enum, Index, ManyToOne, Property, Unique } from '@mikro-orm/core';
import { BaseEntity } from '../../db/base.entity.js';
import { User } from '../users/user.entity.js';

/** Why a session row stopped being usable; kept for investigations, never shown to clients. */
export enum SessionEndReason {
  /** Its refresh token was exchanged for the next row of the family (normal rotation). */
  ROTATED = 'ROTATED',
  LOGOUT = 'LOGOUT',
  LOGOUT_ALL = 'LOGOUT_ALL',
  REVOKED = 'REVOKED',
  /** A refresh token of the family was presented twice: the family is presumed stolen. */
  REUSE_DETECTED = 'REUSE_DETECTED',
  /** The password was reset by email: every session of the account ends. */
  PASSWORD_RESET = 'PASSWORD_RESET',
  /** The password was changed from another session. */
  PASSWORD_CHANGED = 'PASSWORD_CHANGED',
  /** An admin deactivated the account. */
  DEACTIVATED = 'DEACTIVATED',
  /** The email address was changed from another session. */
  EMAIL_CHANGED = 'EMAIL_CHANGED',
  /** The owner followed a "this wasn't me" link. */
  LOCKED = 'LOCKED',
}

/**
 * One refresh token of a signed-in device. Every rotation ends the current row and starts a new one
 * in the same `family` (the device session), so presenting an already-rotated token is recognisable
 * as reuse and ends the whole family. Access tokens name the family, so they outlive rotations and
 * stop working at once when the family's last live row is ended.
 */
@Entity({ tableName: 'sessions' })
@Index({ name: 'sessions_user_active_idx', properties: ['user', 'revokedAt'] })
// Only live rows: the per-request lookup of an access token's family never scans rotated rows.
@Index({ name: 'sessions_family_live_idx', expression: 'create index "sessions_family_live_idx" on "sessions" ("family") where "revoked_at" is null' })
export class Session extends BaseEntity {
  @ManyToOne(() => User, { deleteRule: 'cascade' })
  user!: User;

  /** SHA-256 (hex) of the refresh token; the token itself is never stored. */
  @Property({ type: 'char', length: 64 })
  @Unique({ name: 'sessions_refresh_token_hash_unique' })
  refreshTokenHash!: string;

  /** The device session this row belongs to: the id of its first row. */
  @Property({ type: 'uuid' })
  family!: string;

  /**
   * The device that signed in (the id inside its device token), kept across rotations so refreshes
   * answer the same device token; null on rows from before device tokens (the family stands in).
   */
  @Property({ type: 'uuid', nullable: true })
  deviceId: string | null = null;

  @Property({ type: 'varchar', length: 512, nullable: true })
  userAgent: string | null = null;

  @Property({ type: 'varchar', length: 64, nullable: true })
  ip: string | null = null;

  @Property({ type: 'timestamptz', nullable: true })
  lastUsedAt: Date | null = null;

  @Property({ type: 'timestamptz' })
  expiresAt!: Date;

  @Property({ type: 'timestamptz', nullable: true })
  revokedAt: Date | null = null;

  @Enum({ items: () => SessionEndReason, type: 'varchar', length: 32, nullable: true })
  revokedReason: SessionEndReason | null = null;
}

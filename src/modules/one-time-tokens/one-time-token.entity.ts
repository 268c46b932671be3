import { Entity, Enum, Index, ManyToOne, type Opt, Property } from '@mikro-orm/core';
import { BaseEntity } from '../../db/base.entity.js';
import { User } from '../users/user.entity.js';

/** What a one-time token proves when it is presented. */
export enum OneTimeTokenPurpose {
  /** A link token mailed by forgotPassword; valid 1 hour. */
  PASSWORD_RESET = 'PASSWORD_RESET',
  /** A 6-digit code mailed at registration or by sendVerificationEmail; valid 15 minutes, 5 tries. */
  EMAIL_VERIFICATION = 'EMAIL_VERIFICATION',
}

/**
 * A single-use secret sent to a user's mailbox. Only its keyed hash (HMAC-SHA256 with a server key)
 * is stored, so neither a reset link nor a 6-digit code can be recovered or brute-forced from a
 * stolen database. At most one live token per user and purpose: issuing one deletes the older.
 */
@Entity({ tableName: 'one_time_tokens' })
@Index({ name: 'one_time_tokens_user_purpose_idx', properties: ['user', 'purpose'] })
export class OneTimeToken extends BaseEntity {
  @ManyToOne(() => User, { deleteRule: 'cascade' })
  user!: User;

  @Enum({ items: () => OneTimeTokenPurpose, type: 'varchar', length: 32 })
  purpose!: OneTimeTokenPurpose;

  /** HMAC-SHA256 (hex) of the token; see OneTimeTokenService. */
  @Property({ type: 'char', length: 64 })
  @Index({ name: 'one_time_tokens_token_hash_idx' })
  tokenHash!: string;

  @Property({ type: 'timestamptz' })
  expiresAt!: Date;

  @Property({ type: 'timestamptz', nullable: true })
  usedAt: Date | null = null;

  /** Wrong guesses so far (verification codes die after five). */
  @Property({ type: 'smallint', default: 0 })
  attempts: Opt<number> = 0;
}

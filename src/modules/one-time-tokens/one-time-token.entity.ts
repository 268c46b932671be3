import { Entity, Enum, Index, ManyToOne, type Opt, Property } from '@mikro-orm/core';
import { BaseEntity } from '../../db/base.entity.js';
import { User } from '../users/user.entity.js';

/** What a one-time token proves when it is presented. */
export enum OneTimeTokenPurpose {
  /** A link token mailed by forgotPassword; valid 1 hour. */
  PASSWORD_RESET = 'PASSWORD_RESET',
  /** A 6-digit code mailed at registration or by sendVerificationEmail; valid 15 minutes, 5 tries. */
  EMAIL_VERIFICATION = 'EMAIL_VERIFICATION',
  /** A 6-digit code mailed to the new address by requestEmailChange (its target); 15 minutes, 5 tries. */
  EMAIL_CHANGE = 'EMAIL_CHANGE',
  /** The mfaToken of a sign-in whose password was right; 5 minutes, 5 wrong codes. */
  MFA_CHALLENGE = 'MFA_CHALLENGE',
  /** A "this wasn't me" link in a security notice; 7 days, and newer ones leave it alone. */
  LOCKDOWN = 'LOCKDOWN',
}

/**
 * The purposes whose tokens went to the account's current mailbox to prove it: void once the
 * address changes. (Lockdown links stay: they are how the old address takes the account back.)
 */
export const MAILBOX_PURPOSES = [OneTimeTokenPurpose.PASSWORD_RESET, OneTimeTokenPurpose.EMAIL_VERIFICATION, OneTimeTokenPurpose.EMAIL_CHANGE];

/**
 * A single-use secret sent to a user's mailbox. Only its keyed hash (HMAC-SHA256 with a server key)
 * is stored, so neither a reset link nor a 6-digit code can be recovered or brute-forced from a
 * stolen database. At most one live token per user and purpose (but lockdown links): issuing one
 * deletes the older.
 */
@Entity({ tableName: 'one_time_tokens' })
@Index({ name: 'one_time_tokens_user_purpose_idx', properties: ['user', 'purpose'] })
// The addresses live lockdown links were mailed to (UserService.assertEmailAvailable keeps them reserved).
@Index({
  name: 'one_time_tokens_lockdown_target_idx',
  expression: `create index "one_time_tokens_lockdown_target_idx" on "one_time_tokens" ("target") where "purpose" = 'LOCKDOWN' and "used_at" is null`,
})
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

  /**
   * What the token is for beyond its purpose: the new address of an email change, the address a
   * lockdown link was mailed to, what an MFA challenge is bound to.
   */
  @Property({ type: 'varchar', length: 254, nullable: true })
  target: string | null = null;

  /** Wrong guesses so far (verification codes die after five). */
  @Property({ type: 'smallint', default: 0 })
  attempts: Opt<number> = 0;
}

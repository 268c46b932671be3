import { Entity, Enum, Index, type Opt, Property, Unique } from '@mikro-orm/core';
import { Field, ObjectType } from 'type-graphql';
import { BaseEntity } from '../../db/base.entity.js';
import { Role } from './role.js';

/** Limits shared by the table definition and input validation. */
export const USER_LIMITS = {
  emailLength: 254,
  usernameMinLength: 3,
  usernameLength: 32,
  nameLength: 100,
} as const;

/**
 * An account. Emails are stored trimmed and lower-cased (so a plain unique index suffices);
 * usernames keep the case the user chose and are unique case-insensitively through an index on
 * `lower(username)`.
 */
@ObjectType({ simpleResolvers: true, description: 'A user account.' })
@Entity({ tableName: 'users' })
@Unique({
  name: 'users_username_lower_unique',
  expression: 'create unique index "users_username_lower_unique" on "users" (lower("username"))',
})
// The admin list pages newest first by (created_at, id).
@Index({ name: 'users_created_at_id_idx', properties: ['createdAt', 'id'] })
// Substring search of the admin list (UserAdminService.list uses the very same expression).
@Index({
  name: 'users_search_trgm_idx',
  expression: `create index "users_search_trgm_idx" on "users" using gin ((lower("email" || ' ' || "username" || ' ' || coalesce("first_name", '') || ' ' || coalesce("last_name", ''))) gin_trgm_ops)`,
})
export class User extends BaseEntity {
  @Field(() => String, { description: 'Email address, trimmed and lower-cased.' })
  @Property({ type: 'varchar', length: USER_LIMITS.emailLength })
  @Unique({ name: 'users_email_unique' })
  email!: string;

  @Field(() => String, { description: 'Public handle, unique regardless of letter case.' })
  @Property({ type: 'varchar', length: USER_LIMITS.usernameLength })
  username!: string;

  @Field(() => String, { nullable: true, description: 'Given name.' })
  @Property({ type: 'varchar', length: USER_LIMITS.nameLength, nullable: true })
  firstName: string | null = null;

  @Field(() => String, { nullable: true, description: 'Family name.' })
  @Property({ type: 'varchar', length: USER_LIMITS.nameLength, nullable: true })
  lastName: string | null = null;

  /** bcrypt hash; never a GraphQL field and hidden from serialization. */
  @Property({ type: 'varchar', length: 255, hidden: true })
  passwordHash!: string;

  @Field(() => Role, { description: 'What the account may do.' })
  @Enum({ items: () => Role, type: 'varchar', length: 16 })
  role: Role & Opt = Role.USER;

  @Field(() => Boolean, { description: 'False when an administrator has deactivated the account; it cannot sign in.' })
  @Property({ type: 'boolean' })
  active: boolean & Opt = true;

  @Property({ type: 'timestamptz', nullable: true })
  emailVerifiedAt: Date | null = null;

  @Field(() => Date, { nullable: true, description: 'When the account last signed in with its password.' })
  @Property({ type: 'timestamptz', nullable: true })
  lastLoginAt: Date | null = null;

  /**
   * Counts the changes of the account's credentials (password reset or change). Device tokens are
   * bound to it, so a new password disowns every device token issued before; a rehash of the same
   * password leaves it alone.
   */
  @Property({ type: 'integer', default: 0 })
  credentialsVersion: Opt<number> = 0;

  /**
   * The device that reset the password, as `<credentialsVersion>:<device id>`: its device token from
   * before the reset counts as current (see LoginGuard) while the credentials stay at that version,
   * so however many former devices others spend the shared budget of, the owner's resetting device
   * is not among them. `null`, or another version, for none.
   */
  @Property({ type: 'varchar', length: 48, nullable: true, hidden: true })
  resetDevice: string | null = null;

  /** Consecutive failed sign-ins (reset by a successful one or a password reset). */
  @Property({ type: 'smallint', default: 0 })
  failedLoginCount: Opt<number> = 0;

  /** No sign-in attempt is even checked before then (brute-force backoff). */
  @Property({ type: 'timestamptz', nullable: true })
  loginBlockedUntil: Date | null = null;

  /**
   * The TOTP secret (base32), sealed with a server key (see SecretBox): set by an enrollment, in
   * force once {@link mfaEnabledAt} is set. Never a GraphQL field.
   */
  @Property({ type: 'varchar', length: 128, nullable: true, hidden: true })
  totpSecret: string | null = null;

  /** When TOTP two-factor sign-in was turned on; `null` while it is off (even mid-enrollment). */
  @Property({ type: 'timestamptz', nullable: true })
  mfaEnabledAt: Date | null = null;

  /** The latest 30-second TOTP step a code was accepted for: no code of that step or older works again. */
  @Property({ type: 'integer', nullable: true, hidden: true })
  totpLastStep: number | null = null;

  @Field(() => Date, { description: 'When the account last changed.' })
  @Property({ type: 'timestamptz', onUpdate: () => new Date() })
  updatedAt: Date & Opt = new Date();
}

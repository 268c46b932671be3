import { Entity, Index, ManyToOne, Property } from '@mikro-orm/core';
import { BaseEntity } from '../../db/base.entity.js';
import { User } from '../users/user.entity.js';

/**
 * One of the ten single-use codes that stand in for the authenticator. Only a keyed hash bound to
 * the account is stored (like one-time tokens), so a stolen table gives up no code.
 */
@Entity({ tableName: 'recovery_codes' })
@Index({ name: 'recovery_codes_user_idx', properties: ['user'] })
export class RecoveryCode extends BaseEntity {
  @ManyToOne(() => User, { deleteRule: 'cascade' })
  user!: User;

  /** HMAC-SHA256 (hex) of the normalised code and the account id. */
  @Property({ type: 'char', length: 64 })
  codeHash!: string;

  @Property({ type: 'timestamptz', nullable: true })
  usedAt: Date | null = null;
}

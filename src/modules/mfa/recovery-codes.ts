import { createHmac, randomInt } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { User } from '../users/user.entity.js';
import { RecoveryCode } from './recovery-code.entity.js';

/** How many codes an enrollment or a regeneration hands out. */
export const RECOVERY_CODE_COUNT = 10;
/** Crockford-like alphabet without look-alikes (no 0/o, 1/l/i). */
const ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789';

/**
 * Single-use recovery codes: `xxxxx-xxxxx` (about 49 bits each), stored as keyed hashes bound to
 * the account. Typed back in any case, with or without the dash and spaces.
 */
export class RecoveryCodes {
  constructor(private readonly key: Uint8Array) {}

  /** Replaces the account's codes with {@link RECOVERY_CODE_COUNT} new ones, returned in clear once. */
  async replace(em: EntityManager, user: User): Promise<string[]> {
    await em.nativeDelete(RecoveryCode, { user: user.id });
    const codes = Array.from({ length: RECOVERY_CODE_COUNT }, () => this.generate());
    for (const code of codes) em.create(RecoveryCode, { user, codeHash: this.hash(user.id, code) });
    return codes;
  }

  /** Spends one code of the account in one conditional UPDATE: `true` once per code, however many race. */
  async use(em: EntityManager, userId: string, code: string): Promise<boolean> {
    const normalized = code.toLowerCase().replace(/[\s-]/g, '');
    if (!/^[a-z0-9]{10}$/.test(normalized)) return false;
    const used = await em.nativeUpdate(RecoveryCode, { user: userId, codeHash: this.hash(userId, normalized), usedAt: null }, { usedAt: new Date() });
    return used > 0;
  }

  /** Removes every code of the account (MFA turned off). */
  async clear(em: EntityManager, userId: string): Promise<void> {
    await em.nativeDelete(RecoveryCode, { user: userId });
  }

  private generate(): string {
    const characters = Array.from({ length: 10 }, () => ALPHABET[randomInt(ALPHABET.length)]).join('');
    return `${characters.slice(0, 5)}-${characters.slice(5)}`;
  }

  private hash(userId: string, code: string): string {
    return createHmac('sha256', this.key).update(`${userId}\0${code.replace('-', '')}`).digest('hex');
  }
}

import { randomBytes } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { BadUserInputError } from '../../errors.js';

/** Password length bounds (CONTRACT.md), counted in characters after NFKC normalization. */
export const PASSWORD_LIMITS = { minLength: 12, maxLength: 256 } as const;

/**
 * NFKC makes a password typed on one keyboard match the same password typed on another
 * (full-width digits, composed accents), as NIST SP 800-63B §5.1.1.2 recommends.
 */
export function normalizePassword(password: string): string {
  return password.normalize('NFKC');
}

/**
 * Checks a new password against the policy and returns its normalized form. Only length and
 * characters here; no composition rules (NIST SP 800-63B).
 */
export function checkNewPassword(password: string, field = 'password'): string {
  const normalized = normalizePassword(password);
  const length = [...normalized].length;
  if (length < PASSWORD_LIMITS.minLength) {
    throw new BadUserInputError(`Password must be at least ${PASSWORD_LIMITS.minLength} characters.`, field);
  }
  if (length > PASSWORD_LIMITS.maxLength) {
    throw new BadUserInputError(`Password must be at most ${PASSWORD_LIMITS.maxLength} characters.`, field);
  }
  if (normalized.includes('\0')) throw new BadUserInputError('Password must not contain NUL characters.', field);
  return normalized;
}

/**
 * bcrypt hashing at the configured cost. One instance per app: it also keeps a hash of a random
 * password so that a login for an unknown account costs the same single comparison as a real one.
 */
export class PasswordHasher {
  private constructor(
    private readonly cost: number,
    private readonly dummyHash: string,
  ) {}

  /** Creates the hasher, paying once for the dummy hash used by {@link verifyNothing}. */
  static async create(cost: number): Promise<PasswordHasher> {
    return new PasswordHasher(cost, await bcrypt.hash(randomBytes(24).toString('base64'), cost));
  }

  /** Hashes an already-checked (normalized) password. */
  hash(password: string): Promise<string> {
    return bcrypt.hash(password, this.cost);
  }

  /** Compares a password typed at login (normalized here) with a stored hash. */
  verify(password: string, hash: string): Promise<boolean> {
    return bcrypt.compare(normalizePassword(password), hash);
  }

  /** Spends one comparison and fails, so unknown accounts cannot be told apart by timing. */
  async verifyNothing(password: string): Promise<false> {
    await bcrypt.compare(normalizePassword(password), this.dummyHash);
    return false;
  }
}

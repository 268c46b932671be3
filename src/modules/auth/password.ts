import { createHash, randomBytes } from 'node:crypto';
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
 * Tag of the stored hash format, so a later scheme (a keyed pre-hash, another algorithm) can be
 * introduced while existing hashes stay verifiable.
 */
const SCHEME = 'sha256-bcrypt';

/**
 * bcrypt reads only the first 72 bytes of its input; a 256-character password could be cut short.
 * The SHA-256 digest (44 base64 characters) is what bcrypt hashes instead, so every character counts.
 */
function preHash(password: string): string {
  return createHash('sha256').update(normalizePassword(password), 'utf8').digest('base64');
}

/**
 * bcrypt hashing at the configured cost, of a SHA-256 pre-hash. One instance per app: it also keeps
 * a hash of a random password so that a login for an unknown account costs the same single
 * comparison as a real one.
 */
export class PasswordHasher {
  private constructor(
    private readonly cost: number,
    private readonly dummyHash: string,
  ) {}

  /** Creates the hasher, paying once for the dummy hash used by {@link verifyNothing}. */
  static async create(cost: number): Promise<PasswordHasher> {
    const hasher = new PasswordHasher(cost, '');
    return new PasswordHasher(cost, await hasher.hash(randomBytes(24).toString('base64')));
  }

  /** Hashes a password that passed {@link checkNewPassword}; the result names its scheme. */
  async hash(password: string): Promise<string> {
    return `${SCHEME}:${await bcrypt.hash(preHash(password), this.cost)}`;
  }

  /** Compares a password typed at login with a stored hash; a hash of an unknown scheme never matches. */
  async verify(password: string, stored: string): Promise<boolean> {
    const separator = stored.indexOf(':');
    if (stored.slice(0, separator) !== SCHEME) return false;
    return bcrypt.compare(preHash(password), stored.slice(separator + 1));
  }

  /** Spends one comparison and fails, so unknown accounts cannot be told apart by timing. */
  async verifyNothing(password: string): Promise<false> {
    await this.verify(password, this.dummyHash);
    return false;
  }
}

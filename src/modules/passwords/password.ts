import { createHmac, randomBytes } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { BcryptPool } from './bcrypt-pool.js';
import { normalizePassword } from './password-policy.js';

/** The shortest pepper accepted: 256 bits, the HMAC-SHA256 block of security. */
const MIN_PEPPER_BYTES = 32;

/**
 * Tag of the current stored format: `hmac-bcrypt:` + bcrypt of a keyed pre-hash. The tag lets a
 * later scheme be introduced while existing hashes stay verifiable (see {@link PasswordHasher.needsRehash}).
 */
const SCHEME_PREFIX = 'hmac-bcrypt:';

/** A bcrypt hash in modular crypt format: `$2a$`, `$2b$` or `$2y$`, two-digit cost, 53 characters of salt and hash. */
const BCRYPT_HASH = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;

/**
 * Hashes and verifies passwords. One instance per app; it also keeps a hash of a random password so
 * that a login for an unknown account costs the same single comparison as a real one.
 *
 * Current scheme: bcrypt( base64( HMAC-SHA256(pepper, NFKC(password)) ) ). bcrypt reads only the
 * first 72 bytes of its input; the 44-byte base64 digest stands in for passwords of up to 256
 * characters (1 KiB of UTF-8), so nothing is ever truncated. The pepper is a server secret kept out
 * of the database, so a leaked table alone cannot be attacked offline.
 *
 * Plain bcrypt hashes (imported from another system) are verified on the password as typed and
 * reported by {@link needsRehash}, so the next successful login upgrades them.
 */
export class PasswordHasher {
  private dummyHash = '';
  private readonly pool = new BcryptPool();

  private constructor(
    private readonly cost: number,
    private readonly pepper: Buffer,
  ) {}

  /** Creates the hasher, paying once for the dummy hash used by {@link verifyNothing}. */
  static async create(cost: number, pepper: Uint8Array): Promise<PasswordHasher> {
    if (pepper.byteLength < MIN_PEPPER_BYTES) throw new Error(`The password pepper must be at least ${MIN_PEPPER_BYTES} bytes.`);
    const hasher = new PasswordHasher(cost, Buffer.from(pepper));
    hasher.dummyHash = await hasher.hash(randomBytes(24).toString('base64'));
    return hasher;
  }

  /** Hashes a password that passed `checkNewPassword`, in the current scheme; the result names its scheme. */
  async hash(password: string): Promise<string> {
    return `${SCHEME_PREFIX}${await this.pool.hash(this.preHash(password), this.cost)}`;
  }

  /**
   * Compares a password typed at login with a stored hash: the current scheme, or a plain bcrypt
   * hash. Anything else (unknown scheme, malformed value) never matches.
   */
  async verify(password: string, stored: string): Promise<boolean> {
    if (stored.startsWith(SCHEME_PREFIX)) {
      const inner = stored.slice(SCHEME_PREFIX.length);
      return BCRYPT_HASH.test(inner) && this.pool.compare(this.preHash(password), inner);
    }
    if (BCRYPT_HASH.test(stored)) return this.pool.compare(password, stored);
    return false;
  }

  /** Whether a stored hash should be replaced by a fresh one: another scheme, or another bcrypt cost. */
  needsRehash(stored: string): boolean {
    if (!stored.startsWith(SCHEME_PREFIX)) return true;
    const inner = stored.slice(SCHEME_PREFIX.length);
    return !BCRYPT_HASH.test(inner) || bcrypt.getRounds(inner) !== this.cost;
  }

  /** Spends one comparison and fails, so unknown accounts cannot be told apart by timing. */
  async verifyNothing(password: string): Promise<false> {
    await this.verify(password, this.dummyHash);
    return false;
  }

  /** Stops the hashing workers. */
  close(): Promise<void> {
    return this.pool.close();
  }

  /** base64( HMAC-SHA256(pepper, NFKC(password)) ): 44 ASCII bytes, well inside bcrypt's 72. */
  private preHash(password: string): string {
    return createHmac('sha256', this.pepper).update(normalizePassword(password), 'utf8').digest('base64');
  }
}

import type { EntityManager } from '@mikro-orm/postgresql';
import { violatedUniqueConstraint } from '../../db/constraints.js';
import { BadUserInputError, ConflictError } from '../../errors.js';
import type { PasswordHasher } from '../auth/password.js';
import { checkNewPassword } from '../auth/password-policy.js';
import { Role } from './role.js';
import { User } from './user.entity.js';
import { normalizeEmail, normalizeName, normalizeUsername } from './user.rules.js';

/** Everything needed to open an account; validated and normalized by {@link UserService.create}. */
export interface NewUserInput {
  email: string;
  username: string;
  password: string;
  firstName?: string | null;
  lastName?: string | null;
  role?: Role;
  active?: boolean;
}

/** Which input field a unique index guards, for CONFLICT errors that name the field. */
const UNIQUE_FIELDS: Record<string, { field: string; message: string }> = {
  users_email_unique: { field: 'email', message: 'An account with this email address already exists.' },
  users_username_lower_unique: { field: 'username', message: 'This username is already taken.' },
};

/** Owns accounts: creation, lookup, and the rules their fields follow. */
export class UserService {
  constructor(private readonly passwords: PasswordHasher) {}

  /**
   * Validates, hashes and inserts a new account, flushing at once so that a duplicate email or
   * username (including one inserted by a concurrent request a moment earlier) becomes CONFLICT.
   */
  async create(em: EntityManager, input: NewUserInput): Promise<User> {
    const user = await this.build(em, input);
    await flushTranslatingConflicts(em);
    return user;
  }

  /**
   * Validates every field (before paying for the hash) and persists the account without flushing,
   * for callers that write it together with other rows; they flush with {@link flushTranslatingConflicts}.
   */
  async build(em: EntityManager, input: NewUserInput): Promise<User> {
    const email = normalizeEmail(input.email);
    const username = normalizeUsername(input.username);
    const firstName = normalizeName(input.firstName, 'firstName') ?? null;
    const lastName = normalizeName(input.lastName, 'lastName') ?? null;
    const password = checkNewPassword(input.password, { email, username });
    return em.create(User, {
      email,
      username,
      firstName,
      lastName,
      passwordHash: await this.passwords.hash(password),
      role: input.role ?? Role.USER,
      active: input.active ?? true,
    });
  }

  /**
   * Finds an account by email (when the identifier has an `@`) or by username, ignoring case.
   * Returns `null` for anything that cannot name an account, without touching the database (so
   * NUL bytes and other junk never reach SQL).
   */
  async findByIdentifier(em: EntityManager, identifier: string): Promise<User | null> {
    const email = identifier.includes('@');
    const normalized = orNull(() => (email ? normalizeEmail(identifier) : normalizeUsername(identifier)));
    if (normalized === null) return null;
    if (email) return em.findOne(User, { email: normalized });
    return em.createQueryBuilder(User).select('*').where('lower(username) = lower(?)', [normalized]).getSingleResult();
  }
}

/** The value of `read`, or `null` when it refuses its input: no account can have such a value. */
function orNull<T>(read: () => T): T | null {
  try {
    return read();
  } catch (error) {
    if (error instanceof BadUserInputError) return null;
    throw error;
  }
}

/** Flushes, turning a unique-index violation on users into CONFLICT for the field it guards. */
export async function flushTranslatingConflicts(em: EntityManager): Promise<void> {
  try {
    await em.flush();
  } catch (error) {
    const constraint = violatedUniqueConstraint(error);
    if (constraint === undefined) throw error;
    const conflict = UNIQUE_FIELDS[constraint] ?? { field: undefined, message: 'This value is already taken.' };
    throw new ConflictError(conflict.message, conflict.field);
  }
}

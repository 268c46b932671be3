import type { EntityManager } from '@mikro-orm/postgresql';
import { isUuid } from '../../db/base.entity.js';
import { violatedUniqueConstraint } from '../../db/constraints.js';
import { BadUserInputError, ConflictError, ForbiddenError } from '../../errors.js';
import { MAILBOX_PURPOSES, OneTimeTokenPurpose } from '../one-time-tokens/one-time-token.entity.js';
import type { OneTimeTokenService } from '../one-time-tokens/one-time-token.service.js';
import type { PasswordHasher } from '../passwords/password.js';
import { checkNewPassword } from '../passwords/password-policy.js';
import { lockAccount } from './account-lock.js';
import { Role } from './role.js';
import { User } from './user.entity.js';
import { normalizeEmail, normalizeName, normalizeUsername } from './user.rules.js';
import { USER_STATE_FIELDS, type UserEvents, type UserState, type WebhookEventType } from '../webhooks/user-events.js';

/** The SQL condition on `users` for the account an identifier names (`?` placeholders). */
export interface IdentifierMatch {
  sql: string;
  params: [string];
}

/**
 * The account an email (when the identifier has an `@`) or username names, ignoring case, as a
 * condition both indexes serve; `null` for anything that cannot name an account (so NUL bytes and
 * other junk never reach SQL).
 */
export function identifierMatch(identifier: string): IdentifierMatch | null {
  const email = identifier.includes('@');
  const normalized = orNull(() => (email ? normalizeEmail(identifier) : normalizeUsername(identifier)));
  if (normalized === null) return null;
  return email ? { sql: '"email" = ?', params: [normalized] } : { sql: 'lower("username") = lower(?)', params: [normalized] };
}

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

/** Column changes to an account, as validated by {@link UserService.validateChanges}. */
export type UserChanges = Partial<Pick<User, 'email' | 'username' | 'firstName' | 'lastName' | 'role' | 'active' | 'emailVerifiedAt'>>;

/** Changes requested by a client; `undefined` (and `null` for required fields) means "unchanged". */
export interface RequestedChanges {
  email?: string | null;
  username?: string | null;
  firstName?: string | null;
  lastName?: string | null;
  role?: Role | null;
  active?: boolean | null;
}

// Any constant works; every change that could remove the last active admin takes this lock first.
const ADMIN_SET_LOCK = 7_216_004_312;

/**
 * Owns accounts: creation, lookup, changes, deletion, and the rules their fields follow. Each
 * creation, change and deletion it writes is announced to webhooks ({@link UserEvents}) in the same
 * unit of work; services that write other columns themselves announce with {@link announce}.
 */
export class UserService {
  constructor(
    private readonly passwords: PasswordHasher,
    private readonly events: UserEvents,
    private readonly tokens: OneTimeTokenService,
  ) {}

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
    await this.assertEmailAvailable(em, email, 'email');
    const user = em.create(User, {
      email,
      username,
      firstName,
      lastName,
      passwordHash: await this.passwords.hash(password),
      role: input.role ?? Role.USER,
      active: input.active ?? true,
    });
    this.events.emit(em, 'user.created', user);
    return user;
  }

  /**
   * Announces each of `types` about an account whose row the caller has just changed in `em`'s
   * transaction (a password, a verified address, a lockdown): given its id, as that transaction
   * sees the row now (read once for all the types); given the row, when the caller has just read it.
   */
  async announce(em: EntityManager, types: WebhookEventType | readonly WebhookEventType[], user: string | UserState): Promise<void> {
    const state =
      typeof user === 'string' ? await em.createQueryBuilder(User).select([...USER_STATE_FIELDS]).where({ id: user }).execute<UserState | null>('get') : user;
    if (!state) return;
    for (const type of typeof types === 'string' ? [types] : types) this.events.emit(em, type, state);
  }

  /**
   * Refuses (CONFLICT on `field`) an address that is some other account's, or that a live "this
   * wasn't me" link of another account was mailed to: that link may still give the address back to
   * its owner (for up to 7 days), so nobody may take it meanwhile — a hijacker registering the old
   * address would otherwise block the recovery. The unique index still decides races on current
   * addresses.
   */
  async assertEmailAvailable(em: EntityManager, email: string, field: string, exceptUserId: string | null = null): Promise<void> {
    if (!(await this.isEmailAvailable(em, email, exceptUserId))) throw new ConflictError(UNIQUE_FIELDS.users_email_unique.message, field);
  }

  /** Whether {@link assertEmailAvailable} would let `email` through. */
  async isEmailAvailable(em: EntityManager, email: string, exceptUserId: string | null = null): Promise<boolean> {
    const taken = await em.getConnection().execute<unknown[]>(
      `select 1 from "users" where "email" = ? and "id" is distinct from ?::uuid limit 1`,
      [email, exceptUserId],
      'all',
      em.getTransactionContext(),
    );
    // An address an email change replaced stays its owner's while their lockdown links live.
    return taken.length === 0 && !(await this.tokens.isHeldByAnother(em, OneTimeTokenPurpose.LOCKDOWN, email, exceptUserId));
  }

  /**
   * Finds an account by email (when the identifier has an `@`) or by username, ignoring case.
   * Returns `null` for anything that cannot name an account, without touching the database (so
   * NUL bytes and other junk never reach SQL).
   */
  async findByIdentifier(em: EntityManager, identifier: string): Promise<User | null> {
    const match = identifierMatch(identifier);
    return match ? this.findByMatch(em, match) : null;
  }

  /** The account a condition from {@link identifierMatch} names, or `null`. */
  findByMatch(em: EntityManager, match: IdentifierMatch): Promise<User | null> {
    return em.createQueryBuilder(User).select('*').where(match.sql, match.params).getSingleResult();
  }

  /** The account with this username in any letter case, or `null`. */
  findByUsername(em: EntityManager, username: string): Promise<User | null> {
    return em.createQueryBuilder(User).select('*').where('lower(username) = lower(?)', [username]).getSingleResult();
  }

  /** The account with this id, or `null` (also for ids that are not UUIDs). */
  findById(em: EntityManager, id: string): Promise<User | null> {
    return isUuid(id) ? em.findOne(User, { id }) : Promise.resolve(null);
  }

  /** Normalizes and validates requested changes, keeping only the fields that were sent. */
  validateChanges(requested: RequestedChanges): UserChanges {
    const changes: UserChanges = {};
    if (requested.email !== undefined && requested.email !== null) changes.email = normalizeEmail(requested.email);
    if (requested.username !== undefined && requested.username !== null) changes.username = normalizeUsername(requested.username);
    if (requested.firstName !== undefined) changes.firstName = normalizeName(requested.firstName, 'firstName') ?? null;
    if (requested.lastName !== undefined) changes.lastName = normalizeName(requested.lastName, 'lastName') ?? null;
    if (requested.role !== undefined && requested.role !== null) changes.role = requested.role;
    if (requested.active !== undefined && requested.active !== null) changes.active = requested.active;
    return changes;
  }

  /**
   * Writes only the changed columns, in one UPDATE, so concurrent edits of other fields of the same
   * account are never overwritten with stale values (no lost updates). A new email address is
   * unverified, and codes and reset links mailed to the old one stop working. Returns the fresh
   * row, or `null` when the account no longer exists (deleted meanwhile). A change of any value is
   * announced as `user.updated`; writing the values it already had is not.
   */
  async applyChanges(em: EntityManager, user: Pick<User, 'id'> & Required<UserChanges>, changes: UserChanges): Promise<User | null> {
    const changed = (Object.keys(changes) as Array<keyof UserChanges>).some((field) => changes[field] !== user[field]);
    const effective: UserChanges = { ...changes };
    const emailChanged = changes.email !== undefined && changes.email !== user.email;
    if (emailChanged) {
      effective.emailVerifiedAt = null;
      await this.assertEmailAvailable(em, changes.email!, 'email', user.id);
    }
    if (Object.keys(effective).length > 0) {
      const updated = await translatingConflicts(() => em.nativeUpdate(User, { id: user.id }, { ...effective, updatedAt: new Date() }));
      if (updated === 0) return null;
      if (emailChanged) await this.tokens.voidAll(em, user.id, MAILBOX_PURPOSES);
    }
    const fresh = await em.findOne(User, { id: user.id }, { refresh: true });
    if (fresh && changed) this.events.emit(em, 'user.updated', fresh);
    return fresh;
  }

  /**
   * Runs `work` in a transaction holding the admin-set lock. Every change that could leave no active
   * admin runs under it and checks with {@link assertNotLastAdmin}, so two admins demoting each other
   * at once cannot both succeed.
   */
  underAdminSetLock<T>(em: EntityManager, work: (tx: EntityManager) => Promise<T>): Promise<T> {
    return em.transactional(async (tx) => {
      await tx.execute(`select pg_advisory_xact_lock(${ADMIN_SET_LOCK})`);
      return work(tx);
    });
  }

  /**
   * Deletes an account; its sessions and one-time tokens go with it (foreign keys cascade), its
   * audit trail stays. The row is locked first, like every change to sessions (see account-lock.ts),
   * so a refresh in flight cannot deadlock against the cascade. `false` when there is no such account.
   */
  async delete(tx: EntityManager, userId: string): Promise<boolean> {
    const account = await lockAccount(tx, userId);
    if (!account) return false;
    if ((await tx.nativeDelete(User, { id: userId })) === 0) return false;
    // The locked row is the account as it was deleted: nothing could change it in between.
    this.events.emit(tx, 'user.deleted', account.user);
    return true;
  }

  /** Refuses (FORBIDDEN) to demote, deactivate or delete the only active admin. Call under the admin-set lock. */
  async assertNotLastAdmin(tx: EntityManager, userId: string): Promise<void> {
    const target = await tx.findOne(User, { id: userId }, { refresh: true });
    if (target?.role !== Role.ADMIN || !target.active) return;
    const others = await tx.count(User, { role: Role.ADMIN, active: true, id: { $ne: userId } });
    if (others === 0) throw new ForbiddenError('The last active admin cannot be demoted, deactivated or deleted.');
  }
}

/** The value of `read`, or `null` when it refuses its input: no account can have such a value. */
export function orNull<T>(read: () => T): T | null {
  try {
    return read();
  } catch (error) {
    if (error instanceof BadUserInputError) return null;
    throw error;
  }
}

/** Runs a write, turning a unique-index violation on users into CONFLICT for the field it guards (or `field`). */
export async function translatingConflicts<T>(write: () => Promise<T>, field?: string): Promise<T> {
  try {
    return await write();
  } catch (error) {
    const constraint = violatedUniqueConstraint(error);
    if (constraint === undefined) throw error;
    const conflict = UNIQUE_FIELDS[constraint] ?? { field: undefined, message: 'This value is already taken.' };
    throw new ConflictError(conflict.message, field ?? conflict.field);
  }
}

/** Flushes, turning a unique-index violation on users into CONFLICT for the field it guards. */
export function flushTranslatingConflicts(em: EntityManager): Promise<void> {
  return translatingConflicts(() => em.flush());
}

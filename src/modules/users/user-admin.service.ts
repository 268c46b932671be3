import type { EntityManager } from '@mikro-orm/postgresql';
import type { Config } from '../../config/config.js';
import { BadUserInputError, NotFoundError } from '../../errors.js';
import { type Condition, keysetPage, type Page } from '../../graphql/pagination.js';
import type { Logger } from '../../logger.js';
import type { AuditService } from '../audit/audit.service.js';
import type { SecurityNotices } from '../lockdown/security-notices.js';
import { AuditEventType } from '../audit/audit-event.entity.js';
import type { RequestMeta } from '../sessions/request-meta.js';
import { SessionEndReason } from '../sessions/session.entity.js';
import type { SessionService } from '../sessions/session.service.js';
import { lockAccount } from './account-lock.js';
import { Role } from './role.js';
import { User } from './user.entity.js';
import { USER_VIEW_FIELDS, type UserView, userView } from './user.view.js';
import { flushTranslatingConflicts, type NewUserInput, orNull, type RequestedChanges, type UserService } from './user.service.js';
import { normalizeEmail } from './user.rules.js';

/** Filters of the admin user list. */
export interface UserListFilter {
  search?: string | null;
  role?: Role | null;
  active?: boolean | null;
}

const SEARCH_MAX_LENGTH = 100;
const NO_SUCH_USER = 'No user has this id.';

/**
 * The text `search` looks in; the same expression backs the trigram index
 * `users_search_trgm_idx`, so a substring search does not scan the table.
 */
const SEARCH_TEXT = `lower("email" || ' ' || "username" || ' ' || coalesce("first_name", '') || ' ' || coalesce("last_name", ''))`;

/** Escapes `%`, `_` and `\` so user input matches literally in LIKE. */
function likeLiteral(text: string): string {
  return text.replace(/[\\%_]/g, (character) => `\\${character}`);
}

/** What admins do to accounts: list, create, change, delete; and the first admin at start-up. */
export class UserAdminService {
  constructor(
    private readonly users: UserService,
    private readonly sessions: SessionService,
    private readonly audit: AuditService,
    private readonly notices: SecurityNotices,
  ) {}

  /** Newest first, keyset-paginated; `totalCount` is the size of the filtered set. */
  list(em: EntityManager, first: number | null | undefined, after: string | null | undefined, filter: UserListFilter = {}): Promise<Page<UserView>> {
    const where: Condition[] = [];
    const search = filter.search?.trim();
    if (search) {
      if ([...search].length > SEARCH_MAX_LENGTH || /\p{Cc}/u.test(search)) {
        throw new BadUserInputError(`Search must be at most ${SEARCH_MAX_LENGTH} printable characters.`, 'search');
      }
      where.push({ sql: `${SEARCH_TEXT} like ?`, params: [`%${likeLiteral(search.toLowerCase())}%`] });
    }
    if (filter.role) where.push({ sql: '"role" = ?', params: [filter.role] });
    if (filter.active !== undefined && filter.active !== null) where.push({ sql: '"active" = ?', params: [filter.active] });
    return keysetPage(em, { entity: User, fields: USER_VIEW_FIELDS, where }, first, after, userView);
  }

  /** Creates an account with any role; the password policy applies. */
  async create(em: EntityManager, actorId: string | null, input: NewUserInput, meta: RequestMeta): Promise<User> {
    const user = await this.users.build(em, input);
    this.audit.record(em, AuditEventType.USER_CREATED, { userId: user.id, actorId }, meta);
    await flushTranslatingConflicts(em);
    return user;
  }

  /**
   * Changes an account. Deactivation ends its sessions at once; a role change applies from the
   * user's next request (roles are read per request). The last active admin stays one.
   */
  async update(em: EntityManager, actorId: string, id: string, requested: RequestedChanges, meta: RequestMeta): Promise<User> {
    if (!(await this.users.findById(em, id))) throw new NotFoundError(NO_SUCH_USER);
    const changes = this.users.validateChanges(requested);
    return this.users.underAdminSetLock(em, async (tx) => {
      if (changes.role === Role.USER || changes.active === false) await this.users.assertNotLastAdmin(tx, id);
      // Locked before anything changes: deactivation ends the sessions, and no rotation may slip past.
      const account = await lockAccount(tx, id);
      if (!account) throw new NotFoundError(NO_SUCH_USER);
      const before = account.user;
      const previous = { role: before.role, active: before.active, email: before.email };
      const updated = await this.users.applyChanges(tx, before, changes);
      if (!updated) throw new NotFoundError(NO_SUCH_USER);
      const subject = { userId: id, actorId };
      if (updated.role !== previous.role) this.audit.record(tx, AuditEventType.ROLE_CHANGED, subject, meta);
      if (previous.active && !updated.active) {
        await this.sessions.endAllOf(account, SessionEndReason.DEACTIVATED);
        this.audit.record(tx, AuditEventType.USER_DEACTIVATED, subject, meta);
      }
      const other = ['email', 'username', 'firstName', 'lastName'].some((field) => field in changes) || (!previous.active && updated.active);
      if (other) this.audit.record(tx, AuditEventType.USER_UPDATED, subject, meta);
      if (updated.email !== previous.email) {
        // As a confirmed change of the address ends the other sessions, an admin's ends them all: a
        // correction after a hijack leaves the hijacker nothing signed in.
        if (previous.active) await this.sessions.endAllOf(account, SessionEndReason.EMAIL_CHANGED);
        // The old address hears of it, with a "this wasn't me" link that cannot undo the admin's change.
        await this.notices.sendAfterAdminEmailChange(tx, updated, previous.email);
      }
      await tx.flush();
      return updated;
    });
  }

  /** Deletes an account with its sessions and tokens; its audit trail stays. */
  async delete(em: EntityManager, actorId: string, id: string, meta: RequestMeta): Promise<true> {
    if (!(await this.users.findById(em, id))) throw new NotFoundError(NO_SUCH_USER);
    await this.users.underAdminSetLock(em, async (tx) => {
      await this.users.assertNotLastAdmin(tx, id);
      if (!(await this.users.delete(tx, id))) throw new NotFoundError(NO_SUCH_USER);
      this.audit.record(tx, AuditEventType.USER_DELETED, { userId: id, actorId }, meta);
    });
    return true;
  }

  /**
   * Creates the configured first admin when no admin exists. Idempotent across restarts, and across
   * instances starting together: the admin-set lock serializes them and the later ones find the
   * admin. An email or username already used by a non-admin account is reported, never promoted.
   */
  async ensureFirstAdmin(em: EntityManager, admin: NonNullable<Config['admin']>, logger: Logger): Promise<void> {
    await this.users.underAdminSetLock(em, async (tx) => {
      const admins = await tx.find(User, { role: Role.ADMIN }, { orderBy: { createdAt: 'asc' }, fields: ['username', 'email'] });
      if (admins.length > 0) {
        // Said at every start-up, so an operator who expected ADMIN_* to do something learns why it did not.
        const email = orNull(() => normalizeEmail(admin.email));
        if (admins.some((existing) => existing.email === email)) {
          logger.info('ADMIN_EMAIL names an existing admin: ADMIN_PASSWORD and ADMIN_USERNAME are ignored (they only apply when the first admin is created; change the password by signing in)');
        } else {
          logger.warn({ admins: admins.length, firstAdmin: admins[0].username }, 'ADMIN_* is ignored: an admin account already exists, and ADMIN_* only creates the first one');
        }
        return;
      }
      const taken = (await this.users.findByIdentifier(tx, admin.email)) ?? (await this.users.findByIdentifier(tx, admin.username));
      if (taken) {
        logger.error({ userId: taken.id }, 'ADMIN_EMAIL or ADMIN_USERNAME belongs to an existing non-admin account; no admin was created');
        return;
      }
      const user = await this.create(tx, null, { ...admin, role: Role.ADMIN, active: true }, { ip: null, userAgent: 'start-up (ADMIN_EMAIL)' });
      logger.info({ userId: user.id, username: user.username }, 'created the first admin from ADMIN_EMAIL');
    });
  }
}

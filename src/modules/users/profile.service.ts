import type { EntityManager } from '@mikro-orm/postgresql';
import { ForbiddenError } from '../../errors.js';
import type { AuditService } from '../audit/audit.service.js';
import { AuditEventType } from '../audit/audit-event.entity.js';
import type { Viewer } from '../sign-in/auth.service.js';
import type { Reauthentication } from '../sign-in/reauthentication.js';
import type { RequestMeta } from '../sessions/request-meta.js';
import { lockLiveViewer, withLiveViewer } from '../sessions/session.service.js';
import { Role } from './role.js';
import type { UserView } from './user.view.js';
import type { UserService } from './user.service.js';

/** What a signed-in user may see and do to their own account. */
export class ProfileService {
  constructor(
    private readonly users: UserService,
    private readonly audit: AuditService,
    private readonly reauthentication: Reauthentication,
  ) {}

  /**
   * An account as the viewer may see it: admins see anyone (`null` when there is no such account);
   * others see only themselves and get FORBIDDEN for anyone else, whether or not that account
   * exists, so ids and usernames cannot be probed.
   */
  async visible(em: EntityManager, viewer: Viewer, target: { id: string } | { username: string }): Promise<UserView | null> {
    const isSelf = 'id' in target ? target.id === viewer.user.id : target.username.toLowerCase() === viewer.user.username.toLowerCase();
    if (isSelf) return viewer.user;
    if (viewer.user.role !== Role.ADMIN) throw new ForbiddenError('You may only look up your own account.');
    return 'id' in target ? this.users.findById(em, target.id) : this.users.findByUsername(em, target.username.trim());
  }

  /** Changes the viewer's username and names; only the columns sent are written. */
  async update(em: EntityManager, viewer: Viewer, requested: { username?: string | null; firstName?: string | null; lastName?: string | null }, meta: RequestMeta): Promise<UserView> {
    const changes = this.users.validateChanges({ username: requested.username, firstName: requested.firstName, lastName: requested.lastName });
    if (Object.keys(changes).length === 0) return viewer.user;
    // Under the account's lock, in one transaction: the change, its audit event and its webhook
    // event commit together, and "did anything change" is judged against the row as it is now.
    // A session ended (or an account deleted) while this request was on its way changes nothing.
    return withLiveViewer(em, viewer, async (account) => {
      // The row exists: it is locked.
      const fresh = (await this.users.applyChanges(account.em, account.user, changes))!;
      this.audit.record(account.em, AuditEventType.USER_UPDATED, { userId: viewer.user.id, actorId: viewer.user.id }, meta);
      return fresh;
    });
  }

  /**
   * Deletes the viewer's account after checking the password (and, where MFA is on, a code):
   * sessions and tokens go with it (so every access token stops working), the audit trail stays.
   * The last active admin cannot leave.
   */
  async deleteSelf(em: EntityManager, viewer: Viewer, password: string, code: string | null, meta: RequestMeta): Promise<true> {
    await this.reauthentication.confirm(em, viewer, { password, passwordField: 'password', code }, meta);
    await this.users.underAdminSetLock(em, async (tx) => {
      await lockLiveViewer(tx, viewer);
      await this.users.assertNotLastAdmin(tx, viewer.user.id);
      await this.users.delete(tx, viewer.user.id);
      this.audit.record(tx, AuditEventType.USER_DELETED, { userId: viewer.user.id, actorId: viewer.user.id }, meta);
    });
    return true;
  }
}

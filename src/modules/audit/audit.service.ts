import type { EntityManager } from '@mikro-orm/postgresql';
import { isUuid } from '../../db/base.entity.js';
import { BadUserInputError } from '../../errors.js';
import { keysetPage, type Page } from '../../graphql/pagination.js';
import { type RequestMeta, storedUserAgent } from '../auth/request-meta.js';
import { AuditEvent, type AuditEventType } from './audit-event.entity.js';

/** The one recorder of security events. */
export class AuditService {
  /**
   * Adds an event to the unit of work of `em`, so it commits (or not) together with the change it
   * records. Callers flush.
   */
  record(em: EntityManager, type: AuditEventType, subject: { userId?: string | null; actorId?: string | null }, meta: RequestMeta): AuditEvent {
    return em.create(AuditEvent, {
      type,
      userId: subject.userId ?? null,
      actorId: subject.actorId ?? null,
      ip: meta.ip,
      userAgent: storedUserAgent(meta),
    });
  }

  /** Events newest first, optionally of one account (including a deleted one). */
  list(em: EntityManager, first: number | null | undefined, after: string | null | undefined, userId?: string | null): Promise<Page<AuditEvent>> {
    // A listing may lag a little behind the primary: it reads from a replica when there is one.
    const query = em.createQueryBuilder(AuditEvent, undefined, 'read');
    if (userId !== undefined && userId !== null) {
      if (!isUuid(userId)) throw new BadUserInputError('Not a user id.', 'userId');
      query.andWhere({ userId });
    }
    // Every column as plain data: all an AuditEvent is (it has no methods), just not a managed one.
    return keysetPage(query, first, after, (row) => row as AuditEvent);
  }
}

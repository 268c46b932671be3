import type { EntityManager } from '@mikro-orm/postgresql';
import { isUuid } from '../../db/base.entity.js';
import { BadUserInputError } from '../../errors.js';
import { type Condition, keysetPage, type Page } from '../../graphql/pagination.js';
import { type RequestMeta, storedUserAgent } from '../sessions/request-meta.js';
import { AUDIT_EVENT_FIELDS, AuditEvent, type AuditEventType } from './audit-event.entity.js';

/** Whom an event is about, who caused it, and what it concerns beyond the account (see AuditEvent.detail). */
export interface AuditSubject {
  userId?: string | null;
  actorId?: string | null;
  detail?: string | null;
}

/** The columns of one event, for a statement that writes it together with other rows. */
export type AuditRow = Pick<AuditEvent, (typeof AUDIT_EVENT_FIELDS)[number]>;

/** The one recorder of security events. */
export class AuditService {
  /**
   * Adds an event to the unit of work of `em`, so it commits (or not) together with the change it
   * records. Callers flush.
   */
  record(em: EntityManager, type: AuditEventType, subject: AuditSubject, meta: RequestMeta): AuditEvent {
    const event = Object.assign(new AuditEvent(), this.row(type, subject, meta));
    em.persist(event);
    return event;
  }

  /** An event as the columns to insert, for a write that is a single statement (see SessionService.startSignIn). */
  row(type: AuditEventType, subject: AuditSubject, meta: RequestMeta): AuditRow {
    const { id, createdAt } = new AuditEvent();
    return { id, createdAt, type, userId: subject.userId ?? null, actorId: subject.actorId ?? null, ip: meta.ip, userAgent: storedUserAgent(meta), detail: subject.detail ?? null };
  }

  /** Events newest first, optionally of one account (including a deleted one). */
  list(em: EntityManager, first: number | null | undefined, after: string | null | undefined, userId?: string | null): Promise<Page<AuditEvent>> {
    const where: Condition[] = [];
    if (userId !== undefined && userId !== null) {
      if (!isUuid(userId)) throw new BadUserInputError('Not a user id.', 'userId');
      where.push({ sql: '"user_id" = ?', params: [userId] });
    }
    // Every column as plain data: all an AuditEvent is (it has no methods), just not a managed one.
    return keysetPage(em, { entity: AuditEvent, fields: AUDIT_EVENT_FIELDS, where }, first, after, (row) => row);
  }
}

import type { EntityManager } from '@mikro-orm/postgresql';
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
}

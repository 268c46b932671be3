import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { MailOutbox } from '../../mail/outbox.js';
import type { User } from '../users/user.entity.js';

/** Every event an endpoint can subscribe to (the README's event catalogue). */
export const WEBHOOK_EVENT_TYPES = ['user.created', 'user.updated', 'user.deleted', 'user.email_verified', 'user.password_changed', 'user.locked'] as const;

export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** `data.user` of every event: what other services need to mirror an account, and no secret. */
export interface WebhookUser {
  id: string;
  email: string;
  username: string;
  role: string;
  active: boolean;
  emailVerified: boolean;
  createdAt: string;
  updatedAt: string;
}

/** One event about an account: `id` is the `webhook-id` of every attempt to every endpoint. */
export interface AnnouncedEvent {
  id: string;
  type: WebhookEventType;
  /** When the change happened (ISO 8601). */
  timestamp: string;
  user: WebhookUser;
}

/** An event as queued with its change. */
export interface WebhookEvent extends AnnouncedEvent {
  /**
   * The events the same change announced before this one, oldest first (absent when there are
   * none): they are queued for the endpoints together with it, so that whichever of the change's
   * jobs the outbox runs first, no event of the change reaches an endpoint ahead of an earlier one.
   */
  earlier?: AnnouncedEvent[];
}

/** The columns of an account that an event shows. */
export type UserState = Pick<User, 'id' | 'email' | 'username' | 'role' | 'active' | 'emailVerifiedAt' | 'createdAt' | 'updatedAt'>;

/** The column names of {@link UserState}, for a read of just those. */
export const USER_STATE_FIELDS = ['id', 'email', 'username', 'role', 'active', 'emailVerifiedAt', 'createdAt', 'updatedAt'] as const satisfies ReadonlyArray<keyof UserState>;

/**
 * Announces changes to accounts. An event is queued in the unit of work of the change (an outbox
 * job, {@link MailOutbox.enqueueJob}), so it exists exactly when the change commits and survives a
 * crash right after; the outbox worker then hands it to the webhook service, which queues one
 * delivery per subscribed endpoint. Nothing here waits for an endpoint.
 *
 * The events one change announces one after the other (in one unit of work, without waiting in
 * between: a lockdown's `user.locked` and `user.updated`) reach every endpoint in that order; each
 * job carries the events announced before it (see {@link WebhookEvent.earlier}).
 */
export class UserEvents {
  /** Per unit of work, the events its change has announced in the run of code going on now (forgotten once that ends). */
  private readonly changes = new WeakMap<EntityManager, AnnouncedEvent[]>();

  constructor(private readonly outbox: MailOutbox) {}

  /** Queues `type` about `user`, as it is once the change commits. */
  emit(em: EntityManager, type: WebhookEventType, user: UserState): void {
    const event: AnnouncedEvent = { id: `msg_${randomUUID().replaceAll('-', '')}`, type, timestamp: new Date().toISOString(), user: webhookUser(user) };
    const earlier = this.changes.get(em);
    if (earlier) {
      this.outbox.enqueueJob(em, { name: 'webhook-event', event: { ...event, earlier: [...earlier] } });
      earlier.push(event);
    } else {
      this.outbox.enqueueJob(em, { name: 'webhook-event', event });
      this.changes.set(em, [event]);
      queueMicrotask(() => this.changes.delete(em));
    }
  }
}

function webhookUser(user: UserState): WebhookUser {
  return {
    id: user.id,
    email: user.email,
    username: user.username,
    role: user.role,
    active: user.active,
    emailVerified: user.emailVerifiedAt !== null,
    createdAt: new Date(user.createdAt).toISOString(),
    updatedAt: new Date(user.updatedAt).toISOString(),
  };
}

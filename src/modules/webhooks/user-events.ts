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

/** One change to announce, as queued with it: `id` is the `webhook-id` of every attempt to every endpoint. */
export interface WebhookEvent {
  id: string;
  type: WebhookEventType;
  /** When the change happened (ISO 8601). */
  timestamp: string;
  user: WebhookUser;
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
 */
export class UserEvents {
  constructor(private readonly outbox: MailOutbox) {}

  /** Queues `type` about `user`, as it is once the change commits. */
  emit(em: EntityManager, type: WebhookEventType, user: UserState): void {
    const event: WebhookEvent = { id: `msg_${randomUUID().replaceAll('-', '')}`, type, timestamp: new Date().toISOString(), user: webhookUser(user) };
    this.outbox.enqueueJob(em, { name: 'webhook-event', event });
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

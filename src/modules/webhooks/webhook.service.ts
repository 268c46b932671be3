import { randomBytes } from 'node:crypto';
import type { EntityManager, MikroORM } from '@mikro-orm/postgresql';
import { isUuid } from '../../db/base.entity.js';
import { pgArray } from '../../db/pg-array.js';
import { BadUserInputError, NotFoundError } from '../../errors.js';
import type { MailOutbox } from '../../mail/outbox.js';
import type { SecretBox } from '../../secret-box.js';
import { AuditEventType } from '../audit/audit-event.entity.js';
import type { AuditService } from '../audit/audit.service.js';
import type { RequestMeta } from '../sessions/request-meta.js';
import { type DestinationPolicy, DestinationRefusedError, LOOKUP_TIMEOUT_MS, LookupTimeoutError } from './destination.js';
import { WEBHOOK_EVENT_TYPES, type WebhookEvent, type WebhookEventType } from './user-events.js';
import { WebhookDelivery } from './webhook-delivery.entity.js';
import type { WebhookDispatcher } from './webhook-dispatcher.js';
import { WebhookEndpoint } from './webhook-endpoint.entity.js';

const NO_SUCH_ENDPOINT = 'No webhook endpoint with this id.';
/** Delivery-log entries shown per endpoint by default, and at most. */
const DELIVERIES_DEFAULT = 20;
const DELIVERIES_MAX = 100;

/** What the delivery log shows of an attempt. */
export type DeliveryView = Pick<WebhookDelivery, 'webhookId' | 'eventType' | 'attempt' | 'status' | 'error' | 'createdAt'>;

/** The endpoints whose logs one request asks for with one page size, read together once they are all known. */
interface DeliveryBatch {
  endpointIds: Set<string>;
  logs: Promise<Map<string, DeliveryView[]>>;
}

/** An endpoint just registered, with its signing secret: the only time the secret is shown. */
export interface CreatedEndpoint {
  endpoint: WebhookEndpoint;
  secret: string;
}

/**
 * Webhook endpoints (admins register, list and delete them) and the fan-out of events to them:
 * every event queued by UserEvents becomes one message per endpoint subscribed to its type, which
 * the {@link WebhookDispatcher} delivers.
 */
export class WebhookService {
  /** Per request (its EntityManager) and page size, the batch of logs being collected. */
  private readonly deliveryBatches = new WeakMap<EntityManager, Map<number, DeliveryBatch>>();

  constructor(
    private readonly orm: MikroORM,
    private readonly policy: DestinationPolicy,
    private readonly secrets: SecretBox,
    private readonly dispatcher: WebhookDispatcher,
    private readonly audit: AuditService,
    outbox: MailOutbox,
  ) {
    outbox.handle('webhook-event', ({ event }) => this.fanOut(event));
  }

  /**
   * Registers an endpoint for `events` and returns its new secret (`whsec_` and 32 random bytes in
   * base64, as Standard Webhooks libraries expect). The URL must pass the destination policy now;
   * its host gets at most the lookup time limit to resolve.
   */
  async create(em: EntityManager, actorId: string, rawUrl: string, events: readonly string[], meta: RequestMeta): Promise<CreatedEndpoint> {
    const subscribed = eventTypes(events);
    let url: URL;
    try {
      url = this.policy.parse(rawUrl.trim());
      await this.policy.resolve(url);
    } catch (error) {
      if (error instanceof DestinationRefusedError) throw new BadUserInputError(error.message, 'url');
      if (error instanceof LookupTimeoutError) {
        throw new BadUserInputError(`The host ${error.host} did not resolve within ${LOOKUP_TIMEOUT_MS / 1000} s; check the name, or try again later.`, 'url');
      }
      throw error;
    }
    const secret = `whsec_${randomBytes(32).toString('base64')}`;
    const endpoint = em.create(WebhookEndpoint, { url: url.href, events: subscribed, secret: this.secrets.seal(secret) });
    this.audit.record(em, AuditEventType.WEBHOOK_ENDPOINT_CREATED, { actorId }, meta);
    await em.flush();
    return { endpoint, secret };
  }

  /** Every endpoint, oldest first. */
  list(em: EntityManager): Promise<WebhookEndpoint[]> {
    return em.find(WebhookEndpoint, {}, { orderBy: { createdAt: 'asc', id: 'asc' } });
  }

  /** Deletes an endpoint with its queue and delivery log; nothing more is sent to it. */
  async delete(em: EntityManager, actorId: string, id: string, meta: RequestMeta): Promise<true> {
    if (!isUuid(id) || (await em.nativeDelete(WebhookEndpoint, { id })) === 0) throw new NotFoundError(NO_SUCH_ENDPOINT);
    this.audit.record(em, AuditEventType.WEBHOOK_ENDPOINT_DELETED, { actorId }, meta);
    await em.flush();
    return true;
  }

  /**
   * The latest attempts at deliveries to one endpoint, newest first. The logs of every endpoint a
   * request lists are read in one statement: the calls made for one list (in one tick, as GraphQL
   * resolves a list's fields) join one batch, read when the tick ends.
   */
  async deliveries(em: EntityManager, endpointId: string, first: number | null | undefined): Promise<DeliveryView[]> {
    if (first !== null && first !== undefined && (first < 0 || first > DELIVERIES_MAX)) {
      throw new BadUserInputError(`first must be between 0 and ${DELIVERIES_MAX}.`, 'first');
    }
    const limit = first ?? DELIVERIES_DEFAULT;
    let batches = this.deliveryBatches.get(em);
    if (!batches) this.deliveryBatches.set(em, (batches = new Map()));
    let batch = batches.get(limit);
    if (!batch) {
      const endpointIds = new Set<string>();
      const pending = batches;
      const logs = Promise.resolve().then(() => {
        pending.delete(limit);
        return this.readLogs(em, [...endpointIds], limit);
      });
      batch = { endpointIds, logs };
      batches.set(limit, batch);
    }
    batch.endpointIds.add(endpointId);
    return (await batch.logs).get(endpointId) ?? [];
  }

  /** The latest `limit` attempts of each endpoint, by endpoint; each endpoint's through its index. */
  private async readLogs(em: EntityManager, endpointIds: string[], limit: number): Promise<Map<string, DeliveryView[]>> {
    const rows = await em.getConnection().execute<Array<{ endpoint_id: string; webhook_id: string; event_type: string; attempt: number; status: number | null; error: string | null; created_at: Date }>>(
      `select "e"."id" as "endpoint_id", "d"."webhook_id", "d"."event_type", "d"."attempt", "d"."status", "d"."error", "d"."created_at"
         from unnest(?::uuid[]) as "e"("id")
         cross join lateral (
           select * from "webhook_deliveries" where "endpoint_id" = "e"."id" order by "created_at" desc, "id" desc limit ?) as "d"
        order by "d"."created_at" desc, "d"."id" desc`,
      [pgArray(endpointIds), limit],
    );
    const logs = new Map<string, DeliveryView[]>();
    for (const row of rows) {
      const log = logs.get(row.endpoint_id) ?? [];
      log.push({ webhookId: row.webhook_id, eventType: row.event_type, attempt: row.attempt, status: row.status, error: row.error, createdAt: new Date(row.created_at) });
      logs.set(row.endpoint_id, log);
    }
    return logs;
  }

  /**
   * Queues `event` for every endpoint subscribed to its type that existed when it happened, together
   * with the events its change announced before it (`earlier`), in one statement. Run by the outbox
   * (at least once, and the jobs of one change in any order): the unique (endpoint, event) index
   * makes a second run, or an event queued already by a later one of its change, add nothing.
   *
   * The dispatcher sends an endpoint's messages in `next_attempt_at` order, and the first attempt
   * of each is due when its change announced it: the first event's timestamp, and a microsecond
   * more for each one after it. Whichever job queues an event, it gets the same time, so the events
   * of one change go out in the order they were announced. (An instance whose clock runs ahead of
   * the database's announces from the future: its events are due at the database's now instead,
   * not held back by the difference.)
   */
  private async fanOut(event: WebhookEvent): Promise<void> {
    const announced = [...(event.earlier ?? []), event];
    const events = announced.map(({ id, type, timestamp, user }, position) => ({
      id,
      type,
      at: timestamp,
      position,
      body: JSON.stringify({ type, timestamp, data: { user } }),
    }));
    const queued = await this.orm.em.fork().getConnection().execute<Array<{ id: string }>>(
      `insert into "webhook_messages" ("id", "created_at", "endpoint_id", "event_id", "event_type", "body", "attempts", "next_attempt_at")
       select gen_random_uuid(), now(), "e"."id", "v"."id", "v"."type", "v"."body", 0, least(?::timestamptz, now()) + "v"."position" * interval '1 microsecond'
         from jsonb_to_recordset(?::jsonb) as "v"("id" text, "type" text, "at" timestamptz, "position" int, "body" text)
         join "webhook_endpoints" "e" on "v"."type" = any("e"."events") and "e"."created_at" <= "v"."at"
        order by "v"."position"
       on conflict ("endpoint_id", "event_id") do nothing
       returning "id"`,
      [announced[0]!.timestamp, JSON.stringify(events)],
    );
    if (queued.length > 0) this.dispatcher.wake();
  }
}

/** The requested event types, each once, in catalogue order; BAD_USER_INPUT for none or an unknown one. */
function eventTypes(requested: readonly string[]): WebhookEventType[] {
  const wanted = new Set(requested.map((type) => type.trim()));
  const unknown = [...wanted].filter((type) => !(WEBHOOK_EVENT_TYPES as readonly string[]).includes(type));
  if (unknown.length > 0 || wanted.size === 0) {
    const known = WEBHOOK_EVENT_TYPES.join(', ');
    throw new BadUserInputError(unknown.length > 0 ? `Unknown event type "${unknown[0]!.slice(0, 40)}"; known: ${known}.` : `List at least one event type: ${known}.`, 'events');
  }
  return WEBHOOK_EVENT_TYPES.filter((type) => wanted.has(type));
}

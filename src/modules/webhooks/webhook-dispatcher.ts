import { randomUUID } from 'node:crypto';
import type { LookupAddress } from 'node:dns';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { MikroORM } from '@mikro-orm/postgresql';
import { Webhook } from 'standardwebhooks';
import type { OutageLog } from '../../db/outage.js';
import type { Logger } from '../../logger.js';
import { claimDue, IN_MS, SettleRetry, ShutdownError } from '../../db/queue.js';
import { PollingWorker } from '../../polling-worker.js';
import type { SecretBox } from '../../secret-box.js';
import { abortable, type DestinationPolicy, DestinationRefusedError } from './destination.js';

/** Tuning of the webhook dispatcher; tests shorten the delays. */
export interface WebhookDispatchOptions {
  /** How often the dispatcher looks for due messages when nobody woke it. */
  pollIntervalMs: number;
  /** Waits before each retry (the nth entry after the nth failed attempt); the message is given up after the last. */
  retryDelaysMs: readonly number[];
  /** An attempt that has no answer (status line) this soon after it started is abandoned and counts as failed. */
  timeoutMs: number;
  /** Slots of the lane of endpoints in good standing (their latest logged attempt succeeded, or they have none). */
  concurrency: number;
  /** Slots of the lane of failing endpoints (their latest logged attempt failed or got no answer). */
  failingConcurrency: number;
  /** An attempt still without an answer this long after it started gives its slot back (it goes on, up to `timeoutMs`). */
  stallMs: number;
}

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

/**
 * About 5 s, 30 s and 2 minutes, then growing waits: twelve attempts over about 40 hours, so an
 * endpoint that is down for a day still gets every event.
 */
export const DEFAULT_WEBHOOK_OPTIONS: WebhookDispatchOptions = {
  pollIntervalMs: 5 * SECOND,
  retryDelaysMs: [5 * SECOND, 30 * SECOND, 2 * MINUTE, 10 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR, 12 * HOUR, 12 * HOUR],
  timeoutMs: 10 * SECOND,
  concurrency: 10,
  failingConcurrency: 5,
  stallMs: SECOND,
};

/**
 * How long a claim outlives the attempt's own time limit, for recording the outcome: a dead
 * instance's messages are attempted again this soon after the limit (15 s with the defaults).
 */
const CLAIM_MARGIN_MS = 5 * SECOND;

const USER_AGENT = 'graphql-user-server-webhooks/1';

/** Which slots an attempt takes: see {@link WebhookDispatcher}. */
type Lane = 'good' | 'failing';
const LANES: readonly Lane[] = ['good', 'failing'];

/**
 * The endpoints whose latest logged attempt failed (through the log's (endpoint, created_at) index;
 * an endpoint with no attempt in the log, a new one, is in good standing). Not correlated with the
 * candidate row, so it is read once per claim however many rows the claim looks at.
 */
const FAILING_ENDPOINTS = `select "e"."id" from "webhook_endpoints" "e"
   where (select "d"."error" is not null from "webhook_deliveries" "d" where "d"."endpoint_id" = "e"."id" order by "d"."created_at" desc limit 1)`;
const IN_LANE: Record<Lane, string> = {
  good: `"candidate"."endpoint_id" not in (${FAILING_ENDPOINTS})`,
  failing: `"candidate"."endpoint_id" in (${FAILING_ENDPOINTS})`,
};

interface ClaimedMessage {
  id: string;
  endpoint_id: string;
  event_id: string;
  event_type: string;
  body: string;
  attempts: number;
  /**
   * The claim's expiry as written by this claim, as PostgreSQL's text (the ORM reads timestamps so):
   * the settle statement finds the row only while it still holds.
   */
  locked_until: string;
  url: string;
  secret: string;
}

/** What one attempt came to: the status the endpoint answered (if it did) and why it failed (if it did). */
interface Outcome {
  status: number | null;
  error: string | null;
  /** The attempt was cut by a shutdown: released to be made again, not logged. */
  cut?: boolean;
}

/**
 * Delivers queued webhook messages (see WebhookMessage): claims due ones with `FOR UPDATE SKIP
 * LOCKED` and a lease, so several instances never send one at once and a crashed instance's claims
 * lapse; POSTs each, signed per Standard Webhooks with a fresh timestamp and the same `webhook-id`
 * on every attempt; and records every attempt in the delivery log. A failure, a non-2xx status
 * (redirects included: they are not followed) or no answer within {@link WebhookDispatchOptions.timeoutMs}
 * is retried after the next delay of {@link WebhookDispatchOptions.retryDelaysMs}.
 *
 * No endpoint that hangs or fails delays the deliveries to those that answer, however many there
 * are. Each endpoint has at most one attempt in flight (the claim sees to it, across instances), and
 * the attempts share two lanes of slots:
 *
 * - the **good** lane (`concurrency` slots) takes the messages of endpoints in good standing: their
 *   latest logged attempt succeeded, or they have none yet;
 * - the **failing** lane (`failingConcurrency` slots) takes the messages of endpoints whose latest
 *   logged attempt failed — retries and new events alike — until one of their attempts succeeds.
 *   Each claim asks for one lane's messages only, so a failing endpoint's backlog, however much
 *   earlier it is due, never fills a claim of the good lane.
 *
 * And an attempt holds its slot only until it answers or `stallMs` (1 s) passes: an attempt still
 * waiting then gives its slot back and goes on, up to the time limit, outside the lanes. A good
 * endpoint that starts hanging thus costs its lane one slot for 1 s, once (its timeout is then
 * logged, and it is failing); dead endpoints cost the failing lane 1 s of a slot per attempt. The
 * attempts outside the lanes are bounded all the same: a slot can start at most one attempt that
 * stalls per `stallMs`, each lasting at most `timeoutMs`, so at most `(concurrency +
 * failingConcurrency) × timeoutMs / stallMs` (150 with the defaults), and never more than one per
 * endpoint. A new message is claimed as soon as a slot is free. No request of a client waits for
 * any of this.
 */
export class WebhookDispatcher {
  private readonly worker: PollingWorker;
  /** Attempts in flight, so stopping can cut them short. */
  private readonly inFlight = new Set<AbortController>();
  /** Ends the wait of a round that has attempts in flight (see {@link drain}). */
  private nudge: (() => void) | undefined;
  /**
   * Set by a wake and by the end of an attempt, cleared before each claim: one between a claim and
   * the wait is not lost.
   */
  private woken = false;
  /** Records retried until they land, and the pause of claims after the database failed us. */
  private readonly settling: SettleRetry;

  constructor(
    private readonly orm: MikroORM,
    private readonly policy: DestinationPolicy,
    private readonly secrets: SecretBox,
    private readonly logger: Logger,
    private readonly outages: OutageLog,
    private readonly options: WebhookDispatchOptions = DEFAULT_WEBHOOK_OPTIONS,
  ) {
    this.worker = new PollingWorker(() => this.drain(), options.pollIntervalMs, (error) => {
      this.settling.failed(error);
      if (!outages.record(error)) this.logger.error({ err: error }, 'webhook dispatcher failed; retrying later');
    });
    this.settling = new SettleRetry(() => this.worker.stopping);
  }

  start(): void {
    this.worker.start();
  }

  /** Looks for due messages now (the fan-out calls it when it queued some). */
  wake(): void {
    this.woken = true;
    this.nudge?.();
    this.worker.wake();
  }

  /**
   * Stops claiming, and cuts the attempts in flight short: their claims are released without
   * costing an attempt, so this or another instance makes them again, with the same `webhook-id`.
   * Shutdown never waits for an endpoint.
   */
  async stop(): Promise<void> {
    const stopped = this.worker.stop();
    this.nudge?.();
    for (const controller of this.inFlight) controller.abort(new ShutdownError());
    await stopped;
  }

  /** Delivers due messages until none is left, keeping each lane's slots busy. */
  private async drain(): Promise<void> {
    const running = new Set<Promise<void>>();
    /** Attempts holding a slot of each lane (an attempt that stalled holds none). */
    const holding: Record<Lane, number> = { good: 0, failing: 0 };
    const free = (lane: Lane) => (lane === 'good' ? this.options.concurrency : this.options.failingConcurrency) - holding[lane];
    try {
      while (!this.worker.stopping) {
        this.woken = false;
        // Just after the database failed us: the records of attempts that were answered meanwhile
        // (here or in another instance) land before their messages could be claimed again.
        if (this.settling.pausing()) {
          if (running.size === 0) {
            await this.orm.em.fork().getConnection().execute('select 1');
            return;
          }
          await this.nextChance(running);
          continue;
        }
        const claimed: Array<{ lane: Lane; message: ClaimedMessage }> = [];
        // A lane's claim that fails must not strand what the other lane claimed: those messages are
        // attempted, and the failure is the worker's to record once they are settled.
        let claimFailure: { error: unknown } | undefined;
        for (const lane of LANES) {
          if (free(lane) <= 0) continue;
          try {
            for (const message of await this.claim(lane, free(lane))) claimed.push({ lane, message });
          } catch (error) {
            claimFailure = { error };
            break;
          }
        }
        if (this.worker.stopping) {
          // Claimed while shutdown began: handed back untouched rather than attempted.
          await Promise.all(claimed.map(({ message }) => this.release(message)));
          break;
        }
        for (const { lane, message } of claimed) {
          holding[lane] += 1;
          const giveBack = (stalled: boolean) => {
            holding[lane] -= 1;
            // A slot freed by a stall: claim again now (an attempt that ends ends the wait anyway).
            if (stalled) {
              this.woken = true;
              this.nudge?.();
            }
          };
          // An attempt that ends may make another message of its endpoint claimable (one at a time
          // per endpoint), which a claim made meanwhile could not see: claim again after it.
          const attempt = this.attempt(message, giveBack).finally(() => {
            running.delete(attempt);
            this.woken = true;
          });
          running.add(attempt);
        }
        if (claimFailure) throw claimFailure.error;
        if (running.size === 0 && !this.woken) return;
        // While slots are free and messages were found, claim again at once; otherwise wait for an
        // attempt to end or stall, a wake (new messages) or the poll interval (other instances'
        // messages), whichever comes first: an attempt that hangs holds its slot, never the round.
        if (claimed.length === 0 || LANES.every((lane) => free(lane) <= 0)) await this.nextChance(running);
      }
    } finally {
      await Promise.all(running);
    }
  }

  private nextChance(running: Set<Promise<void>>): Promise<void> {
    if (this.woken) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, this.options.pollIntervalMs);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.nudge = done;
      Promise.race(running).then(done, done);
    }).finally(() => {
      this.nudge = undefined;
    });
  }

  /** Claims up to `limit` due messages of the endpoints of one lane. */
  private claim(lane: Lane, limit: number): Promise<ClaimedMessage[]> {
    return claimDue<ClaimedMessage>(
      this.orm.em.fork(),
      {
        table: 'webhook_messages',
        doneColumn: 'delivered_at',
        returning: '"id", "endpoint_id", "event_id", "event_type", "body", "attempts", "locked_until"',
        leaseMs: this.options.timeoutMs + CLAIM_MARGIN_MS,
        limit,
        onePer: 'endpoint_id',
        only: IN_LANE[lane],
      },
      'select "claimed".*, "e"."url", "e"."secret" from "claimed" join "webhook_endpoints" "e" on "e"."id" = "claimed"."endpoint_id"',
    );
  }

  /**
   * Makes one attempt and settles it. `giveBack` frees the attempt's slot, once: when the attempt
   * has had no answer for `stallMs` (`true`), or when it is settled.
   */
  private async attempt(message: ClaimedMessage, giveBack: (stalled: boolean) => void): Promise<void> {
    let holds = true;
    const letGo = (stalled: boolean) => {
      if (!holds) return;
      holds = false;
      giveBack(stalled);
    };
    const stall = setTimeout(() => letGo(true), this.options.stallMs);
    const controller = new AbortController();
    this.inFlight.add(controller);
    try {
      let outcome: Outcome;
      try {
        outcome = await this.post(message, controller);
      } finally {
        this.inFlight.delete(controller);
        // The attempt has its outcome: a slot it still holds is held while the outcome is written,
        // so a slow database slows the claims rather than letting attempts pile up.
        clearTimeout(stall);
      }
      if (outcome.cut) await this.release(message);
      else await this.record(message, outcome);
    } finally {
      letGo(false);
    }
  }

  /** Hands a claimed message back as it was before the claim (the attempt it counted is undone). */
  private async release(message: ClaimedMessage): Promise<void> {
    try {
      await this.orm.em.fork().getConnection().execute(
        `update "webhook_messages" set "locked_until" = null, "attempts" = "attempts" - 1 where "id" = ? and "locked_until" = ?`,
        [message.id, message.locked_until],
      );
    } catch (error) {
      // The claim lapses by itself; the attempt it counted stays counted.
      this.logger.warn({ err: error, webhookId: message.event_id }, 'could not release a webhook claim at shutdown');
    }
  }

  /** One signed POST, bounded by the time limit from the first DNS lookup to the status line. */
  private async post(message: ClaimedMessage, controller: AbortController): Promise<Outcome> {
    const timer = setTimeout(() => controller.abort(new Error(`no answer within ${Math.round(this.options.timeoutMs / 1000)} s`)), this.options.timeoutMs);
    try {
      // The rules of today, not of when the endpoint was registered (production, allowed hosts).
      const url = this.policy.parse(message.url);
      // At most the lookup time limit (8 s); attempts at one host share its lookup.
      const addresses = await this.policy.resolve(url, controller.signal);
      const timestamp = new Date();
      const signature = new Webhook(this.secrets.open(message.secret)).sign(message.event_id, timestamp, message.body);
      const response = await abortable(
        send(url, addresses, controller.signal, message.body, {
          'content-type': 'application/json',
          'user-agent': USER_AGENT,
          'webhook-id': message.event_id,
          'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
          'webhook-signature': signature,
        }),
        controller.signal,
      );
      const status = response.statusCode ?? 0;
      // Only the status matters; the body is not read (a slow or huge one costs nothing).
      response.destroy();
      if (status >= 200 && status < 300) return { status, error: null };
      const redirect = status >= 300 && status < 400 ? ' (redirects are not followed)' : '';
      return { status, error: `the endpoint answered ${status}${redirect}` };
    } catch (error) {
      const reason = controller.signal.aborted ? controller.signal.reason : error;
      return { status: null, error: describe(reason), cut: reason instanceof ShutdownError };
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Settles the message — delivered, retried later, or given up after the last retry — and writes
   * the attempt to the delivery log, in one statement, so the log and the queue never disagree.
   * Only while this attempt's claim still holds: if it lapsed (the database was slow to answer) and
   * another attempt has claimed the message since, that attempt decides, and nothing is written
   * here. An endpoint deleted meanwhile has taken the message with it; nothing is written then either.
   */
  private async record(message: ClaimedMessage, outcome: Outcome): Promise<void> {
    const delivered = outcome.error === null;
    const delays = this.options.retryDelaysMs;
    const givingUp = !delivered && message.attempts > delays.length;
    const delay = givingUp || delivered ? 0 : delays[message.attempts - 1]! * (0.9 + Math.random() * 0.2);
    // One id for every try of the record: a try that committed but whose answer was lost cannot
    // log the attempt twice (the retry finds the claim settled and writes nothing).
    const deliveryId = randomUUID();
    let settled: unknown[] = [];
    // Retried until it lands (the claim is ours until then: the conditional update says so), so an
    // endpoint that answered during a blip of the database is not sent the message again.
    const recorded = await this.settling.untilItLands(
      async () => {
        // Times on the database's clock, like the claims (see claimDue).
        settled = await this.orm.em.fork().getConnection().execute<unknown[]>(
          `with "settled" as (
             update "webhook_messages"
                set "locked_until" = null, "next_attempt_at" = ${IN_MS},
                    "delivered_at" = case when ? then now() end, "failed_at" = case when ? then now() end,
                    "body" = case when ? then null else "body" end
              where "id" = ? and "locked_until" = ?
              returning "endpoint_id")
           insert into "webhook_deliveries" ("id", "endpoint_id", "webhook_id", "event_type", "attempt", "status", "error", "created_at")
           select ?, "endpoint_id", ?, ?, ?, ?, ?, now() from "settled"
           returning "id"`,
          [
            Math.round(delay), delivered, givingUp, delivered || givingUp, message.id, message.locked_until,
            deliveryId, message.event_id, message.event_type, message.attempts, outcome.status, outcome.error?.slice(0, 500) ?? null,
          ],
        );
      },
      (error, attempt) => {
        if (!this.outages.record(error) && attempt === 0) this.logger.warn({ err: error, webhookId: message.event_id }, 'could not record a webhook attempt; retrying');
      },
    );
    if (!recorded) {
      // Stopping while the database is away: the claim lapses, and the message is attempted again
      // with the same webhook-id.
      this.logger.warn({ webhookId: message.event_id }, 'could not record a webhook attempt; it will be repeated');
      return;
    }
    if (settled.length === 0) {
      this.logger.warn({ webhookId: message.event_id, attempt: message.attempts }, 'webhook attempt not recorded: its claim had lapsed, or its endpoint was deleted');
      return;
    }
    const details = { webhookId: message.event_id, endpointId: message.endpoint_id, eventType: message.event_type, attempt: message.attempts, status: outcome.status };
    if (delivered) this.logger.info(details, 'webhook delivered');
    else if (givingUp) this.logger.error({ ...details, reason: outcome.error }, 'webhook delivery failed; giving up');
    else this.logger.warn({ ...details, reason: outcome.error, retryInMs: Math.round(delay) }, 'webhook delivery failed; will retry');
  }
}

/**
 * POSTs `body` to `url`, connecting only to `addresses` (checked by the policy just before): the
 * lookup the HTTP client would do is answered with them, so a second resolution cannot point the
 * connection elsewhere. TLS still verifies the certificate against the host name.
 */
function send(url: URL, addresses: LookupAddress[], signal: AbortSignal, body: string, headers: Record<string, string>): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const request = (url.protocol === 'https:' ? https : http).request(url, {
      method: 'POST',
      headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      agent: false,
      signal,
      lookup: (_hostname, options, callback) => {
        if (options.all) (callback as (error: null, addresses: LookupAddress[]) => void)(null, addresses);
        else callback(null, addresses[0]!.address, addresses[0]!.family);
      },
    });
    request.once('response', resolve);
    request.once('error', reject);
    request.end(body);
  });
}

/** A failure as the delivery log shows it: what went wrong, never a stack. */
function describe(error: unknown): string {
  if (error instanceof DestinationRefusedError) return `refused: ${error.message}`;
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code && !error.message.includes(code) ? `${error.message} (${code})` : error.message;
  }
  return String(error);
}

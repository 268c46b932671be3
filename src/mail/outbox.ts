import { setMaxListeners } from 'node:events';
import { ChangeSetType, type EventSubscriber, type FlushEventArgs, type TransactionEventArgs } from '@mikro-orm/core';
import type { EntityManager, MikroORM } from '@mikro-orm/postgresql';
import type { LinkTargets } from '../config/config.js';
import type { OutageLog } from '../db/outage.js';
import type { Logger } from '../logger.js';
import type { WebhookEvent } from '../modules/webhooks/user-events.js';
import { pgArray } from '../db/pg-array.js';
import { claimDue, IN_MS, LEASE_END, SettleRetry, ShutdownError } from '../db/queue.js';
import { PollingWorker } from '../polling-worker.js';
import { SecretBox } from '../secret-box.js';
import { MailMessage } from './mail-message.entity.js';
import { type MailTemplate, renderMail } from './templates.js';
import type { MailTransport } from './transport.js';

/** Tuning of the outbox worker; tests shorten the delays. */
export interface OutboxOptions {
  /** How often the worker looks for due messages when nobody woke it. */
  pollIntervalMs: number;
  /** Delay before the first retry; doubles per failed attempt, capped at one hour. */
  retryBaseMs: number;
  /** Attempts before a message is given up (marked failed). */
  maxAttempts: number;
  /**
   * How long a claim holds without renewal. The worker renews its claims every third of this while
   * it sends, so only a dead worker's claims lapse: its messages go out again this soon after.
   */
  leaseMs: number;
  /** Messages claimed per round. */
  batchSize: number;
}

/** With these, a message is retried for about seven hours before it is given up. */
export const DEFAULT_OUTBOX_OPTIONS: OutboxOptions = {
  pollIntervalMs: 2_000,
  retryBaseMs: 5_000,
  maxAttempts: 15,
  leaseMs: 10_000,
  batchSize: 10,
};

/**
 * Work queued like an email, in the caller's transaction, and done by the worker afterwards: a
 * reset request (its lookup must not be timed by the client, and it must survive a crash), and an
 * event about an account for the webhooks (it must exist exactly when the change commits).
 */
export type OutboxJob =
  | { name: 'password-reset-request'; identifier: string; ip: string | null; userAgent: string | null }
  | { name: 'webhook-event'; event: WebhookEvent };

/** What the outbox stores for a row: an email to render and send, or a job to run. */
type OutboxPayload = MailTemplate | OutboxJob;

/** Runs a job; it may queue emails of its own (the worker sends them next). Throwing retries it later. */
export type OutboxJobHandler<J extends OutboxJob = OutboxJob> = (job: J) => Promise<void>;

const MAX_RETRY_DELAY_MS = 60 * 60_000;

interface ClaimedRow {
  id: string;
  recipient: string;
  template: string;
  payload: string | null;
  attempts: number;
}

/**
 * The transactional outbox: {@link enqueue} adds an email to the caller's unit of work, so it
 * commits or rolls back with the token it carries; a worker in this process claims due messages
 * with `FOR UPDATE SKIP LOCKED` (so several instances never send one twice), sends them, and retries
 * failures with exponential backoff. Nothing is sent inside a request, and a restart loses nothing:
 * an unsent row simply waits for the next worker.
 *
 * Delivery is at least once, and never repeated by our own bookkeeping: every attempt at one email
 * carries the same Message-ID (the row id); a claim is a short lease the worker renews while it
 * sends, so a dead worker's messages resume within {@link OutboxOptions.leaseMs}; and the "sent"
 * mark is retried until it lands while the lease is still renewed, so a database blip after the
 * SMTP server accepted a message does not send it again. Only a crash between the SMTP server's
 * acceptance and the mark can repeat one (with the same Message-ID, which receivers deduplicate).
 *
 * Jobs ({@link enqueueJob}) ride the same queue: durable once the caller's transaction commits.
 */
export class MailOutbox {
  private readonly cipher: SecretBox;
  private readonly worker: PollingWorker;
  private readonly handlers = new Map<OutboxJob['name'], OutboxJobHandler>();
  /** When the database last failed this worker (a claim, a renewal, a mark), and marks retried until they land. */
  private readonly settling: SettleRetry;
  /** Aborted by {@link stop} to cut the sends still in flight (each send listens to it: no listener limit). */
  private readonly cut = new AbortController();
  /** Until when sends may go on (see {@link drainUntil}): none is started after it. Without one, {@link stop} cuts them at once. */
  private drainDeadline = Number.POSITIVE_INFINITY;

  constructor(
    private readonly orm: MikroORM,
    private readonly transport: MailTransport,
    key: Uint8Array,
    private readonly links: LinkTargets,
    private readonly logger: Logger,
    private readonly outages: OutageLog,
    private readonly options: OutboxOptions = DEFAULT_OUTBOX_OPTIONS,
  ) {
    this.cipher = new SecretBox(key);
    setMaxListeners(0, this.cut.signal);
    this.worker = new PollingWorker(() => this.drain(), options.pollIntervalMs, (error) => {
      this.settling.failed(error);
      if (!this.outages.record(error)) this.logger.error({ err: error }, 'mail outbox worker failed; retrying later');
    });
    this.settling = new SettleRetry(() => this.worker.stopping);
    orm.em.getEventManager().registerSubscriber(new WakeAfterCommit(() => this.wake()));
  }

  /**
   * Queues an email in `em`'s unit of work; it is written by the caller's flush, and the worker is
   * woken once that commits (see {@link WakeAfterCommit}).
   */
  enqueue(em: EntityManager, recipient: string, template: MailTemplate): MailMessage {
    return em.create(MailMessage, { recipient, template: template.name, payload: this.cipher.seal(JSON.stringify(template)) });
  }

  /** Queues a job in `em`'s unit of work (see {@link OutboxJob}), like {@link enqueue}. */
  enqueueJob(em: EntityManager, job: OutboxJob): MailMessage {
    return em.create(MailMessage, { recipient: '', template: job.name, payload: this.cipher.seal(JSON.stringify(job)) });
  }

  /** Who runs jobs named `name`. */
  handle<N extends OutboxJob['name']>(name: N, handler: OutboxJobHandler<Extract<OutboxJob, { name: N }>>): void {
    this.handlers.set(name, handler as OutboxJobHandler);
  }

  /** Starts the worker. */
  start(): void {
    this.worker.start();
  }

  /** Asks the worker to look for due messages now (WakeAfterCommit calls it when queued ones commit). */
  wake(): void {
    this.worker.wake();
  }

  /**
   * Shutdown has begun: the sends in flight when the worker is stopped may go on until `deadline`
   * (the drain limit, which the requests in flight get too), and are cut then.
   */
  drainUntil(deadline: number): void {
    this.drainDeadline = deadline;
  }

  /**
   * Stops the worker: nothing is claimed after this. Sends still in flight at the drain limit (at
   * once without one) are cut short, and their messages handed back without costing an attempt, so
   * this or another instance sends them again at once, with the same Message-ID: shutdown never
   * waits for an SMTP server longer than for a request. (Jobs are the database's work, bounded like
   * any statement: they finish.) Resolves once the round has ended; the transport is closed.
   */
  async stop(): Promise<void> {
    const round = this.worker.stop();
    const deadline = Number.isFinite(this.drainDeadline) ? this.drainDeadline : Date.now();
    const cut = setTimeout(() => this.cut.abort(new ShutdownError()), Math.max(0, deadline - Date.now()));
    try {
      await round;
    } finally {
      clearTimeout(cut);
    }
    this.transport.close();
  }

  /**
   * Sends due messages until none is left, renewing the claims of each batch until every message of
   * it is settled (sent and marked, or its failure recorded), however the others fared.
   */
  private async drain(): Promise<void> {
    // Past the drain limit nothing new is claimed: a send started now would be cut at once.
    while (!this.worker.stopping && Date.now() < this.drainDeadline) {
      // Just after the database failed us: the marks of a worker that was sending land first. The
      // database is still asked meanwhile, so the pause runs from when it answers again (a failure
      // here is recorded by the worker like any other), however long the outage.
      if (this.settling.pausing()) {
        await this.orm.em.fork().getConnection().execute('select 1');
        return;
      }
      const claimed = await this.claim();
      if (claimed.length === 0) return;
      // Renewed until each message is settled; one settled (sent, handed back, or due again later)
      // is not claimed again by the renewal.
      const unsettled = new Set(claimed.map((row) => row.id));
      const renewal = setInterval(() => void this.renew([...unsettled]), this.options.leaseMs / 3);
      try {
        const settled = await Promise.allSettled(claimed.map((row) => this.deliver(row).finally(() => unsettled.delete(row.id))));
        const failed = settled.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
        if (failed) throw failed.reason;
      } finally {
        clearInterval(renewal);
      }
    }
  }

  private claim(): Promise<ClaimedRow[]> {
    return claimDue<ClaimedRow>(this.orm.em.fork(), {
      table: 'mail_outbox',
      doneColumn: 'sent_at',
      returning: '"id", "recipient", "template", "payload", "attempts"',
      leaseMs: this.options.leaseMs,
      limit: this.options.batchSize,
    });
  }

  /**
   * Extends this worker's claims (a failure is harmless: the next renewal, or the lease, decides).
   * A renewal that lands after its row was settled finds no claim left to extend (every settling
   * clears it), so a failed send's retry, or a row handed back at shutdown, is not held up again.
   */
  private async renew(ids: string[]): Promise<void> {
    try {
      await this.orm.em.fork().getConnection().execute(
        `update "mail_outbox" set "locked_until" = ${LEASE_END} where "id" = any(?::uuid[]) and "sent_at" is null and "failed_at" is null and "locked_until" is not null`,
        [this.options.leaseMs, pgArray(ids)],
      );
    } catch (error) {
      this.settling.failed(error);
      // An outage of the database is logged once per interval (OutageLog); anything else each time.
      if (!this.outages.record(error)) this.logger.warn({ err: error }, 'could not renew the claims of emails being sent');
    }
  }

  private async deliver(row: ClaimedRow): Promise<void> {
    const connection = this.orm.em.fork().getConnection();
    try {
      if (row.payload === null) throw new Error('message has no content');
      const payload = JSON.parse(this.cipher.open(row.payload)) as OutboxPayload;
      if (isJob(payload)) {
        const handler = this.handlers.get(payload.name);
        if (!handler) throw new Error(`no handler for job ${payload.name}`);
        await handler(payload);
      } else {
        await this.transport.send({ id: row.id, to: row.recipient, ...renderMail(payload, this.links) }, this.cut.signal);
      }
    } catch (error) {
      if (error instanceof ShutdownError) return this.release(row);
      // Only the error's own message: never the content, which may hold a token.
      // NUL cannot be stored in text: an SMTP server's reply might hold one.
      const reason = (error instanceof Error ? error.message : String(error)).replaceAll('\0', '').slice(0, 500);
      const givingUp = row.attempts >= this.options.maxAttempts;
      const delay = Math.min(this.options.retryBaseMs * 2 ** (row.attempts - 1), MAX_RETRY_DELAY_MS) * (0.8 + Math.random() * 0.4);
      await this.recordUntilItLands(row, () =>
        connection.execute(
          `update "mail_outbox" set "locked_until" = null, "last_error" = ?, "next_attempt_at" = ${IN_MS},
                  "failed_at" = case when ? then now() end, "payload" = case when ? then null else "payload" end
            where "id" = ? and "attempts" = ? and "sent_at" is null`,
          [reason, Math.round(delay), givingUp, givingUp, row.id, row.attempts],
        ),
      );
      const details = { mailId: row.id, template: row.template, attempt: row.attempts, reason };
      if (givingUp) this.logger.error(details, 'email delivery failed; giving up');
      else this.logger.warn({ ...details, retryInMs: Math.round(delay) }, 'email delivery failed; will retry');
      return;
    }
    await this.markDone(row);
  }

  /**
   * Hands back a message whose send {@link stop} cut, as it was before the claim: due at once, the
   * attempt not counted. One try: should it fail, the claim lapses by itself (`leaseMs`) and the
   * attempt stays counted.
   */
  private async release(row: ClaimedRow): Promise<void> {
    try {
      await this.orm.em.fork().getConnection().execute(
        // Only while the claim is still this attempt's (its count of attempts): one that lapsed
        // and was claimed again meanwhile is the other worker's to settle.
        `update "mail_outbox" set "locked_until" = null, "attempts" = "attempts" - 1 where "id" = ? and "attempts" = ? and "sent_at" is null and "failed_at" is null`,
        [row.id, row.attempts],
      );
    } catch (error) {
      this.logger.warn({ err: error, mailId: row.id }, 'could not hand back an email whose send shutdown cut; its claim lapses by itself');
      return;
    }
    this.logger.info({ mailId: row.id, template: row.template, attempt: row.attempts }, 'email send cut by shutdown; handed back to be sent again');
  }

  /**
   * Records a sent email (or a done job), retrying until the mark lands: the claim is still being
   * renewed meanwhile, so no worker sends the message again because the database blinked.
   */
  private async markDone(row: ClaimedRow): Promise<void> {
    const connection = this.orm.em.fork().getConnection();
    const marked = await this.recordUntilItLands(row, () =>
      connection.execute(`update "mail_outbox" set "sent_at" = now(), "payload" = null, "locked_until" = null, "last_error" = null where "id" = ?`, [row.id]),
    );
    if (!marked) {
      this.logger.error({ mailId: row.id, template: row.template }, 'email sent, but recording it failed; it may be sent again');
      return;
    }
    // (A job's emails are committed by now: the drain loop claims them next.)
    if (!isJobName(row.template)) this.logger.info({ mailId: row.id, template: row.template, attempt: row.attempts }, 'email sent');
  }

  /**
   * Runs `write` (what became of a claimed message) until it lands, while the batch's claims are
   * still renewed; gives up only once the worker is stopping and a few more tries failed (`false`).
   * Failures count as an outage of the database (logged once per interval).
   */
  private recordUntilItLands(row: ClaimedRow, write: () => Promise<unknown>): Promise<boolean> {
    return this.settling.untilItLands(write, (error, attempt) => {
      if (!this.outages.record(error) && attempt === 0) this.logger.warn({ err: error, mailId: row.id }, 'recording what became of an email failed; retrying');
    });
  }
}

const JOB_NAMES: ReadonlySet<string> = new Set<OutboxJob['name']>(['password-reset-request', 'webhook-event']);

function isJobName(name: string): boolean {
  return JOB_NAMES.has(name);
}

function isJob(payload: OutboxPayload): payload is OutboxJob {
  return isJobName(payload.name);
}

/**
 * Wakes the worker as soon as messages it could send exist: when a flush that inserted outbox rows
 * commits — at once for a flush outside a transaction, at the commit of the transaction it ran in
 * otherwise. The one place that does it, so no service has to remember to; the worker's regular
 * poll (`pollIntervalMs`) is the fallback.
 */
class WakeAfterCommit implements EventSubscriber {
  /** Transactions whose flushes inserted outbox rows, until they commit. */
  private readonly pending = new WeakSet<object>();

  constructor(private readonly wake: () => void) {}

  afterFlush({ em, uow }: FlushEventArgs): void {
    const queued = uow.getChangeSets().some((changeSet) => changeSet.type === ChangeSetType.CREATE && changeSet.entity instanceof MailMessage);
    if (!queued) return;
    const transaction = em.getTransactionContext<object>();
    if (transaction) this.pending.add(transaction);
    else this.wake();
  }

  afterTransactionCommit({ transaction }: TransactionEventArgs): void {
    if (!transaction || !this.pending.has(transaction)) return;
    this.pending.delete(transaction);
    this.wake();
  }
}

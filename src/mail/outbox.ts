import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { EntityManager, MikroORM } from '@mikro-orm/postgresql';
import type { LinkTargets } from '../config/config.js';
import type { Logger } from '../logger.js';
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
  /** How long a claimed message is reserved for the worker that claimed it. */
  claimMs: number;
  /** Messages claimed per round. */
  batchSize: number;
}

/** With these, a message is retried for about seven hours before it is given up. */
export const DEFAULT_OUTBOX_OPTIONS: OutboxOptions = {
  pollIntervalMs: 2_000,
  retryBaseMs: 5_000,
  maxAttempts: 15,
  claimMs: 2 * 60_000,
  batchSize: 10,
};

const MAX_RETRY_DELAY_MS = 60 * 60_000;

/** AES-256-GCM for template parameters at rest: `base64(iv ‖ tag ‖ ciphertext)`. */
class PayloadCipher {
  constructor(private readonly key: Uint8Array) {}

  seal(template: MailTemplate): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const sealed = Buffer.concat([cipher.update(JSON.stringify(template), 'utf8'), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString('base64');
  }

  open(payload: string): MailTemplate {
    const bytes = Buffer.from(payload, 'base64');
    const decipher = createDecipheriv('aes-256-gcm', this.key, bytes.subarray(0, 12));
    decipher.setAuthTag(bytes.subarray(12, 28));
    return JSON.parse(Buffer.concat([decipher.update(bytes.subarray(28)), decipher.final()]).toString('utf8')) as MailTemplate;
  }
}

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
 */
export class MailOutbox {
  private readonly cipher: PayloadCipher;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private rerun = false;
  private stopped = true;

  constructor(
    private readonly orm: MikroORM,
    private readonly transport: MailTransport,
    key: Uint8Array,
    private readonly links: LinkTargets,
    private readonly logger: Logger,
    private readonly options: OutboxOptions = DEFAULT_OUTBOX_OPTIONS,
  ) {
    this.cipher = new PayloadCipher(key);
  }

  /** Queues an email in `em`'s unit of work; it is written by the caller's flush. Call {@link wake} after. */
  enqueue(em: EntityManager, recipient: string, template: MailTemplate): MailMessage {
    return em.create(MailMessage, { recipient, template: template.name, payload: this.cipher.seal(template) });
  }

  /** Starts the worker. */
  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  /** Asks the worker to look for due messages now (after a transaction that queued some committed). */
  wake(): void {
    this.schedule(0);
  }

  /** Stops the worker after the round in progress; the transport is closed. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    this.transport.close();
  }

  private schedule(delay: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.tick(), delay);
    this.timer.unref();
  }

  private tick(): void {
    if (this.running) {
      this.rerun = true;
      return;
    }
    this.running = this.drain()
      .catch((error: unknown) => this.logger.error({ err: error }, 'mail outbox worker failed; retrying later'))
      .finally(() => {
        this.running = undefined;
        const again = this.rerun;
        this.rerun = false;
        this.schedule(again ? 0 : this.options.pollIntervalMs);
      });
  }

  /** Sends due messages until none is left. */
  private async drain(): Promise<void> {
    while (!this.stopped) {
      const claimed = await this.claim();
      if (claimed.length === 0) return;
      await Promise.all(claimed.map((row) => this.deliver(row)));
    }
  }

  private async claim(): Promise<ClaimedRow[]> {
    const now = new Date();
    return this.orm.em.fork().getConnection().execute<ClaimedRow[]>(
      `update "mail_outbox" set "locked_until" = ?, "attempts" = "attempts" + 1
        where "id" in (
          select "id" from "mail_outbox"
           where "sent_at" is null and "failed_at" is null and "next_attempt_at" <= ?
             and ("locked_until" is null or "locked_until" < ?)
           order by "next_attempt_at"
           limit ?
           for update skip locked)
        returning "id", "recipient", "template", "payload", "attempts"`,
      [new Date(now.getTime() + this.options.claimMs), now, now, this.options.batchSize],
    );
  }

  private async deliver(row: ClaimedRow): Promise<void> {
    const connection = this.orm.em.fork().getConnection();
    try {
      if (row.payload === null) throw new Error('message has no content');
      const rendered = renderMail(this.cipher.open(row.payload), this.links);
      await this.transport.send({ id: row.id, to: row.recipient, ...rendered });
    } catch (error) {
      // Only the error's own message: never the content, which may hold a token.
      const reason = (error instanceof Error ? error.message : String(error)).slice(0, 500);
      const givingUp = row.attempts >= this.options.maxAttempts;
      const delay = Math.min(this.options.retryBaseMs * 2 ** (row.attempts - 1), MAX_RETRY_DELAY_MS) * (0.8 + Math.random() * 0.4);
      await connection.execute(
        `update "mail_outbox" set "locked_until" = null, "last_error" = ?, "next_attempt_at" = ?,
                "failed_at" = ?, "payload" = case when ? then null else "payload" end
          where "id" = ?`,
        [reason, new Date(Date.now() + delay), givingUp ? new Date() : null, givingUp, row.id],
      );
      const details = { mailId: row.id, template: row.template, attempt: row.attempts, reason };
      if (givingUp) this.logger.error(details, 'email delivery failed; giving up');
      else this.logger.warn({ ...details, retryInMs: Math.round(delay) }, 'email delivery failed; will retry');
      return;
    }
    await connection.execute(
      `update "mail_outbox" set "sent_at" = ?, "payload" = null, "locked_until" = null, "last_error" = null where "id" = ?`,
      [new Date(), row.id],
    );
    this.logger.info({ mailId: row.id, template: row.template, attempt: row.attempts }, 'email sent');
  }
}

import type { MikroORM } from '@mikro-orm/postgresql';
import type { Retention } from './config/config.js';
import { withLease } from './db/lease.js';
import type { OutageLog } from './db/outage.js';
import type { Logger } from './logger.js';
import { PollingWorker } from './polling-worker.js';
import { RATE_LIMIT_TABLE } from './rate-limits.js';

/** Sent mail, and used or expired one-time tokens, are kept this long for investigations. */
const DONE_ROWS_DAYS = 7;
/** Webhook delivery attempts stay in the log admins read for this long. */
const WEBHOOK_LOG_DAYS = 30;
/** Rows deleted per statement: short statements that never hold many row locks at once. */
const BATCH = 1000;
const DAY_MS = 86_400_000;
/** The lease that makes one instance at a time run maintenance; renewed after every batch. */
const LEASE = { name: 'maintenance', ttlSeconds: 300 };

/** What one purge removes: a table (rows named by `key`), and the condition (with `?` for the cutoff) its dead rows meet. */
interface Purge {
  name: string;
  table: string;
  key: string;
  where: string;
  cutoff(now: number): Date | number;
}

/** Counts of rows deleted by one run, per purge. */
export type MaintenanceReport = Record<string, number>;

/**
 * Deletes what retention allows, every `intervalSeconds`: ended or expired sessions after
 * `sessionDays`, audit events after `auditDays`, sent or given-up mail and webhook messages and
 * used or expired one-time tokens after 7 days, webhook delivery attempts after 30 days, and
 * expired rate-limit rows. One instance at a time (a lease,
 * src/db/lease.ts, renewed after every batch), in batches of {@link BATCH} rows, each its own short
 * statement, so sign-in never waits behind it.
 */
export class Maintenance {
  private readonly worker: PollingWorker;
  private readonly purges: Purge[];

  constructor(
    private readonly orm: MikroORM,
    private readonly retention: Retention,
    private readonly logger: Logger,
    outages: OutageLog,
  ) {
    this.worker = new PollingWorker(
      async () => {
        await this.runOnce();
      },
      retention.intervalSeconds * 1000,
      (error) => {
        if (!outages.record(error)) this.logger.error({ err: error }, 'maintenance failed; trying again at the next interval');
      },
    );
    const daysAgo = (days: number) => (now: number) => new Date(now - days * DAY_MS);
    this.purges = [
      { name: 'sessions', table: 'sessions', key: 'id', where: '"revoked_at" < ? or "expires_at" < ?', cutoff: daysAgo(retention.sessionDays) },
      { name: 'auditEvents', table: 'audit_events', key: 'id', where: '"created_at" < ?', cutoff: daysAgo(retention.auditDays) },
      { name: 'mail', table: 'mail_outbox', key: 'id', where: '"sent_at" < ? or "failed_at" < ?', cutoff: daysAgo(DONE_ROWS_DAYS) },
      { name: 'webhookMessages', table: 'webhook_messages', key: 'id', where: '"delivered_at" < ? or "failed_at" < ?', cutoff: daysAgo(DONE_ROWS_DAYS) },
      { name: 'webhookDeliveries', table: 'webhook_deliveries', key: 'id', where: '"created_at" < ?', cutoff: daysAgo(WEBHOOK_LOG_DAYS) },
      { name: 'oneTimeTokens', table: 'one_time_tokens', key: 'id', where: '"used_at" < ? or "expires_at" < ?', cutoff: daysAgo(DONE_ROWS_DAYS) },
      // rate-limiter-flexible keeps `expire` in epoch milliseconds (null: never).
      { name: 'rateLimits', table: RATE_LIMIT_TABLE, key: 'key', where: '"expire" < ?', cutoff: (now) => now },
    ];
  }

  /** Runs every interval; the first run comes after one interval or a minute, whichever is sooner (not amid start-up). */
  start(): void {
    this.worker.start(Math.min(this.retention.intervalSeconds, 60) * 1000);
  }

  /** No run starts after this; resolves when the one in progress has finished. */
  stop(): Promise<void> {
    return this.worker.stop();
  }

  /** One run; `null` when another instance holds the maintenance lease. */
  async runOnce(): Promise<MaintenanceReport | null> {
    const report = await withLease(this.orm.em.fork(), LEASE.name, LEASE.ttlSeconds, async (renew) => {
      const startedAt = Date.now();
      const report: MaintenanceReport = {};
      for (const purge of this.purges) report[purge.name] = await this.purge(purge, startedAt, renew);
      this.logger.info({ purged: report, ms: Date.now() - startedAt }, 'maintenance done');
      return report;
    });
    if (!report) this.logger.debug('maintenance skipped: another instance is running it');
    return report;
  }

  private async purge(purge: Purge, now: number, renew: () => Promise<void>): Promise<number> {
    const cutoff = purge.cutoff(now);
    const parameters = purge.where.split('?').slice(1).map(() => cutoff);
    const connection = this.orm.em.fork().getConnection();
    let total = 0;
    const key = `"${purge.key}"`;
    for (;;) {
      const result = await connection.execute<{ affectedRows: number }>(
        `delete from "${purge.table}" where ${key} in (select ${key} from "${purge.table}" where ${purge.where} limit ${BATCH})`,
        parameters,
        'run',
      );
      total += result.affectedRows;
      if (result.affectedRows < BATCH) return total;
      await renew();
    }
  }
}

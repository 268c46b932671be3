import type { MikroORM } from '@mikro-orm/postgresql';
import type { Retention } from './config/config.js';
import { withLease } from './db/lease.js';
import { withStatementTimeout } from './db/statement-timeout.js';
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
/**
 * How long one batch may take (see STATEMENT_TIMEOUT_MS): with the indexes below a batch takes
 * milliseconds; this is room for a loaded server, short enough that shutdown, which waits for the
 * run in progress, still ends within its grace period when the database stops answering.
 */
const BATCH_TIMEOUT_MS = 5000;
const DAY_MS = 86_400_000;
/** The lease that makes one instance at a time run maintenance; renewed after every batch. */
const LEASE = { name: 'maintenance', ttlSeconds: 300 };

/** An index that lets a purge find its rows without reading the whole table. */
export interface PurgeIndex {
  name: string;
  /** The `create index` statement. */
  expression: string;
}

/**
 * An index on one column a purge compares with its cutoff; `partial` leaves out the rows where the
 * column is null (most of them, or the ones never to be purged by it): the purge's `<` never matches
 * those, so the planner uses the smaller index just the same.
 */
function columnIndex(table: string, column: string, partial: boolean): PurgeIndex {
  const name = `${table}_${column}_idx`;
  return { name, expression: `create index "${name}" on "${table}" ("${column}")${partial ? ` where "${column}" is not null` : ''}` };
}

/**
 * A column a purge compares with its cutoff (`<`), and the index that serves the comparison: one of
 * the purge's own (`partial` leaves out the rows where the column is null, see {@link columnIndex}),
 * or one already made for other queries (named in a comment beside the purge).
 */
type Ended = {
  column: string;
  index: 'partial' | 'whole' | 'existing';
  /** A further condition the row must meet to be purged by this column (no parameters). */
  and?: string;
};

/**
 * What one purge removes: a table (rows named by `key`) whose dead rows have any of the `ended`
 * columns before the cutoff. A condition of several comparisons joined by `or` is served by one
 * index per column, combined by a bitmap OR.
 */
interface Purge {
  name: string;
  table: string;
  key: string;
  ended: Ended[];
  cutoff(now: number, retention: Retention): Date | number;
}

const daysAgo = (days: number, now: number) => new Date(now - days * DAY_MS);
const partial = (column: string): Ended => ({ column, index: 'partial' });
const whole = (column: string): Ended => ({ column, index: 'whole' });
const existing = (column: string): Ended => ({ column, index: 'existing' });

/** Every purge, in the order a run makes them. */
const PURGES: readonly Purge[] = [
  // A rotated row is what recognises its refresh token presented again (reuse: the device session
  // ends); it stays while that token would be valid, however short the retention.
  {
    name: 'sessions',
    table: 'sessions',
    key: 'id',
    ended: [{ ...partial('revoked_at'), and: `"revoked_reason" is distinct from 'ROTATED' or "expires_at" < now()` }, whole('expires_at')],
    cutoff: (now, retention) => daysAgo(retention.sessionDays, now),
  },
  // audit_events_created_idx
  { name: 'auditEvents', table: 'audit_events', key: 'id', ended: [existing('created_at')], cutoff: (now, retention) => daysAgo(retention.auditDays, now) },
  { name: 'mail', table: 'mail_outbox', key: 'id', ended: [partial('sent_at'), partial('failed_at')], cutoff: (now) => daysAgo(DONE_ROWS_DAYS, now) },
  { name: 'webhookMessages', table: 'webhook_messages', key: 'id', ended: [partial('delivered_at'), partial('failed_at')], cutoff: (now) => daysAgo(DONE_ROWS_DAYS, now) },
  // webhook_deliveries_created_idx
  { name: 'webhookDeliveries', table: 'webhook_deliveries', key: 'id', ended: [existing('created_at')], cutoff: (now) => daysAgo(WEBHOOK_LOG_DAYS, now) },
  { name: 'oneTimeTokens', table: 'one_time_tokens', key: 'id', ended: [partial('used_at'), whole('expires_at')], cutoff: (now) => daysAgo(DONE_ROWS_DAYS, now) },
  // rate-limiter-flexible keeps `expire` in epoch milliseconds (null: never). The table has no
  // entity: its index is made by a migration written by hand.
  { name: 'rateLimits', table: RATE_LIMIT_TABLE, key: 'key', ended: [partial('expire')], cutoff: (now) => now },
];

/**
 * The indexes the purges of `table` rely on, for the ORM to declare on the table's entity (see
 * `discovery.onMetadata` in src/db/orm.ts), so that the schema tools know them as their own.
 */
export function purgeIndexes(table: string): PurgeIndex[] {
  return PURGES.filter((purge) => purge.table === table).flatMap((purge) =>
    purge.ended.flatMap(({ column, index }) => (index === 'existing' ? [] : [columnIndex(table, column, index === 'partial')])),
  );
}

/** One batch of a purge: the statement and its parameters. */
export interface PurgeStatement {
  name: string;
  sql: string;
  params: Array<Date | number>;
}

/** The statement that deletes one batch of each purge, with the cutoffs of a run at `now`. */
export function purgeStatements(retention: Retention, now: number): PurgeStatement[] {
  return PURGES.map((purge) => {
    const cutoff = purge.cutoff(now, retention);
    const key = `"${purge.key}"`;
    const where = purge.ended.map(({ column, and }) => (and ? `("${column}" < ? and (${and}))` : `"${column}" < ?`)).join(' or ');
    return {
      name: purge.name,
      sql: `delete from "${purge.table}" where ${key} in (select ${key} from "${purge.table}" where ${where} limit ${BATCH})`,
      params: purge.ended.map(() => cutoff),
    };
  });
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
      // A batch may take longer than a request's statement, never as long as a stuck one.
      await withStatementTimeout(BATCH_TIMEOUT_MS, async () => {
        for (const statement of purgeStatements(this.retention, startedAt)) {
          if (this.worker.stopping) break;
          report[statement.name] = await this.purge(statement, renew);
        }
      });
      // Shutting down: the batches done so far stay done; the next run (here or elsewhere) goes on.
      this.logger.info({ purged: report, ms: Date.now() - startedAt }, this.worker.stopping ? 'maintenance cut short by shutdown' : 'maintenance done');
      return report;
    });
    if (!report) this.logger.debug('maintenance skipped: another instance is running it');
    return report;
  }

  private async purge(statement: PurgeStatement, renew: () => Promise<void>): Promise<number> {
    const connection = this.orm.em.fork().getConnection();
    let total = 0;
    for (;;) {
      const result = await connection.execute<{ affectedRows: number }>(statement.sql, statement.params, 'run');
      total += result.affectedRows;
      // Shutdown waits for the run in progress: it ends after this batch, not after the backlog.
      if (result.affectedRows < BATCH || this.worker.stopping) return total;
      await renew();
    }
  }
}

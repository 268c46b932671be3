import { performance } from 'node:perf_hooks';
import { type Opt, Property } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import { BaseEntity } from './base.entity.js';
import { isDatabaseUnavailable } from './outage.js';

/**
 * Columns of a row in a work queue the workers of several instances share (the mail outbox, the
 * webhook messages): how often it was tried, when it is due, who holds it, and whether it was given
 * up. The table adds the column that marks it done (`sent_at`, `delivered_at`).
 */
export abstract class QueuedRow extends BaseEntity {
  @Property({ type: 'smallint', default: 0 })
  attempts: Opt<number> = 0;

  /** Due at once when written (on the database's clock, like every claim: see claimDue). */
  @Property({ type: 'timestamptz', defaultRaw: 'now()' })
  nextAttemptAt!: Opt<Date>;

  /** A worker that claimed the row holds it until then; a crashed worker's claim expires. */
  @Property({ type: 'timestamptz', nullable: true })
  lockedUntil: Date | null = null;

  /** Set when every attempt failed; the row is no longer tried. */
  @Property({ type: 'timestamptz', nullable: true })
  failedAt: Date | null = null;
}

/** Which queue to claim from, and what to read of the claimed rows. */
export interface ClaimSpec {
  table: string;
  /** The column set when a row is done (`sent_at`, `delivered_at`). */
  doneColumn: string;
  /** The columns returned of each claimed row (a select list of quoted names). */
  returning: string;
  leaseMs: number;
  limit: number;
  /**
   * A column grouping rows (`endpoint_id`): at most one row of a group is claimed at a time, the
   * group's earliest due one, and none while another of the group is claimed. One receiver that
   * hangs then holds one worker slot, not all of them, and its rows go in order.
   */
  onePer?: string;
  /**
   * A further condition on the rows that may be claimed (`"candidate"` is the row; no parameters),
   * applied before the order and the limit: rows it leaves out never take the place of rows it
   * keeps, however much earlier they are due.
   */
  only?: string;
}

/** `?` milliseconds from now, on the database's clock (for due times and leases). */
export const IN_MS = `now() + ? * interval '1 millisecond'`;

/**
 * The end of a lease of `?` milliseconds from now, on the database's clock: every instance, whatever
 * its own clock says, agrees when a claim lapses. (A worker that settles a row by its claim compares
 * the value it read back, which the ORM hands over as PostgreSQL's own text, so it matches exactly.)
 */
export const LEASE_END = `date_trunc('milliseconds', ${IN_MS})`;

/**
 * Claims up to `limit` due rows for `leaseMs` and counts an attempt on each, in one statement:
 * `FOR UPDATE SKIP LOCKED` keeps two workers from claiming one row, and the lease lets the rows of a
 * worker that died go to another once it lapses. Due and lapsed are judged by the database's clock,
 * never a worker's (an instance whose clock runs ahead must not take over a claim that still
 * holds). `with` wraps the claim in a CTE named "claimed" and selects from it (to join what the rows
 * point at).
 */
export function claimDue<T>(em: EntityManager, spec: ClaimSpec, select = 'select * from "claimed"'): Promise<T[]> {
  const { table, doneColumn, onePer, only } = spec;
  const open = (row: string) => `${row}."${doneColumn}" is null and ${row}."failed_at" is null`;
  const due = (row: string) => `${open(row)} and ${row}."next_attempt_at" <= now() and (${row}."locked_until" is null or ${row}."locked_until" < now())`;
  const grouped = onePer
    ? `and not exists (select 1 from "${table}" "busy" where "busy"."${onePer}" = "candidate"."${onePer}" and ${open('"busy"')} and "busy"."locked_until" >= now())
       and not exists (select 1 from "${table}" "earlier" where "earlier"."${onePer}" = "candidate"."${onePer}" and ${due('"earlier"')}
                         and ("earlier"."next_attempt_at", "earlier"."id") < ("candidate"."next_attempt_at", "candidate"."id"))`
    : '';
  return em.getConnection().execute<T[]>(
    `with "claimed" as (
       update "${table}" set "locked_until" = ${LEASE_END}, "attempts" = "attempts" + 1
        where "id" in (
          select "id" from "${table}" "candidate"
           where ${due('"candidate"')} ${grouped} ${only ? `and (${only})` : ''}
           order by "next_attempt_at"
           limit ?
           for update skip locked)
       returning ${spec.returning})
     ${select}`,
    [spec.leaseMs, spec.limit],
  );
}

/** Waits between attempts to record what became of a claimed row, until it lands (or the worker stops). */
export const SETTLE_RETRY_DELAYS_MS = [50, 200, 500, 1000, 2000];

/**
 * After the database last failed a queue's worker, it claims nothing for this long: a worker of
 * another instance that was sending when the database went away retries its records every
 * {@link SETTLE_RETRY_DELAYS_MS} at most (2 s), so they land before anyone takes back the rows whose
 * claims lapsed meanwhile and sends them again. Every instance polls the database (during the pause
 * too), so every instance sees an outage of it, and the pause ends at least 4 s after the database
 * answers again.
 */
export const CLAIM_PAUSE_AFTER_FAILURE_MS = 3 * SETTLE_RETRY_DELAYS_MS[SETTLE_RETRY_DELAYS_MS.length - 1]!;

/**
 * Why an attempt (an SMTP send, a webhook POST) was cut by its worker's stop: not the receiver's
 * failure, so it costs no attempt and its row is handed back.
 */
export class ShutdownError extends Error {
  constructor() {
    super('the server shut down during the attempt');
  }
}

/**
 * What a queue's worker remembers of the database's failures: when it last failed (a claim, a
 * renewal, a record), so the worker pauses its claims after it ({@link CLAIM_PAUSE_AFTER_FAILURE_MS}),
 * and how to record what became of a claimed row until it lands. Times are the process's monotonic
 * clock: a step of the wall clock neither stretches nor shortens the pause.
 */
export class SettleRetry {
  private lastFailureAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly stopping: () => boolean) {}

  /** The database failed this worker with `error`: an outage pauses its claims (other errors are the statement's own). */
  failed(error: unknown): void {
    if (isDatabaseUnavailable(error)) this.lastFailureAt = performance.now();
  }

  /** Whether the worker should claim nothing yet (it still asks the database meanwhile). */
  pausing(): boolean {
    return performance.now() - this.lastFailureAt < CLAIM_PAUSE_AFTER_FAILURE_MS;
  }

  /**
   * Runs `write` until it lands while the database cannot be reached; gives up (`false`) once the
   * worker is stopping and a few more tries failed, and after a few tries of an error that is not an
   * outage (the statement itself fails: trying for ever would hold the row and the worker's round).
   * `onFailure` hears of each failure (the first one of a row is worth a line).
   */
  async untilItLands(write: () => Promise<unknown>, onFailure: (error: unknown, attempt: number) => void): Promise<boolean> {
    for (let attempt = 0; ; attempt += 1) {
      try {
        await write();
        return true;
      } catch (error) {
        this.failed(error);
        onFailure(error, attempt);
        const lastTry = attempt >= SETTLE_RETRY_DELAYS_MS.length;
        if (lastTry && (this.stopping() || !isDatabaseUnavailable(error))) return false;
        await new Promise((resolve) => setTimeout(resolve, SETTLE_RETRY_DELAYS_MS[Math.min(attempt, SETTLE_RETRY_DELAYS_MS.length - 1)]));
      }
    }
  }
}

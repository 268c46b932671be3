import { type Opt, Property } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import { BaseEntity } from './base.entity.js';

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

/**
 * The end of a lease of `?` milliseconds from now, on the database's clock: every instance, whatever
 * its own clock says, agrees when a claim lapses. Whole milliseconds, so the value a worker reads
 * back (a JavaScript Date) matches the stored one exactly when it settles the row by it.
 */
export const LEASE_END = `date_trunc('milliseconds', now() + ? * interval '1 millisecond')`;

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

import type { EntityClass, EntityData, EntityKey, EntityManager } from '@mikro-orm/postgresql';
import { Field, ObjectType } from 'type-graphql';
import { isUuid } from '../db/base.entity.js';
import { isCanonicalBase64url } from '../encoding.js';
import { BadUserInputError } from '../errors.js';

/** Page size when `first` is not given, and the most one page may hold. */
export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

@ObjectType({ simpleResolvers: true, description: 'Where a page sits in the whole list (Relay cursor connections).' })
export class PageInfo {
  @Field(() => Boolean, { description: 'Whether more items follow `endCursor`.' })
  hasNextPage!: boolean;

  @Field(() => Boolean, { description: 'Whether items precede `startCursor` (true on every page after the first).' })
  hasPreviousPage!: boolean;

  @Field(() => String, { nullable: true, description: 'Cursor of the first item of the page.' })
  startCursor!: string | null;

  @Field(() => String, { nullable: true, description: 'Cursor of the last item; pass it as `after` for the next page.' })
  endCursor!: string | null;
}

/** What every paginated, newest-first entity has. */
export interface Keyed {
  id: string;
  createdAt: Date;
}

/** One page of a newest-first list. */
export interface Page<T extends Keyed> {
  edges: Array<{ cursor: string; node: T }>;
  pageInfo: PageInfo;
  totalCount: number;
}

/** An opaque cursor naming a position in a newest-first list: the item's creation time and id. */
export function encodeCursor(item: Keyed): string {
  return Buffer.from(`${item.createdAt.toISOString()}|${item.id}`, 'utf8').toString('base64url');
}

const CURSOR = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)\|(.+)$/;
/** Cursors name rows this server wrote: nothing before 1970 or after 9999 (PostgreSQL refuses year 0). */
const OLDEST_CURSOR = Date.UTC(1970, 0, 1);
const NEWEST_CURSOR = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/**
 * The position a cursor names. Anything but a cursor this server could have written — another
 * encoding of the same bytes, a date that does not exist (Feb 30 would roll over), or one out of
 * range — is BAD_USER_INPUT on `after`, before any SQL.
 */
function decodeCursor(cursor: string): Keyed {
  const invalid = () => new BadUserInputError('The cursor is not valid.', 'after');
  if (cursor.length > 100) throw invalid();
  if (!isCanonicalBase64url(cursor)) throw invalid();
  const match = Buffer.from(cursor, 'base64url').toString('utf8').match(CURSOR);
  if (!match || !isUuid(match[2])) throw invalid();
  const createdAt = new Date(match[1]);
  const time = createdAt.getTime();
  if (Number.isNaN(time) || time < OLDEST_CURSOR || time > NEWEST_CURSOR || createdAt.toISOString() !== match[1]) throw invalid();
  return { createdAt, id: match[2] };
}

/** `first` as a page size: default 20, capped at 100; negative is refused. */
export function pageSize(first: number | null | undefined): number {
  if (first === null || first === undefined) return DEFAULT_PAGE_SIZE;
  if (first < 0) throw new BadUserInputError('`first` must not be negative.', 'first');
  return Math.min(first, MAX_PAGE_SIZE);
}

/** A condition rows of a listing meet: SQL with `?` placeholders over the table's columns, and their values. */
export interface Condition {
  sql: string;
  params: unknown[];
}

/** What a keyset page lists: the rows of one entity's table meeting every condition, reading `fields`. */
export interface Listing<T extends Keyed> {
  entity: EntityClass<T>;
  fields: ReadonlyArray<keyof T & string>;
  where: Condition[];
}

/**
 * Keyset pagination, newest first: `(created_at, id)` below the cursor, so rows inserted while a
 * client pages never shift, duplicate or skip items. `totalCount` counts the whole filtered set.
 * Listings read a replica when there is one (they may lag a little behind the primary).
 *
 * Pages are for reading, so this is SQL over the entity's metadata rather than the query builder,
 * and rows are mapped to plain data rather than hydrated into managed entities: building the two
 * queries and hydrating the rows cost several times the queries themselves (see BENCHMARKS.md).
 */
export async function keysetPage<T extends Keyed, N extends Keyed>(
  em: EntityManager,
  listing: Listing<T>,
  first: number | null | undefined,
  after: string | null | undefined,
  toNode: (row: T) => N,
): Promise<Page<N>> {
  const size = pageSize(first);
  const cursor = after ? decodeCursor(after) : null;
  const meta = em.getMetadata().get<T>(listing.entity.name);
  const column = (property: keyof T & string) => `"${meta.properties[property as EntityKey<T>].fieldNames[0]}"`;
  const table = `"${meta.tableName}"`;
  const filters = listing.where.map((condition) => `(${condition.sql})`);
  const params = listing.where.flatMap((condition) => condition.params);
  const pageFilters = cursor ? [...filters, `(${column('createdAt')}, ${column('id')}) < (?, ?)`] : filters;
  const whereSql = (conditions: string[]) => (conditions.length > 0 ? ` where ${conditions.join(' and ')}` : '');
  const read = em.getConnection('read');
  // Two independent reads: on a pool they run side by side.
  const [[counted], rows] = await Promise.all([
    read.execute<Array<{ count: string | number }>>(`select count(*) as "count" from ${table}${whereSql(filters)}`, params),
    size === 0
      ? []
      : read.execute<Array<Record<string, unknown>>>(
          `select ${listing.fields.map(column).join(', ')} from ${table}${whereSql(pageFilters)} order by ${column('createdAt')} desc, ${column('id')} desc limit ?`,
          [...params, ...(cursor ? [cursor.createdAt, cursor.id] : []), size + 1],
        ),
  ]);
  const totalCount = Number(counted.count);
  const driver = em.getDriver();
  const nodes = rows.slice(0, size).map((row) => toNode(driver.mapResult(row as EntityData<T>, meta) as T));
  const edges = nodes.map((node) => ({ cursor: encodeCursor(node), node }));
  return {
    edges,
    totalCount,
    pageInfo: {
      hasNextPage: size === 0 ? totalCount > 0 : rows.length > size,
      hasPreviousPage: Boolean(after),
      startCursor: edges[0]?.cursor ?? null,
      endCursor: edges.at(-1)?.cursor ?? null,
    },
  };
}

import type { EntityData, QueryBuilder } from '@mikro-orm/postgresql';
import { Field, ObjectType } from 'type-graphql';
import { isUuid } from '../db/base.entity.js';
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

function decodeCursor(cursor: string): Keyed {
  const match = cursor.length <= 100 ? Buffer.from(cursor, 'base64url').toString('utf8').match(CURSOR) : null;
  const createdAt = match ? new Date(match[1]) : null;
  if (!match || !createdAt || Number.isNaN(createdAt.getTime()) || !isUuid(match[2])) {
    throw new BadUserInputError('The cursor is not valid.', 'after');
  }
  return { createdAt, id: match[2] };
}

/** `first` as a page size: default 20, capped at 100; negative is refused. */
export function pageSize(first: number | null | undefined): number {
  if (first === null || first === undefined) return DEFAULT_PAGE_SIZE;
  if (first < 0) throw new BadUserInputError('`first` must not be negative.', 'first');
  return Math.min(first, MAX_PAGE_SIZE);
}

/**
 * Keyset pagination, newest first: `(created_at, id)` below the cursor, so rows inserted while a
 * client pages never shift, duplicate or skip items. `totalCount` counts the whole filtered set.
 * `query` carries the filters (and the selected properties); it must not be ordered or limited yet.
 * Pages are for reading: rows come back as plain data mapped to property names, made into nodes by
 * `toNode`, never hydrated into managed entities (which costs more than the queries).
 */
export async function keysetPage<T extends Keyed, N extends Keyed>(
  query: QueryBuilder<T>,
  first: number | null | undefined,
  after: string | null | undefined,
  toNode: (row: EntityData<T>) => N,
): Promise<Page<N>> {
  const size = pageSize(first);
  const page = query.clone();
  if (after) {
    const cursor = decodeCursor(after);
    page.andWhere({ $or: [{ createdAt: { $lt: cursor.createdAt } }, { createdAt: cursor.createdAt, id: { $lt: cursor.id } }] } as never);
  }
  // Two independent reads: on a pool they run side by side.
  const [totalCount, rows] = await Promise.all([
    query.clone().getCount(),
    size === 0 ? [] : page.orderBy({ createdAt: 'desc', id: 'desc' } as never).limit(size + 1).execute<Array<EntityData<T>>>('all', true),
  ]);
  const nodes = rows.slice(0, size).map(toNode);
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

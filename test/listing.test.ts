import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DELETE_USER, LOGIN, registerAccount } from './support/accounts.js';
import { queriesDuring } from './support/database.js';
import { errorCode, errorField, type GraphQLResponse, startTestServer, type TestServer } from './support/server.js';

// Not 'root admin passphrase 1': the policy rightly refuses a password containing the username (admin) or the email's local part (root).
const ADMIN_PASSWORD = 'chief operator passphrase 1';

const USERS = `query Users($first: Int, $after: String, $filter: UserFilter) {
  users(first: $first, after: $after, filter: $filter) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id email username firstName lastName role active createdAt } }
  }
}`;
const CREATE_USER = 'mutation Create($input: CreateUserInput!) { createUser(input: $input) { id email username firstName lastName role active } }';

interface ListedUser {
  id: string;
  email: string;
  username: string;
  firstName: string | null;
  lastName: string | null;
  role: string;
  active: boolean;
  createdAt: string;
}
interface UserPage {
  totalCount: number;
  pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string | null; endCursor: string | null };
  edges: Array<{ cursor: string; node: ListedUser }>;
}
interface Filter {
  search?: string;
  role?: 'USER' | 'ADMIN';
  active?: boolean;
}

let server: TestServer;
let adminToken: string;
beforeAll(async () => {
  server = await startTestServer({ ADMIN_EMAIL: 'root@example.test', ADMIN_PASSWORD });
  const response = await server.graphql(LOGIN, { input: { identifier: 'admin', password: ADMIN_PASSWORD } });
  if (!response.data?.login) throw new Error(`admin login failed: ${JSON.stringify(response.errors)}`);
  adminToken = response.data.login.accessToken;
});
afterAll(() => server?.stop());

function suffix(): string {
  return randomBytes(4).toString('hex');
}

function listUsers(variables: { first?: number | null; after?: string | null; filter?: Filter }, token = adminToken): Promise<GraphQLResponse<{ users: UserPage }>> {
  return server.graphql<{ users: UserPage }>(USERS, variables, { token });
}

/** One page, failing the test when the call does. */
async function page(variables: { first?: number | null; after?: string | null; filter?: Filter }): Promise<UserPage> {
  const response = await listUsers(variables);
  expect(response.errors).toBeUndefined();
  expect(response.status).toBe(200);
  return response.data!.users;
}

/** Follows endCursor from the first page to the last; returns every page. */
async function walk(first: number, filter?: Filter, between?: () => Promise<void>): Promise<UserPage[]> {
  const pages: UserPage[] = [];
  let after: string | null = null;
  for (let guard = 0; guard < 1000; guard += 1) {
    const current: UserPage = await page({ first, after, filter });
    pages.push(current);
    // Each page is consistent with its own edges.
    expect(current.pageInfo.startCursor).toBe(current.edges[0]?.cursor ?? null);
    expect(current.pageInfo.endCursor).toBe(current.edges.at(-1)?.cursor ?? null);
    expect(current.pageInfo.hasPreviousPage).toBe(pages.length > 1);
    expect(current.edges.length).toBeLessThanOrEqual(first);
    if (!current.pageInfo.hasNextPage) return pages;
    expect(current.edges).toHaveLength(first);
    after = current.pageInfo.endCursor;
    if (between) await between();
  }
  throw new Error('pagination never ended');
}

function idsOf(pages: UserPage[]): string[] {
  return pages.flatMap((current) => current.edges.map((edge) => edge.node.id));
}

interface UserRow {
  id: string;
  email: string;
  username: string;
  first_name: string | null;
  last_name: string | null;
  role: string;
  active: boolean;
}

/** Every user, newest first, straight from the database (the oracle for ordering and filters). */
function usersInDatabase(): Promise<UserRow[]> {
  return server.sql<UserRow>('select id, email, username, first_name, last_name, role, active from users order by created_at desc, id desc');
}

/** What the filter should select, computed independently of the server's SQL. */
function matches(row: UserRow, filter: Filter): boolean {
  if (filter.search !== undefined) {
    const text = [row.email, row.username, row.first_name ?? '', row.last_name ?? ''].join(' ').toLowerCase();
    if (!text.includes(filter.search.trim().toLowerCase())) return false;
  }
  if (filter.role !== undefined && row.role !== filter.role) return false;
  if (filter.active !== undefined && row.active !== filter.active) return false;
  return true;
}

async function expectedIds(filter: Filter = {}): Promise<string[]> {
  return (await usersInDatabase()).filter((row) => matches(row, filter)).map((row) => row.id);
}

async function createUser(input: Record<string, unknown> = {}): Promise<ListedUser> {
  const tag = suffix();
  const response = await server.graphql(
    CREATE_USER,
    { input: { email: `listed-${tag}@example.com`, username: `listed_${tag}`, password: `a long passphrase ${tag}`, ...input } },
    { token: adminToken },
  );
  if (!response.data?.createUser) throw new Error(`createUser failed: ${JSON.stringify(response.errors)}`);
  return response.data.createUser;
}

/** Registers `count` accounts, a few at a time. */
async function registerMany(count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let done = 0; done < count; done += 10) {
    const batch = await Promise.all(Array.from({ length: Math.min(10, count - done) }, () => registerAccount(server)));
    ids.push(...batch.map((account) => account.user.id));
  }
  return ids;
}

function expectBadInput(response: GraphQLResponse, field?: string): void {
  expect(response.status).not.toBe(500);
  expect(response.data ?? null).toBeNull();
  expect(errorCode(response)).toBe('BAD_USER_INPUT');
  if (field) expect(errorField(response)).toBe(field);
}

function cursorOf(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}

describe('users: page size', () => {
  beforeAll(async () => {
    const existing = (await usersInDatabase()).length;
    if (existing < 105) await registerMany(105 - existing);
  }, 120_000);

  it('returns 20 users when first is not given', async () => {
    const result = await page({});
    expect(result.edges).toHaveLength(20);
    expect(result.pageInfo.hasNextPage).toBe(true);
    expect(result.pageInfo.hasPreviousPage).toBe(false);
    expect(result.totalCount).toBe((await usersInDatabase()).length);
  });

  it('returns exactly `first` users', async () => {
    const result = await page({ first: 5 });
    expect(result.edges).toHaveLength(5);
    expect(result.pageInfo.hasNextPage).toBe(true);
    expect(result.edges.map((edge) => edge.node.id)).toEqual((await expectedIds()).slice(0, 5));
  });

  it('caps first at 100', async () => {
    const total = (await usersInDatabase()).length;
    expect(total).toBeGreaterThan(100);
    for (const first of [101, 1000, 2 ** 31 - 1]) {
      const result = await page({ first });
      expect(result.edges).toHaveLength(100);
      expect(result.pageInfo.hasNextPage).toBe(true);
      expect(result.totalCount).toBe(total);
    }
  });

  it('returns no edges for first: 0, with the total', async () => {
    const result = await page({ first: 0 });
    expect(result.edges).toEqual([]);
    expect(result.totalCount).toBe((await usersInDatabase()).length);
    expect(result.pageInfo.startCursor).toBeNull();
    expect(result.pageInfo.endCursor).toBeNull();
  });

  it('refuses a negative first with BAD_USER_INPUT', async () => {
    expectBadInput(await listUsers({ first: -1 }), 'first');
    expectBadInput(await listUsers({ first: -(2 ** 31) }), 'first');
  });

  it('refuses an invalid after cursor with BAD_USER_INPUT, never a 500', async () => {
    const valid = (await page({ first: 1 })).pageInfo.endCursor!;
    const invalid = [
      'garbage',
      '',
      Buffer.from('some junk that is not a cursor').toString('base64'),
      cursorOf('junk|junk'),
      cursorOf(`not-a-date|${'a'.repeat(36)}`),
      cursorOf('2024-13-45T99:99:99.999Z|00000000-0000-4000-8000-000000000000'),
      `${valid}x`,
      valid.slice(0, -3),
      'A'.repeat(10_000),
      '\u0000\u0001',
    ];
    const answers = [];
    for (const after of invalid) {
      const response = await listUsers({ first: 5, after });
      // An empty string may be read as "no cursor"; anything else is refused.
      if (after === '' && !response.errors) continue;
      const decoded = Buffer.from(after, 'base64url').toString('utf8');
      answers.push({ after: after.slice(0, 100), decoded: decoded.slice(0, 80), status: response.status, code: errorCode(response), field: errorField(response) });
    }
    expect(answers).toEqual(answers.map(({ after, decoded }) => ({ after, decoded, status: 200, code: 'BAD_USER_INPUT', field: 'after' })));
  });

  // The cursor's id part is checked only against [0-9a-f-]{36}, so a cursor of the right shape whose
  // id is no UUID reaches PostgreSQL and fails there ("invalid input syntax for type uuid").
  it('refuses a cursor whose id part is not a UUID with BAD_USER_INPUT, never INTERNAL_SERVER_ERROR', async () => {
    const ids = ['-'.repeat(36), 'f'.repeat(36), `${'0'.repeat(35)}-`, '00000000-0000-0000-0000-00000000000-'];
    const answers = [];
    for (const id of ids) {
      const response = await listUsers({ first: 5, after: cursorOf(`2024-01-01T00:00:00.000Z|${id}`) });
      answers.push({ id, code: errorCode(response), field: errorField(response) });
    }
    expect(answers).toEqual(ids.map((id) => ({ id, code: 'BAD_USER_INPUT', field: 'after' })));
  });

  it('accepts well-formed cursors far in the past or future without failing', async () => {
    const total = (await usersInDatabase()).length;
    const future = await page({ first: 3, after: cursorOf('9999-12-31T23:59:59.999Z|ffffffff-ffff-ffff-ffff-ffffffffffff') });
    expect(future.edges.map((edge) => edge.node.id)).toEqual((await expectedIds()).slice(0, 3));
    expect(future.totalCount).toBe(total);
    const past = await page({ first: 3, after: cursorOf('1970-01-01T00:00:00.000Z|00000000-0000-0000-0000-000000000000') });
    expect(past.edges).toEqual([]);
    expect(past.pageInfo.hasNextPage).toBe(false);
    expect(past.pageInfo.hasPreviousPage).toBe(true);
  });

  it('is for admins only', async () => {
    const account = await registerAccount(server);
    const forbidden = await listUsers({ first: 5 }, account.accessToken);
    expect(forbidden.data ?? null).toBeNull();
    expect(errorCode(forbidden)).toBe('FORBIDDEN');
    const anonymous = await server.graphql(USERS, { first: 5 });
    expect(anonymous.data ?? null).toBeNull();
    expect(errorCode(anonymous)).toBe('UNAUTHENTICATED');
  });
});

describe('users: newest first', () => {
  beforeAll(async () => {
    await registerMany(30);
  }, 120_000);

  it('walks every user exactly once, in (createdAt, id) descending order', async () => {
    const expected = await expectedIds();
    expect(expected.length).toBeGreaterThanOrEqual(30);
    const pages = await walk(7);
    const ids = idsOf(pages);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual(expected);
    expect(pages).toHaveLength(Math.ceil(expected.length / 7));
    for (const current of pages) expect(current.totalCount).toBe(expected.length);

    // createdAt, as the API shows it, never increases along the walk.
    const times = pages.flatMap((current) => current.edges.map((edge) => Date.parse(edge.node.createdAt)));
    for (let index = 1; index < times.length; index += 1) expect(times[index]).toBeLessThanOrEqual(times[index - 1]);
  });

  it('pages the same way whatever the page size', async () => {
    const expected = await expectedIds();
    for (const first of [1, 3, 13, 100]) expect(idsOf(await walk(first))).toEqual(expected);
  }, 60_000);

  it('has hasPreviousPage false only on the first page and cursors matching the edges', async () => {
    const first = await page({ first: 7 });
    expect(first.pageInfo.hasPreviousPage).toBe(false);
    expect(first.pageInfo.startCursor).toBe(first.edges[0].cursor);
    expect(first.pageInfo.endCursor).toBe(first.edges[6].cursor);
    const second = await page({ first: 7, after: first.pageInfo.endCursor });
    expect(second.pageInfo.hasPreviousPage).toBe(true);
    expect(second.pageInfo.startCursor).toBe(second.edges[0].cursor);
    expect(second.pageInfo.endCursor).toBe(second.edges.at(-1)!.cursor);
    // Any edge's cursor continues right behind that edge.
    const fromMiddle = await page({ first: 3, after: first.edges[2].cursor });
    expect(fromMiddle.edges.map((edge) => edge.node.id)).toEqual(first.edges.slice(3, 6).map((edge) => edge.node.id));
  });

  it('still continues after the user a cursor points at has been deleted', async () => {
    const victim = await createUser();
    const before = await expectedIds();
    const position = before.indexOf(victim.id);
    expect(position).toBe(0);
    const first = await page({ first: 1 });
    expect(first.edges[0].node.id).toBe(victim.id);
    const deleted = await server.graphql(DELETE_USER, { id: victim.id }, { token: adminToken });
    expect(deleted.data?.deleteUser).toBe(true);
    const next = await page({ first: 5, after: first.pageInfo.endCursor });
    expect(next.edges.map((edge) => edge.node.id)).toEqual(before.slice(1, 6));
  });

  it('is stable while users are added: every user that existed at the start comes exactly once', async () => {
    const existing = await expectedIds();
    const added: string[] = [];
    const pages = await walk(5, undefined, async () => {
      added.push(...(await registerMany(3)));
    });
    const ids = idsOf(pages);
    expect(added.length).toBeGreaterThan(0);
    expect(new Set(ids).size).toBe(ids.length);
    // The first page was read before anything was added; later pages only go further back in time.
    expect(ids).toEqual(existing);
    for (const id of added) expect(ids).not.toContain(id);
    // The total follows the table; the newcomers are listed first from now on.
    const now = await page({ first: 3 });
    expect(now.totalCount).toBe(existing.length + added.length);
    expect(now.edges.map((edge) => edge.node.id)).toEqual((await expectedIds()).slice(0, 3));
    for (const edge of now.edges) expect(added).toContain(edge.node.id);
  }, 120_000);
});

describe('users: filters', () => {
  const tag = suffix();
  const TOKEN = `kx${tag}`;
  const created: Record<string, ListedUser> = {};

  beforeAll(async () => {
    created.byEmail = await createUser({ email: `${TOKEN}-mail@example.com` });
    created.byUsername = await createUser({ username: `${TOKEN.toUpperCase()}_user` });
    created.byFirstName = await createUser({ firstName: `Anna${TOKEN}first` });
    created.byLastName = await createUser({ lastName: `von ${TOKEN.toUpperCase()}` });
    created.unrelated = await createUser({ firstName: 'Nobody', lastName: 'Special' });
    created.zebra = await createUser({ firstName: 'zebra', lastName: `zoo${tag}` });
    created.zebraAdmin = await createUser({ firstName: 'Zebra', lastName: `keeper${tag}`, role: 'ADMIN' });
    created.zebraInactive = await createUser({ firstName: 'ZEBRA', lastName: `gone${tag}`, active: false });
    created.zebraInactiveAdmin = await createUser({ firstName: 'zEbRa', lastName: `retired${tag}`, role: 'ADMIN', active: false });
    created.percent = await createUser({ firstName: `pct${tag}`, lastName: '100%' });
    created.noPercent = await createUser({ firstName: `pct${tag}`, lastName: '1000' });
    created.underscore = await createUser({ username: `und-${tag}-1`, email: `und-${tag}-1@example.com`, firstName: `und${tag}`, lastName: 'x_y' });
    created.noUnderscore = await createUser({ username: `und-${tag}-2`, email: `und-${tag}-2@example.com`, firstName: `und${tag}`, lastName: 'xzy' });
    created.backslash = await createUser({ firstName: `bks${tag}`, lastName: 'a\\b' });
    created.noBackslash = await createUser({ firstName: `bks${tag}`, lastName: 'ab' });
    created.inactive = await createUser({ active: false });
    created.admin = await createUser({ role: 'ADMIN' });
  }, 60_000);

  async function expectFilter(filter: Filter, mustInclude: ListedUser[] = [], mustExclude: ListedUser[] = []): Promise<string[]> {
    const expected = await expectedIds(filter);
    const result = await page({ first: 100, filter });
    expect(result.totalCount).toBe(expected.length);
    expect(result.edges.map((edge) => edge.node.id)).toEqual(expected.slice(0, 100));
    const ids = result.edges.map((edge) => edge.node.id);
    for (const user of mustInclude) expect(ids).toContain(user.id);
    for (const user of mustExclude) expect(ids).not.toContain(user.id);
    return ids;
  }

  it('searches email, username, first and last name case-insensitively', async () => {
    const ids = await expectFilter({ search: TOKEN.toUpperCase() }, [created.byEmail, created.byUsername, created.byFirstName, created.byLastName], [created.unrelated]);
    expect(ids).toHaveLength(4);
    expect(await expectFilter({ search: TOKEN })).toHaveLength(4);
    // Each field on its own.
    expect(await expectFilter({ search: `${TOKEN}-MAIL@` })).toEqual([created.byEmail.id]);
    expect(await expectFilter({ search: `${TOKEN}_User` })).toEqual([created.byUsername.id]);
    expect(await expectFilter({ search: `ANNA${TOKEN}` })).toEqual([created.byFirstName.id]);
    expect(await expectFilter({ search: `VON ${TOKEN}` })).toEqual([created.byLastName.id]);
  });

  it('finds "zebra" when searching "ZEBRA", in any letter case', async () => {
    const zebras = [created.zebra, created.zebraAdmin, created.zebraInactive, created.zebraInactiveAdmin];
    for (const search of ['ZEBRA', 'zebra', 'ZeBrA']) {
      const ids = await expectFilter({ search }, zebras, [created.unrelated]);
      expect(ids).toHaveLength(4);
    }
  });

  it('ignores surrounding whitespace in the search', async () => {
    expect(await expectFilter({ search: `  ${TOKEN}  ` })).toHaveLength(4);
  });

  it('treats % literally', async () => {
    const ids = await expectFilter({ search: '%' }, [created.percent], [created.noPercent, created.unrelated]);
    expect(ids).toEqual([created.percent.id]);
    expect(await expectFilter({ search: '100%' })).toEqual([created.percent.id]);
    expect(await expectFilter({ search: '%%' })).toEqual([]);
    // A wildcard would match "1000" too.
    expect(await expectFilter({ search: `pct${tag} 100%` })).toEqual([created.percent.id]);
  });

  it('treats _ literally', async () => {
    expect(await expectFilter({ search: 'x_y' })).toEqual([created.underscore.id]);
    expect(await expectFilter({ search: `und${tag} x_y` })).toEqual([created.underscore.id]);
    expect(await expectFilter({ search: `und${tag} x_` })).toEqual([created.underscore.id]);
    // "_" alone matches the many usernames with an underscore, but exactly those.
    const underscored = await expectFilter({ search: '_' }, [created.underscore], [created.noUnderscore]);
    expect(underscored.length).toBeGreaterThan(1);
  });

  it('treats \\ literally', async () => {
    expect(await expectFilter({ search: 'a\\b' })).toEqual([created.backslash.id]);
    expect(await expectFilter({ search: '\\' })).toEqual([created.backslash.id]);
    expect(await expectFilter({ search: `bks${tag} a\\` })).toEqual([created.backslash.id]);
  });

  it('filters by role', async () => {
    const admins = await expectFilter({ role: 'ADMIN' }, [created.admin, created.zebraAdmin, created.zebraInactiveAdmin], [created.unrelated]);
    expect(admins.length).toBeGreaterThanOrEqual(4); // with the start-up admin
    const result = await page({ first: 100, filter: { role: 'ADMIN' } });
    for (const edge of result.edges) expect(edge.node.role).toBe('ADMIN');
    const users = await page({ first: 100, filter: { role: 'USER' } });
    for (const edge of users.edges) expect(edge.node.role).toBe('USER');
    expect(users.totalCount + result.totalCount).toBe((await usersInDatabase()).length);
  });

  it('filters by active', async () => {
    const inactive = await expectFilter({ active: false }, [created.inactive, created.zebraInactive, created.zebraInactiveAdmin], [created.unrelated, created.admin]);
    expect(inactive).toHaveLength(3);
    const active = await page({ first: 100, filter: { active: true } });
    for (const edge of active.edges) expect(edge.node.active).toBe(true);
    expect(active.totalCount).toBe((await usersInDatabase()).length - 3);
  });

  it('combines filters (all must hold)', async () => {
    expect(await expectFilter({ search: 'zebra', role: 'ADMIN' })).toEqual([created.zebraInactiveAdmin.id, created.zebraAdmin.id]);
    expect(await expectFilter({ search: 'zebra', active: false })).toEqual([created.zebraInactiveAdmin.id, created.zebraInactive.id]);
    expect(await expectFilter({ search: 'ZEBRA', role: 'ADMIN', active: false })).toEqual([created.zebraInactiveAdmin.id]);
    expect(await expectFilter({ search: 'zebra', role: 'USER', active: true })).toEqual([created.zebra.id]);
    expect(await expectFilter({ role: 'ADMIN', active: false })).toEqual([created.zebraInactiveAdmin.id]);
    expect(await expectFilter({ search: TOKEN, role: 'ADMIN' })).toEqual([]);
    expect(await expectFilter({ search: 'no such text anywhere' })).toEqual([]);
  });

  it('gives no pages and a zero total when nothing matches', async () => {
    const result = await page({ first: 5, filter: { search: `nothing-${tag}` } });
    expect(result).toEqual({ totalCount: 0, edges: [], pageInfo: { hasNextPage: false, hasPreviousPage: false, startCursor: null, endCursor: null } });
  });

  it('counts the filtered set in totalCount, and walking its pages yields exactly that many users', async () => {
    const filters: Filter[] = [{}, { search: 'zebra' }, { search: TOKEN }, { role: 'ADMIN' }, { role: 'USER' }, { active: false }, { active: true }, { search: 'zebra', active: false }, { search: '_', role: 'USER' }];
    const all = (await usersInDatabase()).length;
    for (const filter of filters) {
      const expected = await expectedIds(filter);
      const pages = await walk(3, filter);
      const ids = idsOf(pages);
      expect({ filter, ids }).toEqual({ filter, ids: expected });
      for (const current of pages) expect({ filter, totalCount: current.totalCount }).toEqual({ filter, totalCount: expected.length });
      if (Object.keys(filter).length > 0 && filter.active !== true && filter.role !== 'USER') expect(expected.length).toBeLessThan(all);
    }
  }, 120_000);

  it('keeps the filter across pages (a cursor from the filtered list continues the filtered list)', async () => {
    const filter: Filter = { search: 'zebra' };
    const first = await page({ first: 2, filter });
    expect(first.pageInfo.hasNextPage).toBe(true);
    const second = await page({ first: 2, after: first.pageInfo.endCursor, filter });
    expect([...first.edges, ...second.edges].map((edge) => edge.node.id)).toEqual(await expectedIds(filter));
    expect(second.pageInfo.hasNextPage).toBe(false);
  });

  it('refuses a search longer than 100 characters with BAD_USER_INPUT', async () => {
    expectBadInput(await listUsers({ first: 5, filter: { search: 'a'.repeat(101) } }), 'search');
    expectBadInput(await listUsers({ first: 5, filter: { search: 'x'.repeat(100_000) } }), 'search');
    // 100 is still fine.
    const ok = await listUsers({ first: 5, filter: { search: 'a'.repeat(100) } });
    expect(ok.errors).toBeUndefined();
    expect(ok.data?.users.totalCount).toBe(0);
  });

  it('refuses control characters in the search with BAD_USER_INPUT', async () => {
    expectBadInput(await listUsers({ first: 5, filter: { search: 'zeb\u0000ra' } }), 'search');
  });

  it('answers an empty search like no search', async () => {
    const result = await page({ first: 1, filter: { search: '' } });
    expect(result.totalCount).toBe((await usersInDatabase()).length);
  });
});

describe('users: query plans', () => {
  it.skipIf(!process.env.DATABASE_URL)('uses the (created_at, id) index for pages and the trigram index for search', async () => {
    // The statements the server really sends, explained on a connection with sequential scans off
    // (the test tables are small enough that the planner would rightly prefer them).
    const first = await page({ first: 2 });
    const pageQueries = await queriesDuring(() => page({ first: 2, after: first.pageInfo.endCursor }));
    const searchQueries = await queriesDuring(() => page({ first: 2, filter: { search: 'zebra' } }));
    const auditQueries = await queriesDuring(() =>
      server.graphql(`query { auditEvents(first: 2, userId: "${first.edges[0].node.id}") { totalCount } }`, {}, { token: adminToken }),
    );
    const client = new pg.Client({ connectionString: server.config.databaseUrl });
    await client.connect();
    try {
      await client.query('set enable_seqscan = off');
      const plan = async (sql: string) => (await client.query(`explain ${sql}`)).rows.map((row) => row['QUERY PLAN']).join('\n');
      const paged = pageQueries.find((sql) => /from "users"/.test(sql) && /order by/i.test(sql));
      expect(await plan(paged!)).toMatch(/users_created_at_id_idx/);
      const searched = searchQueries.find((sql) => /like/i.test(sql) && /count/i.test(sql));
      expect(await plan(searched!)).toMatch(/users_search_trgm_idx/);
      const audit = auditQueries.find((sql) => /"audit_events"/.test(sql) && /order by/i.test(sql));
      expect(await plan(audit!)).toMatch(/audit_events_user_created_idx/);
    } finally {
      await client.end();
    }
  });
});

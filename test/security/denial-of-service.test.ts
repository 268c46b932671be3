import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOGIN, ME, registerAccount, type SignedInAccount } from '../support/accounts.js';
import { errorCode, errorField, type GraphQLResponse, startTestServer, type TestServer } from '../support/server.js';

// Document limits (src/graphql/limits.ts, GRAPHQL_MAX_*), page sizes and HTTP body limits. Rate
// limits are on (RATE_LIMIT_SCALE=1) so that "nothing was counted" can be observed.
const ADMIN_EMAIL = 'root@example.com';
const ADMIN_PASSWORD = 'correct horse battery staple 42';
const MAX_BODY_BYTES = 100 * 1024;
/** Generous bound for "answered at once, without doing the work". */
const FAST_MS = 3000;

let server: TestServer;
let adminToken: string;
let user: SignedInAccount;
beforeAll(async () => {
  server = await startTestServer({ RATE_LIMIT_SCALE: '1', ADMIN_EMAIL, ADMIN_PASSWORD });
  const signedIn = await server.graphql(LOGIN, { input: { identifier: ADMIN_EMAIL, password: ADMIN_PASSWORD } });
  adminToken = signedIn.data!.login.accessToken;
  user = await registerAccount(server);
});
afterAll(() => server?.stop());

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** A refusal of the whole document: HTTP 4xx, no data, BAD_USER_INPUT first, no internal error. */
function expectDocumentRefused(response: { status: number; data?: unknown; errors?: GraphQLResponse['errors'] }): void {
  expect(response.status, JSON.stringify(response.errors)).toBe(400);
  expect(response.data ?? null).toBeNull();
  expect(response.errors?.[0]?.extensions?.code, JSON.stringify(response.errors)).toBe('BAD_USER_INPUT');
  expect(response.errors!.map((error) => error.extensions?.code)).not.toContain('INTERNAL_SERVER_ERROR');
}

async function timed<T>(work: () => Promise<T>): Promise<{ result: T; ms: number }> {
  const started = performance.now();
  const result = await work();
  return { result, ms: performance.now() - started };
}

/** What a login attempt leaves behind: the account's failure count, audit events, rate-limit counters. */
async function attemptTraces(userId: string) {
  const [account] = await server.sql<{ failed_login_count: number }>('select failed_login_count from users where id = ?', [userId]);
  const [audit] = await server.sql<{ n: string }>('select count(*) as n from audit_events');
  const limits = await server.sql<{ key: string; points: number }>('select key, points from rate_limits order by key');
  return { failedLogins: Number(account.failed_login_count), auditEvents: Number(audit.n), limits };
}

/** Asserts a wrong-password login for `account` does leave traces (so their absence above means something). */
async function expectLoginLeavesTraces(account: SignedInAccount, before: Awaited<ReturnType<typeof attemptTraces>>): Promise<void> {
  const response = await server.graphql(LOGIN, { input: { identifier: account.user.email, password: 'not the password at all' } });
  expect(errorCode(response)).toBe('UNAUTHENTICATED');
  const after = await attemptTraces(account.user.id);
  expect(after.failedLogins).toBe(before.failedLogins + 1);
  expect(after.auditEvents).toBe(before.auditEvents + 1);
  expect(after.limits).not.toEqual(before.limits);
}

function aliased(howMany: number, field: string): string {
  return Array.from({ length: howMany }, (_, index) => `a${index}: ${field}`).join('\n');
}

async function expectHealthy(): Promise<void> {
  const health = await fetch(`${server.origin}/healthz`);
  expect(health.status).toBe(200);
  const response = await server.graphql(ME, {}, { token: user.accessToken });
  expect(response.errors).toBeUndefined();
  expect(response.data?.me.id).toBe(user.user.id);
}

/**
 * Streams `totalBytes` to /graphql with node:http (a `Content-Length` header when `declareLength`,
 * chunked otherwise) and resolves with the status as soon as the server answers. Write errors after
 * the server closed the connection are expected and ignored.
 */
function streamBody(totalBytes: number, declareLength: boolean): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (declareLength) headers['content-length'] = String(totalBytes);
    const req = request(`${server.origin}/graphql`, { method: 'POST', headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', () => {
      // EPIPE / ECONNRESET once the server has answered and closed: the point of the test.
    });
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    let sent = 0;
    const pump = () => {
      while (sent < totalBytes && !req.destroyed) {
        const piece = chunk.subarray(0, Math.min(chunk.length, totalBytes - sent));
        sent += piece.length;
        if (!req.write(piece)) {
          req.once('drain', pump);
          return;
        }
      }
      if (!req.destroyed) req.end();
    };
    pump();
  });
}

// ---------------------------------------------------------------------------------------------
// Depth
// ---------------------------------------------------------------------------------------------

const USERS_DEPTH_4 = '{ users { edges { node { id } } } }';

describe('query depth', () => {
  it('answers a normal admin query of depth 4 under the default depth limit of 8', async () => {
    const response = await server.graphql(USERS_DEPTH_4, {}, { token: adminToken });
    expect(response.errors, JSON.stringify(response.errors)).toBeUndefined();
    expect(response.data?.users.edges.length).toBeGreaterThan(0);
  });

  describe('with GRAPHQL_MAX_DEPTH=3', () => {
    beforeAll(() => server.restart({ GRAPHQL_MAX_DEPTH: '3' }));
    afterAll(() => server.restart({ GRAPHQL_MAX_DEPTH: '8' }));

    it('refuses the same admin query (depth 4) with BAD_USER_INPUT and HTTP 400', async () => {
      const response = await server.graphql(USERS_DEPTH_4, {}, { token: adminToken });
      expectDocumentRefused(response);
      expect(response.errors![0].message).toMatch(/depth/i);
    });

    it('refuses a document with a too-deep operation before any resolver: its login operation makes no attempt, no audit event and no rate-limit count', async () => {
      const account = await registerAccount(server);
      const before = await attemptTraces(account.user.id);
      const document = `mutation Guess($input: LoginInput!) { login(input: $input) { accessToken } }\nquery Deep ${USERS_DEPTH_4}`;
      const response = await fetch(`${server.origin}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: document, operationName: 'Guess', variables: { input: { identifier: account.user.email, password: 'not the password at all' } } }),
      });
      const body = (await response.json()) as { data?: unknown; errors?: GraphQLResponse['errors'] };
      expectDocumentRefused({ status: response.status, ...body });
      expect(await attemptTraces(account.user.id)).toEqual(before);
      await expectLoginLeavesTraces(account, before);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Aliases, cost, directives, tokens
// ---------------------------------------------------------------------------------------------

describe('aliases', () => {
  it('answers 15 aliased fields and refuses 16 with BAD_USER_INPUT', async () => {
    const fifteen = await server.graphql(`{ ${aliased(15, 'me { id }')} }`, {}, { token: user.accessToken });
    expect(fifteen.errors, JSON.stringify(fifteen.errors)).toBeUndefined();
    expect(Object.keys(fifteen.data!)).toHaveLength(15);
    const sixteen = await server.graphql(`{ ${aliased(16, 'me { id }')} }`, {}, { token: user.accessToken });
    expectDocumentRefused(sixteen);
    expect(sixteen.errors![0].message).toMatch(/alias/i);
  });

  it('refuses 16 aliased login fields before any resolver: no attempt counted, no audit event, no rate-limit count', async () => {
    const account = await registerAccount(server);
    const before = await attemptTraces(account.user.id);
    const response = await server.graphql(`mutation Guess($input: LoginInput!) { ${aliased(16, 'login(input: $input) { accessToken }')} }`, {
      input: { identifier: account.user.email, password: 'not the password at all' },
    });
    expectDocumentRefused(response);
    expect(await attemptTraces(account.user.id)).toEqual(before);
    await expectLoginLeavesTraces(account, before);
  });
});

describe('cost and repeated fields', () => {
  it('refuses users(first: 1000000) written inline by its cost estimate, before the resolver runs', async () => {
    const response = await server.graphql('{ users(first: 1000000) { edges { node { id } } } }', {}, { token: adminToken });
    expectDocumentRefused(response);
    expect(response.errors![0].message).toMatch(/cost/i);
  });

  it('refuses { me { id id … } } with 30 000 repeated fields (just under 100 KB) quickly, with BAD_USER_INPUT and no 500', async () => {
    const query = `{ me { ${'id '.repeat(30_000)}} }`;
    expect(Buffer.byteLength(JSON.stringify({ query }))).toBeLessThan(MAX_BODY_BYTES);
    const { result, ms } = await timed(() => server.graphql(query, {}, { token: user.accessToken }));
    expectDocumentRefused(result);
    expect(ms).toBeLessThan(FAST_MS);
    // Fewer repeats, below the token limit: the field-merging check gives up rather than grinding.
    const { result: smaller, ms: smallerMs } = await timed(() => server.graphql(`{ me { ${'id '.repeat(1_990)}} }`, {}, { token: user.accessToken }));
    expect(smaller.status).toBeLessThan(500);
    expect(errorCode(smaller) ?? 'answered').not.toBe('INTERNAL_SERVER_ERROR');
    expect(smallerMs).toBeLessThan(FAST_MS);
    await expectHealthy();
  });

  it('refuses a fragment bomb (nine levels of ten spreads, 10^9 fields once expanded) quickly without expanding it', async () => {
    const levels = Array.from({ length: 9 }, (_, index) => `fragment F${index + 1} on Query { ${`...F${index} `.repeat(10)}}`);
    const query = `{ ...F9 }\nfragment F0 on Query { me { id } }\n${levels.join('\n')}`;
    const { result, ms } = await timed(() => server.graphql(query, {}, { token: user.accessToken }));
    expectDocumentRefused(result);
    expect(ms).toBeLessThan(FAST_MS);
    await expectHealthy();
  });

  it('refuses fragments that spread each other in a cycle with BAD_USER_INPUT', async () => {
    const response = await server.graphql('{ me { ...A } }\nfragment A on User { id ...B }\nfragment B on User { email ...A }', {}, { token: user.accessToken });
    expectDocumentRefused(response);
  });

  it('does not refuse the largest legitimate page: 100 users with every field and first: 100 written inline stays within the cost limit', async () => {
    // The contract caps `first` at 100, so this is the biggest page a client can ask for.
    const everyField = 'id email username firstName lastName role active emailVerified createdAt updatedAt lastLoginAt';
    const response = await server.graphql(
      `{ users(first: 100) { totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { cursor node { ${everyField} } } } }`,
      {},
      { token: adminToken },
    );
    expect(response.errors, JSON.stringify(response.errors)).toBeUndefined();
    expect(response.data?.users.edges.length).toBeGreaterThan(0);
  });
});

describe('directives', () => {
  it('answers 50 directives and refuses 51 with BAD_USER_INPUT', async () => {
    const withDirectives = (howMany: number) => `{ me { ${'id @include(if: true) '.repeat(howMany)}} }`;
    const fifty = await server.graphql(withDirectives(50), {}, { token: user.accessToken });
    expect(fifty.errors, JSON.stringify(fifty.errors)).toBeUndefined();
    expect(fifty.data?.me.id).toBe(user.user.id);
    const fiftyOne = await server.graphql(withDirectives(51), {}, { token: user.accessToken });
    expectDocumentRefused(fiftyOne);
    expect(fiftyOne.errors![0].message).toMatch(/directive/i);
  });
});

describe('tokens', () => {
  /** 2 + 9 × `howMany` + 6 tokens: `{ me { …Fi … } }` plus `howMany` one-field fragments. */
  const manyFragments = (howMany: number) => {
    const indexes = Array.from({ length: howMany }, (_, index) => index);
    return `{ me { ${indexes.map((index) => `...F${index}`).join(' ')} } }\n${indexes.map((index) => `fragment F${index} on User { id }`).join('\n')}`;
  };

  it('answers a valid document of about 1 800 tokens and refuses one of more than 2 000 with BAD_USER_INPUT at parse time', async () => {
    const within = await server.graphql(manyFragments(200), {}, { token: user.accessToken });
    expect(within.errors, JSON.stringify(within.errors)).toBeUndefined();
    expect(within.data?.me.id).toBe(user.user.id);
    const beyond = await server.graphql(manyFragments(230), {}, { token: user.accessToken });
    expectDocumentRefused(beyond);
    expect(beyond.errors![0].message).toMatch(/tokens/i);
  });
});

// ---------------------------------------------------------------------------------------------
// Page sizes
// ---------------------------------------------------------------------------------------------

describe('page size of users', () => {
  const USERS = 'query Users($first: Int) { users(first: $first) { totalCount pageInfo { hasNextPage } edges { node { id } } } }';
  beforeAll(async () => {
    // More users than one page may hold, written directly (hashing 120 passwords would be slow).
    await server.sql(
      `insert into users (id, created_at, email, username, password_hash, updated_at)
       select gen_random_uuid(), now() - make_interval(secs => n), 'bulk-' || n || '@example.com', 'bulk_' || n, 'not-a-hash', now()
         from generate_series(1, 120) as n`,
    );
  });

  it('caps first at 100: first = 1 000 000 passed as a variable returns 100 users and says there are more', async () => {
    const response = await server.graphql(USERS, { first: 1_000_000 }, { token: adminToken });
    expect(response.errors, JSON.stringify(response.errors)).toBeUndefined();
    expect(response.data?.users.totalCount).toBeGreaterThan(100);
    expect(response.data?.users.edges).toHaveLength(100);
    expect(response.data?.users.pageInfo.hasNextPage).toBe(true);
  });

  it('refuses first = -1 with BAD_USER_INPUT on first, and first beyond a 32-bit Int with BAD_USER_INPUT', async () => {
    const negative = await server.graphql(USERS, { first: -1 }, { token: adminToken });
    expect(errorCode(negative)).toBe('BAD_USER_INPUT');
    expect(errorField(negative)).toBe('first');
    expect(negative.data?.users ?? null).toBeNull();
    const huge = await server.graphql(USERS, { first: 2 ** 31 }, { token: adminToken });
    expectDocumentRefused(huge);
  });
});

// ---------------------------------------------------------------------------------------------
// HTTP bodies and batching
// ---------------------------------------------------------------------------------------------

describe('request bodies', () => {
  it('reads a body of exactly 100 KB and answers 413 to one of 100 KB + 1 byte', async () => {
    const query = JSON.stringify({ query: '{ __typename }' });
    const exactly = `${query}${' '.repeat(MAX_BODY_BYTES - Buffer.byteLength(query))}`;
    expect(Buffer.byteLength(exactly)).toBe(MAX_BODY_BYTES);
    const read = await server.postJson(exactly);
    expect(read.status).toBe(200);
    expect(read.json?.data).toEqual({ __typename: 'Query' });

    const tooBig = await server.postJson(`${exactly} `);
    expect(tooBig.status).toBe(413);
    expect(tooBig.json?.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
  });

  it('answers 413 at once to a 10 MB body announced by Content-Length, and stays healthy', async () => {
    const { result, ms } = await timed(() => streamBody(10 * 1024 * 1024, true));
    expect(result.status).toBe(413);
    expect(JSON.parse(result.body).errors[0].extensions.code).toBe('BAD_USER_INPUT');
    expect(ms).toBeLessThan(FAST_MS);
    await expectHealthy();
  });

  it('cuts off a 10 MB chunked body (no Content-Length) with 413 once it passes 100 KB, and stays healthy', async () => {
    const { result, ms } = await timed(() => streamBody(10 * 1024 * 1024, false));
    expect(result.status).toBe(413);
    expect(ms).toBeLessThan(FAST_MS);
    await expectHealthy();
  });

  it('refuses variables nested 40 000 levels deep with BAD_USER_INPUT, without a 500 and without running the login', async () => {
    const account = await registerAccount(server);
    const before = await attemptTraces(account.user.id);
    const deep = `${'['.repeat(40_000)}${']'.repeat(40_000)}`;
    const response = await server.postJson(`{"query": ${JSON.stringify(LOGIN)}, "variables": {"input": {"identifier": ${deep}, "password": "not the password at all"}}}`);
    expect(response.status).toBe(400);
    expect(response.json?.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(await attemptTraces(account.user.id)).toEqual(before);
    await expectHealthy();
  });
});

describe('batching', () => {
  it('refuses a JSON array of 100 login operations as a whole: none of them runs', async () => {
    const account = await registerAccount(server);
    const before = await attemptTraces(account.user.id);
    const operation = { query: LOGIN, variables: { input: { identifier: account.user.email, password: `not the password ${randomBytes(2).toString('hex')}` } } };
    const response = await server.postJson(JSON.stringify(Array.from({ length: 100 }, () => operation)));
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.status).toBeLessThan(500);
    expect(Array.isArray(response.json)).toBe(false);
    expect(response.json?.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(await attemptTraces(account.user.id)).toEqual(before);
  });
});

// ---------------------------------------------------------------------------------------------
// Introspection (last: the server is restarted in production mode)
// ---------------------------------------------------------------------------------------------

describe('introspection', () => {
  const SCHEMA = '{ __schema { queryType { name } types { name } } }';
  const TYPE = '{ __type(name: "User") { name fields { name } } }';

  it('is answered outside production (control)', async () => {
    const response = await server.graphql(SCHEMA);
    expect(response.errors).toBeUndefined();
    expect(response.data?.__schema.queryType.name).toBe('Query');
  });

  describe('in production', () => {
    beforeAll(() => server.restart({ NODE_ENV: 'production', JWT_SECRET: randomBytes(32).toString('base64url') }));

    it('refuses __schema and __type queries with BAD_USER_INPUT, and still answers __typename', async () => {
      for (const query of [SCHEMA, TYPE]) {
        const response = await server.graphql(query);
        expectDocumentRefused(response);
        expect(JSON.stringify(response)).not.toContain('"fields"');
      }
      const typename = await server.graphql('{ __typename }');
      expect(typename.data).toEqual({ __typename: 'Query' });
    });
  });
});

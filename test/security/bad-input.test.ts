import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { LOGIN, ME, REFRESH, REGISTER, newAccountInput, registerAccount } from '../support/accounts.js';
import { type GraphQLResponse, startTestServer, type TestServer } from '../support/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.stop());

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** The closed set of `extensions.code` values (CONTRACT.md "Errors"). */
const CONTRACT_CODES = ['UNAUTHENTICATED', 'FORBIDDEN', 'BAD_USER_INPUT', 'CONFLICT', 'NOT_FOUND', 'RATE_LIMITED', 'INTERNAL_SERVER_ERROR'];

type ErrorList = GraphQLResponse['errors'];

/**
 * Every error has a code from the contract's closed set and no stack trace; the list is non-empty.
 * Used on every error response this file sees.
 */
function expectContractErrors(errors: ErrorList): asserts errors is NonNullable<ErrorList> {
  expect(Array.isArray(errors), `expected an errors array, got ${JSON.stringify(errors)}`).toBe(true);
  expect(errors!.length).toBeGreaterThan(0);
  for (const error of errors!) {
    expect(typeof error.message).toBe('string');
    expect(CONTRACT_CODES, `code of ${JSON.stringify(error)}`).toContain(error.extensions?.code);
    expect(error.extensions ?? {}, `stacktrace in ${JSON.stringify(error)}`).not.toHaveProperty('stacktrace');
    expect(error.extensions ?? {}).not.toHaveProperty('exception');
  }
}

/**
 * A refused operation: not a 5xx, no data, contract-shaped errors, the first one with `code`
 * (and `extensions.field === field` when given).
 */
function expectRefused(response: Pick<GraphQLResponse, 'status' | 'data' | 'errors'>, code: string, field?: string): void {
  expect(response.status, JSON.stringify(response.errors)).toBeLessThan(500);
  expectContractErrors(response.errors);
  expect(response.data ?? null).toBeNull();
  const [first] = response.errors;
  expect(first.extensions?.code, JSON.stringify(response.errors)).toBe(code);
  expect(response.errors.map((error) => error.extensions?.code)).not.toContain('INTERNAL_SERVER_ERROR');
  if (field !== undefined) expect(first.extensions?.field, JSON.stringify(first)).toBe(field);
}

/** Postgres cannot compare text with NUL in it; the lookups below use the value without NULs. */
const withoutNul = (value: string) => value.replace(/\0/g, '');

async function countRows(sql: string, params: unknown[] = []): Promise<number> {
  const rows = await server.sql<{ n: number }>(sql, params);
  return Number(rows[0].n);
}

/** Accounts whose email or username matches either value, ignoring case. */
function accountsMatching(email: string, username: string): Promise<number> {
  return countRows('select count(*)::int as n from users where lower(email) = lower(?) or lower(username) = lower(?)', [
    withoutNul(email.trim()),
    withoutNul(username.trim()),
  ]);
}

async function tableSizes(): Promise<{ users: number; sessions: number }> {
  return {
    users: await countRows('select count(*)::int as n from users'),
    sessions: await countRows('select count(*)::int as n from sessions'),
  };
}

/**
 * Sends `register` with `overrides` on top of a fresh valid input and checks that it is refused
 * with BAD_USER_INPUT naming `field`, and that no row at all was written.
 */
async function expectRegisterRefused(overrides: Record<string, unknown>, field: string): Promise<void> {
  const input = newAccountInput(overrides);
  const before = await tableSizes();
  const response = await server.graphql(REGISTER, { input });
  expectRefused(response, 'BAD_USER_INPUT', field);
  expect(await accountsMatching(String(input.email), String(input.username))).toBe(0);
  expect(await tableSizes()).toEqual(before);
}

/** Registers with `overrides` and expects success; returns the input used and the payload. */
async function expectRegisterAccepted(overrides: Record<string, unknown>) {
  const input = newAccountInput(overrides);
  const response = await server.graphql(
    `mutation Register($input: RegisterInput!) { register(input: $input) { accessToken refreshToken user { id email username firstName lastName role } } }`,
    { input },
  );
  expect(response.errors, JSON.stringify(response.errors)).toBeUndefined();
  expect(response.status).toBe(200);
  expect(response.data?.register.user).toMatchObject({ email: String(input.email).toLowerCase(), username: input.username, role: 'USER' });
  return { input, payload: response.data!.register };
}

// ---------------------------------------------------------------------------------------------
// register: field validation
// ---------------------------------------------------------------------------------------------

describe('register refuses invalid emails with BAD_USER_INPUT on "email" and writes nothing', () => {
  const tooLong = `${'a'.repeat(64)}@${['b'.repeat(63), 'c'.repeat(63), 'd'.repeat(63)].join('.')}.com`;
  test.each([
    ['an empty email', ''],
    ['an email of only spaces', '   '],
    ['an email without an at sign', 'no-at-sign'],
    ['an email without a top-level domain', 'a@b'],
    ['an email with two at signs', 'a@@b.com'],
    ['an email with a space in it', 'a b@c.com'],
    ['an email carrying a CRLF header injection', 'a@b.com\r\nBcc: x@y.com'],
    ['an email with a NUL byte', 'a\u0000@b.com'],
    ['an email with full-width letters', '\uff41@example.com'],
    ['an email with a dotless i', '\u0131lker@example.com'],
    ['an email with a Cyrillic look-alike letter', '\u0430dmin@example.com'],
    [`an email longer than 254 characters (${tooLong.length})`, tooLong],
  ])('%s', async (_name, email) => {
    await expectRegisterRefused({ email }, 'email');
  });
});

describe('register refuses invalid usernames with BAD_USER_INPUT on "username" and writes nothing', () => {
  test.each([
    ['a username of 2 characters', 'ab'],
    ['a username of 33 characters', 'a'.repeat(33)],
    ['a username with a space', 'has space'],
    ['a username with an at sign', 'with@at'],
    ['a username with non-ASCII letters', '\u00fcn\u00efcode'],
    ['a username starting with a hyphen', '-leading'],
    ['a username with a NUL byte', 'nul\u0000byte'],
  ])('%s', async (_name, username) => {
    await expectRegisterRefused({ username }, 'username');
  });
});

describe('register checks password length and characters', () => {
  test.each([
    ['a password of 11 characters', 'x'.repeat(11)],
    ['a password of 257 characters', 'x'.repeat(257)],
    ['a password containing a NUL byte', 'a long pass\u0000phrase here'],
  ])('refuses %s with BAD_USER_INPUT on "password" and writes nothing', async (_name, password) => {
    await expectRegisterRefused({ password }, 'password');
  });

  test.each([
    ['exactly 12 characters', 12],
    ['exactly 256 characters', 256],
  ])('accepts a password of %s, and it signs in', async (_name, length) => {
    const password = randomBytes(length).toString('hex').slice(0, length);
    expect(password).toHaveLength(length);
    const { input } = await expectRegisterAccepted({ password });
    const login = await server.graphql(LOGIN, { input: { identifier: input.email, password } });
    expect(login.errors, JSON.stringify(login.errors)).toBeUndefined();
    expect(login.data?.login.user.email).toBe(input.email);
  });

  test('a 256-character password is not truncated: changing only its last character does not sign in', async () => {
    const password = randomBytes(128).toString('hex');
    const { input } = await expectRegisterAccepted({ password });
    const almost = `${password.slice(0, -1)}${password.endsWith('0') ? '1' : '0'}`;
    const login = await server.graphql(LOGIN, { input: { identifier: input.email, password: almost } });
    expect(login.data?.login ?? null, 'signed in with a password that differs from the registered one after byte 72').toBeNull();
    expectRefused(login, 'UNAUTHENTICATED');
  });
});

describe('register checks firstName and lastName', () => {
  test.each([
    ['firstName', 'longer than 100 characters', 'n'.repeat(101)],
    ['lastName', 'longer than 100 characters', 'n'.repeat(101)],
    ['firstName', 'containing a NUL byte', 'Ada\u0000'],
    ['lastName', 'containing a NUL byte', 'Love\u0000lace'],
    ['firstName', 'containing a bell character', 'Ada\u0007'],
    ['lastName', 'containing a line feed', 'Love\nlace'],
    ['lastName', 'containing an escape character', 'Love\u001b[31mlace'],
  ])('refuses a %s %s with BAD_USER_INPUT on that field and writes nothing', async (field, _name, value) => {
    await expectRegisterRefused({ [field]: value }, field);
  });

  test('accepts an empty-string firstName and stores it as null', async () => {
    const { payload } = await expectRegisterAccepted({ firstName: '', lastName: 'Lovelace' });
    expect(payload.user.firstName).toBeNull();
    expect(payload.user.lastName).toBe('Lovelace');
    const rows = await server.app.orm.em
      .fork()
      .getConnection()
      .execute<Array<{ first_name: string | null }>>('select first_name from users where id = ?', [payload.user.id]);
    expect(rows).toHaveLength(1);
    expect(rows[0].first_name).toBeNull();
  });
});

// ---------------------------------------------------------------------------------------------
// register: variables and documents that do not fit the schema
// ---------------------------------------------------------------------------------------------

describe('register refuses input of the wrong shape with HTTP 400 and BAD_USER_INPUT', () => {
  test.each([
    ['an email given as a number', (input: Record<string, unknown>) => ({ ...input, email: 12345 })],
    ['an input without the required password', ({ password: _password, ...input }: Record<string, unknown>) => input],
    ['an input with an unknown isAdmin field', (input: Record<string, unknown>) => ({ ...input, isAdmin: true })],
  ])('%s', async (_name, change) => {
    const base = newAccountInput();
    const input = change(base);
    const before = await tableSizes();
    const response = await server.graphql(REGISTER, { input });
    expect(response.status).toBe(400);
    expectRefused(response, 'BAD_USER_INPUT');
    expect(await accountsMatching(base.email, base.username)).toBe(0);
    expect(await tableSizes()).toEqual(before);
  });

  test('a role: "ADMIN" field in the input variables is refused and creates no ADMIN', async () => {
    const input = { ...newAccountInput(), role: 'ADMIN' };
    const before = await tableSizes();
    const response = await server.graphql(REGISTER, { input });
    expect(response.status).toBe(400);
    expectRefused(response, 'BAD_USER_INPUT');
    expect(await accountsMatching(input.email, input.username)).toBe(0);
    expect(await countRows(`select count(*)::int as n from users where role = 'ADMIN'`)).toBe(0);
    expect(await tableSizes()).toEqual(before);
  });

  test('a role: ADMIN field written inline in the document is refused and creates no ADMIN', async () => {
    const input = newAccountInput();
    const before = await tableSizes();
    const response = await server.graphql(
      `mutation { register(input: { email: "${input.email}", username: "${input.username}", password: "${input.password}", role: ADMIN }) { accessToken } }`,
    );
    expect(response.status).toBe(400);
    expectRefused(response, 'BAD_USER_INPUT');
    expect(await accountsMatching(input.email, input.username)).toBe(0);
    expect(await countRows(`select count(*)::int as n from users where role = 'ADMIN'`)).toBe(0);
    expect(await tableSizes()).toEqual(before);
  });
});

describe('documents that are not valid GraphQL', () => {
  test('a query with a syntax error is BAD_USER_INPUT', async () => {
    const response = await server.graphql('mutation { register(input: { ) }');
    expect(response.status).toBe(400);
    expectRefused(response, 'BAD_USER_INPUT');
  });

  test('a query for a field that does not exist is BAD_USER_INPUT', async () => {
    const response = await server.graphql('{ me { id passwordHash } }');
    expect(response.status).toBe(400);
    expectRefused(response, 'BAD_USER_INPUT');
  });
});

// ---------------------------------------------------------------------------------------------
// HTTP transport
// ---------------------------------------------------------------------------------------------

describe('HTTP requests the GraphQL endpoint refuses', () => {
  test('a body that is not JSON is answered 400 with a JSON BAD_USER_INPUT error', async () => {
    const response = await server.raw('/graphql', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query": "{ me { id } }"' });
    expect(response.status).toBe(400);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expectRefused({ status: response.status, data: response.json?.data, errors: response.json?.errors }, 'BAD_USER_INPUT');
  });

  test('a body larger than 100 KB is answered 413', async () => {
    const input = newAccountInput({ firstName: 'x'.repeat(101 * 1024) });
    const before = await tableSizes();
    const response = await server.raw('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: REGISTER, variables: { input } }),
    });
    expect(response.status).toBe(413);
    expectContractErrors(response.json?.errors);
    expect(await tableSizes()).toEqual(before);
  });

  test('a JSON array of two operations (batching) is refused, without data and without a 500', async () => {
    const response = await server.raw('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify([{ query: '{ __typename }' }, { query: '{ __typename }' }]),
    });
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.status).toBeLessThan(500);
    expect(Array.isArray(response.json)).toBe(false);
    expectRefused({ status: response.status, data: response.json?.data, errors: response.json?.errors }, 'BAD_USER_INPUT');
  });

  test('a mutation sent over GET is refused and not executed', async () => {
    const account = await registerAccount(server);
    const response = await server.raw(`/graphql?query=${encodeURIComponent('mutation{logout}')}`, {
      method: 'GET',
      headers: { 'apollo-require-preflight': 'true', authorization: `Bearer ${account.accessToken}` },
    });
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.status).toBeLessThan(500);
    expectRefused({ status: response.status, data: response.json?.data, errors: response.json?.errors }, 'BAD_USER_INPUT');
    // logout did not run: the access token still works.
    const me = await server.graphql(ME, {}, { token: account.accessToken });
    expect(me.errors, JSON.stringify(me.errors)).toBeUndefined();
    expect(me.data?.me.id).toBe(account.user.id);
  });

  test('a POST with content-type text/plain (a CSRF "simple request") is refused with 400 and not executed', async () => {
    const input = newAccountInput();
    const before = await tableSizes();
    const response = await server.raw('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: JSON.stringify({ query: REGISTER, variables: { input } }),
    });
    expect(response.status).toBe(400);
    expectRefused({ status: response.status, data: response.json?.data, errors: response.json?.errors }, 'BAD_USER_INPUT');
    expect(response.json.errors[0].message).toMatch(/CSRF|Cross-Site Request Forgery/i);
    expect(await accountsMatching(input.email, input.username)).toBe(0);
    expect(await tableSizes()).toEqual(before);
  });
});

// ---------------------------------------------------------------------------------------------
// login and refreshToken with hostile input
// ---------------------------------------------------------------------------------------------

describe('login with hostile input', () => {
  test.each([
    ['an identifier of 10 000 characters', { identifier: 'i'.repeat(10_000), password: 'a long passphrase 1' }],
    ['an email-shaped identifier of 10 000 characters', { identifier: `${'i'.repeat(10_000)}@example.com`, password: 'a long passphrase 1' }],
    ['a password of 10 000 characters', { identifier: 'someone@example.com', password: 'p'.repeat(10_000) }],
  ])('%s is refused with UNAUTHENTICATED or BAD_USER_INPUT, never 500', async (_name, input) => {
    const response = await server.graphql(LOGIN, { input });
    expect(response.status).toBeLessThan(500);
    expectContractErrors(response.errors);
    expect(response.data ?? null).toBeNull();
    expect(['UNAUTHENTICATED', 'BAD_USER_INPUT']).toContain(response.errors[0].extensions?.code);
  });

  test('a password of 10 000 characters for an existing account does not sign in', async () => {
    const account = await registerAccount(server);
    const response = await server.graphql(LOGIN, { input: { identifier: account.user.email, password: 'p'.repeat(10_000) } });
    expect(response.status).toBeLessThan(500);
    expectContractErrors(response.errors);
    expect(response.data ?? null).toBeNull();
    expect(['UNAUTHENTICATED', 'BAD_USER_INPUT']).toContain(response.errors[0].extensions?.code);
  });

  test('identifier: null is BAD_USER_INPUT', async () => {
    const response = await server.graphql(LOGIN, { input: { identifier: null, password: 'a long passphrase 1' } });
    expect(response.status).toBe(400);
    expectRefused(response, 'BAD_USER_INPUT');
  });

  test('a username identifier with a NUL byte is BAD_USER_INPUT on identifier, not 500', async () => {
    const response = await server.graphql(LOGIN, { input: { identifier: 'nul\u0000user', password: 'a long passphrase 1' } });
    expectRefused(response, 'BAD_USER_INPUT', 'identifier');
  });

  test('an email identifier with a NUL byte is BAD_USER_INPUT on identifier, not 500', async () => {
    const response = await server.graphql(LOGIN, { input: { identifier: 'nul\u0000@example.com', password: 'a long passphrase 1' } });
    expectRefused(response, 'BAD_USER_INPUT', 'identifier');
  });
});

describe('refreshToken with hostile input is refused, not 500', () => {
  test.each([
    ['an empty refresh token', ''],
    ['a refresh token of 10 000 characters', 'r'.repeat(10_000)],
  ])('%s', async (_name, refreshToken) => {
    const response = await server.graphql(REFRESH, { refreshToken });
    expectRefused(response, 'UNAUTHENTICATED');
  });

  test('a refresh token with a NUL byte is BAD_USER_INPUT on refreshToken, not 500', async () => {
    const response = await server.graphql(REFRESH, { refreshToken: 'abc\u0000def' });
    expectRefused(response, 'BAD_USER_INPUT', 'refreshToken');
  });
});

// ---------------------------------------------------------------------------------------------
// Plain HTTP routes
// ---------------------------------------------------------------------------------------------

describe('plain HTTP routes', () => {
  test('GET /healthz is 200', async () => {
    const response = await server.raw('/healthz');
    expect(response.status).toBe(200);
  });

  test('GET /readyz is 200 while the database answers', async () => {
    const response = await server.raw('/readyz');
    expect(response.status).toBe(200);
  });

  test('an unknown path is 404', async () => {
    const response = await server.raw('/no-such-path');
    expect(response.status).toBe(404);
  });
});

test('the contract-error helper itself rejects foreign codes, stack traces and empty lists', () => {
  expect(() => expectContractErrors([{ message: 'x', extensions: { code: 'GRAPHQL_PARSE_FAILED' } }])).toThrow();
  expect(() => expectContractErrors([{ message: 'x', extensions: { code: 'BAD_USER_INPUT', stacktrace: ['at x'] } }])).toThrow();
  expect(() => expectContractErrors([])).toThrow();
  expect(() => expectContractErrors([{ message: 'x', extensions: { code: 'CONFLICT', field: 'email' } }])).not.toThrow();
});

describe('X-Forwarded-For from a trusted proxy hop', () => {
  let proxied: TestServer;
  beforeAll(async () => {
    proxied = await startTestServer({ TRUST_PROXY: '1' });
  });
  afterAll(() => proxied?.stop());

  test('is believed only when it is an IP address: junk is neither stored nor a 500', async () => {
    const account = await registerAccount(proxied);
    const junk = ['x'.repeat(100), '<script>alert(1)</script>', '999.1.1.1', '1.2.3.4:99999', 'unknown', `fe80::1%${'a'.repeat(200)}`];
    for (const entry of junk) {
      const response = await proxied.graphql(LOGIN, { input: { identifier: account.user.email, password: 'not the password at all' } }, { headers: { 'x-forwarded-for': entry } });
      // The sixth wrong password meets the account's backoff: either way, the client's mistake.
      expect(['UNAUTHENTICATED', 'RATE_LIMITED'], entry).toContain(response.errors?.[0].extensions?.code);
    }
    for (const [entry, stored] of [['203.0.113.7', '203.0.113.7'], ['203.0.113.8:4711', '203.0.113.8'], ['[2001:db8::1]:4711', '2001:db8::1']]) {
      await proxied.graphql(LOGIN, { input: { identifier: account.user.email, password: 'not the password at all' } }, { headers: { 'x-forwarded-for': `10.0.0.1, ${entry}` } });
      const [row] = await proxied.sql<{ ip: string }>("select ip from audit_events where user_id = ? and type = 'LOGIN_FAILED' order by created_at desc limit 1", [account.user.id]);
      expect(row.ip).toBe(stored);
    }
    const ips = await proxied.sql<{ ip: string }>("select distinct ip from audit_events where user_id = ? and type = 'LOGIN_FAILED'", [account.user.id]);
    expect(ips.map((row) => row.ip).sort()).toEqual(['127.0.0.1', '2001:db8::1', '203.0.113.7', '203.0.113.8']);
  });
});

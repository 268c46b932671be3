import { randomUUID } from 'node:crypto';
import { GraphQLError } from 'graphql';
import { decodeJwt, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createErrorFormatter, INVALID_OPERATION } from '../../src/graphql/errors.js';
import { LOGIN, registerAccount, type SignedInAccount, START_UP_ADMIN } from '../support/accounts.js';
import { type RawResponse, startTestServer, type TestServer } from '../support/server.js';

// Production answers teach nothing about the schema (OWASP GraphQL Cheat Sheet, "Introspection +
// GraphQL Schema Leakage"; ASVS V14.3.2): no suggestions, no echoed values, no product name, and
// a field the caller may not use answers exactly like one that does not exist, as a clairvoyance-
// style probe sees it. Plus the document limits that guard the parser and validators.
const { ADMIN_EMAIL, ADMIN_PASSWORD } = START_UP_ADMIN;

let server: TestServer;
let user: SignedInAccount;
let adminToken: string;
beforeAll(async () => {
  server = await startTestServer({ NODE_ENV: 'production', JWT_SECRET: 'p'.repeat(48), ADMIN_EMAIL, ADMIN_PASSWORD });
  user = await registerAccount(server);
  const admin = await server.graphql(LOGIN, { input: { identifier: ADMIN_EMAIL, password: ADMIN_PASSWORD } });
  adminToken = admin.data!.login.accessToken;
});
afterAll(() => server?.stop());

/** The whole answer a client sees, but for the request id: status and body, byte for byte. */
async function answer(query: string, variables?: Record<string, unknown>, token?: string, operationName?: string): Promise<{ status: number; body: string }> {
  const response: RawResponse = await server.postJson(JSON.stringify({ query, variables, operationName }), token ? { authorization: `Bearer ${token}` } : {});
  return { status: response.status, body: response.text };
}

/** The same over GET (with the header that passes CSRF prevention), and the `Allow` header a 405 would carry. */
async function answerOverGet(query: string, token?: string): Promise<{ status: number; allow: string | null; body: string }> {
  const headers: Record<string, string> = { 'x-requested-with': 'fetch', ...(token ? { authorization: `Bearer ${token}` } : {}) };
  const response = await server.raw(`/graphql?query=${encodeURIComponent(query)}`, { headers });
  return { status: response.status, allow: response.headers.get('allow'), body: response.text };
}

/** A genuine token of the same account and device session as `accessToken`, expired a minute ago. */
function craftExpired(accessToken: string): Promise<string> {
  const { sub, sid } = decodeJwt(accessToken);
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ sid, jti: randomUUID() })
    .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt' })
    .setSubject(sub!)
    .setIssuer(server.config.appUrl)
    .setAudience(server.config.appUrl)
    .setIssuedAt(now - 3600)
    .setExpirationTime(now - 60)
    .sign(new TextEncoder().encode(server.config.jwtSecret));
}

/** Pairs of documents alike but for one name: a real field the caller may not use, and a made-up one. */
const PROBES: Array<[string, string, string]> = [
  ['Query.users', '{ users(first: 1) { totalCount } }', '{ userz(first: 1) { totalCount } }'],
  ['Query.auditEvents', '{ auditEvents { totalCount } }', '{ auditEventz { totalCount } }'],
  ['Query.auditEvents without a selection', '{ auditEvents }', '{ auditEventz }'],
  ['an argument of Query.users', '{ users(first: 1) { totalCount } }', '{ users(firstt: 1) { totalCount } }'],
  ['Mutation.createUser', 'mutation { createUser(input: { email: "a@b.cd", username: "abc", password: "x" }) { id } }', 'mutation { createUzer(input: { email: "a@b.cd", username: "abc", password: "x" }) { id } }'],
  ['Mutation.deleteUser', 'mutation { deleteUser(id: "x") }', 'mutation { deleteUzer(id: "x") }'],
  ['Mutation.updateUser without arguments', 'mutation { updateUser { id } }', 'mutation { updateUzer { id } }'],
  ['Query.users through a fragment', '{ ...F } fragment F on Query { users { totalCount } }', '{ ...F } fragment F on Query { userz { totalCount } }'],
  ['a field of User', '{ me { idd } }', '{ me { ide } }'],
  ['an input type', 'query Q($f: UserFilter) { __typename }', 'query Q($f: UserFiltre) { __typename }'],
  ['an enum value', '{ users(filter: { role: ADMIN }) { totalCount } }', '{ users(filter: { role: ADMN }) { totalCount } }'],
];

describe('a clairvoyance-style probe in production', () => {
  for (const [caller, token] of [
    ['without a token', () => undefined],
    ['as a USER', () => user.accessToken],
  ] as const) {
    it.each(PROBES)(`${caller}: %s gets the same answer as a name that does not exist`, async (_name, real, madeUp) => {
      const [a, b] = [await answer(real, undefined, token()), await answer(madeUp, undefined, token())];
      expect(a).toEqual(b);
      expect(a.status).toBe(400);
      expect(JSON.parse(a.body)).toEqual({ errors: [{ message: INVALID_OPERATION, extensions: { code: 'BAD_USER_INPUT' } }] });
    });
  }

  // Validation covers every operation in a document, not only the one that runs: an admin-only
  // operation sent next to a harmless one must not pass validation for real names and fail it for
  // made-up ones while the harmless one is selected (or none is).
  const MULTI_OPERATION_PROBES: Array<[string, string, string, string | undefined]> = [
    ['an enum value in an admin-only query not selected', 'query A { users(filter: { role: ADMIN }) { totalCount } } query B { __typename }', 'query A { users(filter: { role: ADMINZ }) { totalCount } } query B { __typename }', 'B'],
    ['an input type in an admin-only mutation not selected', 'mutation A($i: CreateUserInput!) { createUser(input: $i) { id } } query B { __typename }', 'mutation A($i: CreateUserInputz!) { createUser(input: $i) { id } } query B { __typename }', 'B'],
    ['a field of an admin-only type in a query not selected', 'query A { auditEvents { edges { node { type actorId ip } } } } query B { __typename }', 'query A { auditEvents { edges { node { type actorIdz ip } } } } query B { __typename }', 'B'],
    ['an admin-only field in a fragment of a query not selected', 'query A { ...F } query B { __typename } fragment F on Query { users(filter: { role: ADMIN }) { totalCount } }', 'query A { ...F } query B { __typename } fragment F on Query { users(filter: { role: ADMINZ }) { totalCount } }', 'B'],
    ['an admin-only field in a document with no operation selected', 'query A { users { totalCount } } query B { __typename }', 'query A { userz { totalCount } } query B { __typename }', undefined],
  ];

  // Apollo refuses introspection by a validation rule: next to a real name it is the only error,
  // next to a made-up one it is one of two, unless every validation failure is one answer.
  const hundredUnknown = Array.from({ length: 99 }, (_, index) => `z${index}`).join(' ');
  const INTROSPECTION_PROBES: Array<[string, string, string]> = [
    ['an admin-only field next to __type', '{ __type(name: "X") { name } users { totalCount } }', '{ __type(name: "X") { name } userz { totalCount } }'],
    ['an enum value next to __type', '{ __type(name: "X") { name } users(filter: { role: ADMIN }) { totalCount } }', '{ __type(name: "X") { name } users(filter: { role: ADMINZ }) { totalCount } }'],
    ['an admin-only field in a fragment next to __schema', '{ __schema { queryType { name } } ...F } fragment F on Query { auditEvents { totalCount } }', '{ __schema { queryType { name } } ...F } fragment F on Query { auditEventz { totalCount } }'],
    ['an admin-only field next to __type, beyond the 100-error cap of validation', `{ ${hundredUnknown} users { totalCount } __type(name: "X") { name } }`, `{ ${hundredUnknown} userz { totalCount } __type(name: "X") { name } }`],
  ];

  for (const [caller, token] of [
    ['without a token', () => undefined],
    ['as a USER', () => user.accessToken],
  ] as const) {
    it.each(MULTI_OPERATION_PROBES)(`${caller}: %s gets the same answer as a name that does not exist`, async (_name, real, madeUp, operationName) => {
      const [a, b] = [await answer(real, undefined, token(), operationName), await answer(madeUp, undefined, token(), operationName)];
      expect(a).toEqual(b);
      expect(a.status).toBe(400);
      expect(JSON.parse(a.body)).toEqual({ errors: [{ message: INVALID_OPERATION, extensions: { code: 'BAD_USER_INPUT' } }] });
    });

    it.each(INTROSPECTION_PROBES)(`${caller}: %s gets one refusal, the same as for a name that does not exist`, async (_name, real, madeUp) => {
      const [a, b] = [await answer(real, undefined, token()), await answer(madeUp, undefined, token())];
      expect(a).toEqual(b);
      expect(a.status).toBe(400);
      expect(JSON.parse(a.body)).toEqual({ errors: [{ message: 'Introspection is disabled.', extensions: { code: 'BAD_USER_INPUT' } }] });
    });

    it(`${caller}: an admin-only mutation over GET gets the same answer as a name that does not exist`, async () => {
      // Apollo refuses a mutation over GET (405) before any plugin sees the operation.
      const [a, b] = [await answerOverGet('mutation { deleteUser(id: "x") }', token()), await answerOverGet('mutation { deleteUzer(id: "x") }', token())];
      expect(a).toEqual(b);
      expect(a.status).toBe(400);
      expect(a.allow).toBeNull();
      expect(JSON.parse(a.body)).toEqual({ errors: [{ message: INVALID_OPERATION, extensions: { code: 'BAD_USER_INPUT' } }] });
    });
  }

  it('lets an admin run the harmless operation of a document that also holds an admin-only one, and refuses them a mutation over GET as usual (control)', async () => {
    const response = await answer('query A { users(filter: { role: ADMIN }) { totalCount } } query B { __typename }', undefined, adminToken, 'B');
    expect(response.status).toBe(200);
    expect(JSON.parse(response.body)).toEqual({ data: { __typename: 'Query' } });
    const overGet = await answerOverGet('mutation { deleteUser(id: "x") }', adminToken);
    expect(overGet.status).toBe(405);
    expect(overGet.allow).toBe('POST');
  });

  it('tells an admin the truth (control: the probes above are real fields)', async () => {
    const response = await answer('{ users(first: 1) { totalCount } }', undefined, adminToken);
    expect(response.status).toBe(200);
    expect(JSON.parse(response.body).data.users.totalCount).toBeGreaterThan(0);
  });

  it("tells an admin whose token expired or whose session ended why, and a user's such token nothing", async () => {
    const admin = (await server.graphql(LOGIN, { input: { identifier: ADMIN_EMAIL, password: ADMIN_PASSWORD } })).data!.login;
    const reasonOf = (response: { body: string }) => JSON.parse(response.body).errors?.[0]?.extensions;
    const expired = await craftExpired(admin.accessToken);
    expect(reasonOf(await answer('{ users(first: 1) { totalCount } }', undefined, expired))).toEqual({ code: 'UNAUTHENTICATED', reason: 'TOKEN_EXPIRED' });
    await server.graphql('mutation { logout }', {}, { token: admin.accessToken });
    expect(reasonOf(await answer('{ users(first: 1) { totalCount } }', undefined, admin.accessToken))).toEqual({ code: 'UNAUTHENTICATED', reason: 'SESSION_ENDED' });

    const other = await registerAccount(server);
    const userExpired = await craftExpired(other.accessToken);
    await server.graphql('mutation { logout }', {}, { token: other.accessToken });
    for (const token of [userExpired, other.accessToken]) {
      const [real, madeUp] = [await answer('{ users(first: 1) { totalCount } }', undefined, token), await answer('{ userz(first: 1) { totalCount } }', undefined, token)];
      expect(real).toEqual(madeUp);
      expect(real.status).toBe(400);
    }
  });

  it('gives one generic answer to 40 candidate names, real and made up, for a USER', async () => {
    const candidates = ['users', 'auditEvents', 'createUser', 'updateUser', 'deleteUser', 'admin', 'allUsers', 'roles', 'settings', 'config', 'secrets', 'tokens', 'webhook', 'debug', 'internal', 'logs', 'export', 'import', 'stats', 'metrics'];
    const answers = new Set<string>();
    for (const name of candidates) {
      answers.add(JSON.stringify(await answer(`{ ${name}(first: 1) { totalCount } }`, undefined, user.accessToken)));
      answers.add(JSON.stringify(await answer(`mutation { ${name}(id: "1") }`, undefined, user.accessToken)));
    }
    expect([...answers]).toHaveLength(1);
  });
});

describe('production error messages', () => {
  it.each([
    ['a misspelled input field in the variables', 'mutation R($input: RegisterInput!) { register(input: $input) { accessToken } }', { input: { emial: 'secret-value@example.com', username: 'u', password: 'p' } }],
    ['a value of the wrong type in the variables', 'mutation R($input: RegisterInput!) { register(input: $input) { accessToken } }', { input: { email: 424242, username: 'u', password: 'p' } }],
    ['a misspelled enum value in the variables', 'query U($r: Role) { me { id } }', { r: 'ADMN' }],
    ['an enum value written inline', '{ me { role } users(filter: { role: ADMN }) { totalCount } }', undefined],
    ['an unknown type', 'query Q($x: Strin) { me { id } }', undefined],
    ['an unknown operation name', 'query A { me { id } } query B { me { id } }', undefined],
    ['a subscription, which the API does not serve', 'subscription { me { id } }', undefined],
  ])('say nothing for %s: no suggestion, no echoed value, no type name', async (_name, query, variables) => {
    const response = await answer(query, variables as Record<string, unknown> | undefined, user.accessToken);
    expect(response.status).toBe(400);
    expect(response.body).not.toMatch(/did you mean|RegisterInput|String|Role|ADMN|emial|secret-value|424242|Strin/i);
    expect(JSON.parse(response.body).errors).toEqual([{ message: INVALID_OPERATION, extensions: { code: 'BAD_USER_INPUT' } }]);
  });

  it('refuse introspection without naming the server product or how to turn it on', async () => {
    for (const query of ['{ __schema { types { name } } }', '{ __type(name: "User") { name } }']) {
      const response = await answer(query);
      expect(response.status).toBe(400);
      expect(response.body).not.toMatch(/apollo|introspection: true/i);
      expect(JSON.parse(response.body).errors[0].message).toBe('Introspection is disabled.');
    }
  });

  it('name no server product in the transport refusals: other methods, a possible CSRF', async () => {
    for (const method of ['PUT', 'PATCH', 'DELETE']) {
      const response = await server.raw('/graphql', { method, headers: { 'content-type': 'application/json' }, body: '{"query":"{ __typename }"}' });
      expect(response.status).toBe(405);
      expect(response.headers.get('allow')).toBe('GET, POST');
      expect(response.text).not.toMatch(/apollo/i);
    }
    const forged = await server.raw('/graphql', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{"query":"{ __typename }"}' });
    expect(forged.status).toBe(400);
    expect(forged.text).not.toMatch(/apollo/i);
    // The generic preflight header lets a query through over GET (Apollo Client's own still works too).
    for (const header of ['x-requested-with', 'apollo-require-preflight']) {
      const response = await server.raw(`/graphql?query=${encodeURIComponent('{ __typename }')}`, { headers: { [header]: 'fetch' } });
      expect(response.status).toBe(200);
    }
  });

  it('keep syntax errors readable (they describe the text sent, not the schema)', async () => {
    const response = await answer('{ me { id }');
    expect(response.status).toBe(400);
    expect(JSON.parse(response.body).errors[0].message).toMatch(/^Syntax Error/);
  });
});

describe('document limits that guard the parser', () => {
  const aliases = (count: number) => `{ ${Array.from({ length: count }, (_, index) => `t${index}: __typename`).join(' ')} }`;

  it('counts __typename aliases toward the alias limit: 15 pass, 16 are refused', async () => {
    expect((await answer(aliases(15))).status).toBe(200);
    const refused = await answer(aliases(16));
    expect(refused.status).toBe(400);
    expect(JSON.parse(refused.body).data).toBeUndefined();
  });

  it.each([
    ['a list literal nested 30 000 deep', `{ users(first: ${'['.repeat(30_000)}1${']'.repeat(30_000)}) { totalCount } }`],
    ['selections nested 20 000 deep', `${'{a'.repeat(20_000)}${'}'.repeat(20_000)}`],
  ])('refuses %s as bad input before parsing, without overflowing the stack', async (_name, query) => {
    // The same over GET, nested 300 deep to fit in a URL.
    const shallower = `${'{a'.repeat(300)}${'}'.repeat(300)}`;
    for (const response of [await answer(query), await server.raw(`/graphql?query=${encodeURIComponent(shallower)}`, { headers: { 'apollo-require-preflight': 'true' } })]) {
      expect(response.status).toBe(400);
      const text = 'body' in response ? response.body : response.text;
      expect(text).not.toMatch(/call stack/i);
      expect(JSON.parse(text).errors[0].extensions.code).toBe('BAD_USER_INPUT');
    }
    expect((await answer('{ me { id } }', undefined, user.accessToken)).status).toBe(200);
  });

  it('still parses brackets inside strings and comments without counting them (control)', async () => {
    const response = await answer(`# ${'['.repeat(500)}\n{ me { id } }`, undefined, user.accessToken);
    expect(response.status).toBe(200);
  });

  it('masks a stack overflow in any stage as INTERNAL_SERVER_ERROR, never as the client\'s fault', () => {
    const format = createErrorFormatter({ hideSchema: true });
    const overflow = new RangeError('Maximum call stack size exceeded');
    const asParseError = new GraphQLError(overflow.message, { originalError: overflow, extensions: { code: 'GRAPHQL_PARSE_FAILED' } });
    expect(format({ message: asParseError.message, extensions: { code: 'GRAPHQL_PARSE_FAILED' } }, asParseError)).toEqual({
      message: 'Internal server error.',
      extensions: { code: 'INTERNAL_SERVER_ERROR' },
    });
  });
});

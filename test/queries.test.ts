import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOGIN, ME, registerAccount } from './support/accounts.js';
import { queriesDuring } from './support/database.js';
import { startTestServer, type TestServer } from './support/server.js';

const ADMIN_PASSWORD = 'quiet lantern over the fjord 7';
const USERS_PAGE = 'query Page($first: Int) { users(first: $first) { totalCount edges { cursor node { id email username role active emailVerified createdAt updatedAt lastLoginAt } } } }';

let server: TestServer;
let adminToken: string;

beforeAll(async () => {
  server = await startTestServer({ ADMIN_EMAIL: 'root@example.test', ADMIN_PASSWORD });
  for (let index = 0; index < 30; index += 1) await registerAccount(server);
  const login = await server.graphql(LOGIN, { input: { identifier: 'admin', password: ADMIN_PASSWORD } });
  adminToken = login.data!.login.accessToken;
});
afterAll(() => server?.stop());

describe('the per-request hot path', () => {
  it('answers me with exactly one query: the session and its user, joined', async () => {
    const account = await registerAccount(server);
    const queries = await queriesDuring(async () => {
      const response = await server.graphql(ME, {}, { token: account.accessToken });
      expect(response.data?.me.id).toBe(account.user.id);
    });
    expect(queries).toHaveLength(1);
    expect(queries[0]).toMatch(/join "users"/i);
  });

  it('answers an unauthenticated request without touching the database', async () => {
    expect(await queriesDuring(() => server.graphql(ME))).toEqual([]);
  });
});

describe('users(first:)', () => {
  it('issues the same small number of queries for 5 and for 100 users: no N+1', async () => {
    const small = await queriesDuring(async () => {
      const response = await server.graphql(USERS_PAGE, { first: 5 }, { token: adminToken });
      expect(response.data?.users.edges).toHaveLength(5);
    });
    const large = await queriesDuring(async () => {
      const response = await server.graphql(USERS_PAGE, { first: 100 }, { token: adminToken });
      expect(response.data?.users.edges.length).toBeGreaterThan(30);
    });
    // The viewer's session and user, the filtered count, the page.
    expect(large).toHaveLength(3);
    expect(large.length).toBe(small.length);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ME, registerAccount } from './support/accounts.js';
import { startTestServer, type TestServer } from './support/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.stop());

describe('me', () => {
  it('returns the signed-in user', async () => {
    const account = await registerAccount(server);
    const response = await server.graphql(ME, {}, { token: account.accessToken });
    expect(response.errors).toBeUndefined();
    expect(response.data?.me).toMatchObject({ id: account.user.id, email: account.user.email, role: 'USER' });
  });

  it('is UNAUTHENTICATED without a token', async () => {
    const response = await server.graphql(ME);
    expect(response.data).toBeNull();
    expect(response.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
  });
});

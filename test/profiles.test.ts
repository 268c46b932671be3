import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './support/server.js';
import { waitUntil } from './support/wait.js';

const INTROSPECTION = '{ __schema { queryType { name } } }';
const MISSPELLED = '{ mee { id } }';

async function sandboxPage(server: TestServer, headers: Record<string, string> = {}): Promise<{ status: number; contentType: string | null; body: string }> {
  const response = await fetch(`${server.origin}/graphql`, { headers: { accept: 'text/html', ...headers } });
  return { status: response.status, contentType: response.headers.get('content-type'), body: await response.text() };
}

describe('development profile', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ NODE_ENV: 'development' });
  });
  afterAll(() => server?.stop());

  it('serves Apollo Sandbox to browsers', async () => {
    const page = await sandboxPage(server);
    expect(page.status).toBe(200);
    expect(page.contentType).toMatch(/text\/html/);
    expect(page.body).toMatch(/sandbox/i);
    // A browser GET that carries a query is still held to CSRF prevention.
    const forged = await fetch(`${server.origin}/graphql?query=${encodeURIComponent('{ __typename }')}`, { headers: { accept: 'text/html' } });
    expect(forged.status).toBe(400);
  });

  it('answers introspection', async () => {
    const response = await server.graphql(INTROSPECTION);
    expect(response.data?.__schema.queryType.name).toBe('Query');
  });

  it('suggests field names in validation errors', async () => {
    const response = await server.graphql(MISSPELLED);
    expect(response.errors?.[0].message).toMatch(/Did you mean "me"/);
  });
});

describe('production profile', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ NODE_ENV: 'production', JWT_SECRET: 'p'.repeat(48) });
  });
  afterAll(() => server?.stop());

  it('serves no Sandbox', async () => {
    const page = await sandboxPage(server);
    expect(page.body).not.toMatch(/sandbox/i);
    // Not only because the request looked like a possible CSRF: with the preflight header too.
    const preflighted = await sandboxPage(server, { 'x-requested-with': 'fetch' });
    expect(preflighted.body).not.toMatch(/sandbox/i);
    expect(preflighted.contentType).not.toMatch(/text\/html/);
  });

  it('refuses introspection', async () => {
    const response = await server.graphql(INTROSPECTION);
    expect(response.data).toBeUndefined();
    expect(response.errors?.[0].extensions).toEqual({ code: 'BAD_USER_INPUT' });
    expect(response.errors?.[0].message).toMatch(/introspection/i);
  });

  it('gives no "did you mean" hints about the schema', async () => {
    const response = await server.graphql(MISSPELLED);
    expect(response.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    expect(JSON.stringify(response.errors)).not.toMatch(/did you mean/i);
  });
});

describe('access log', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server?.stop());

  it('writes one line per request with its request id, method, path and status, never the query string', async () => {
    const response = await fetch(`${server.origin}/reset-password?token=secret-looking-token-value`, { headers: { 'x-request-id': 'access-log-test-1' } });
    expect(response.status).toBe(200);
    const line = await waitUntil(() => server.logs.find((entry) => entry.msg === 'request' && entry.requestId === 'access-log-test-1'), 'the access line is written');
    expect(line).toMatchObject({ method: 'GET', path: '/reset-password', status: 200 });
    expect(typeof line?.ms).toBe('number');
    expect(JSON.stringify(server.logs)).not.toContain('secret-looking-token-value');
  });
});

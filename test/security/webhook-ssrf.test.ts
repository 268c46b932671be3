import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { DestinationPolicy, DestinationRefusedError } from '../../src/modules/webhooks/destination.js';
import { registerAccount, START_UP_ADMIN, startUpAdminToken } from '../support/accounts.js';
import { errorCode, errorField, startTestServer, type TestServer } from '../support/server.js';
import { waitUntil } from '../support/wait.js';
import { CREATE_ENDPOINT, DELETE_ENDPOINT, startWebhookReceiver, type WebhookReceiver } from '../support/webhooks.js';

const DELIVERIES = '{ webhookEndpoints { id deliveries { attempt status error } } }';

/** The one refusal of a host that does not resolve to public addresses only, whatever it resolves to, if anything. */
const notPublic = (host: string) =>
  `The host ${host} does not resolve to public addresses only; webhooks only go to public addresses unless the host is in WEBHOOK_ALLOWED_HOSTS.`;

/**
 * Server-side request forgery through webhooks: an admin account (or whoever took one over) must
 * not be able to make the server call its own loopback services, the cloud metadata endpoint or the
 * private network, neither when registering an endpoint nor at delivery time.
 */
describe('webhook endpoints cannot reach loopback, link-local or private addresses', () => {
  let server: TestServer;
  let admin: string;
  let internal: WebhookReceiver;

  beforeAll(async () => {
    // An internal service on loopback, which nothing here may reach.
    internal = await startWebhookReceiver();
    server = await startTestServer({ ...START_UP_ADMIN }, { webhooks: { pollIntervalMs: 100, retryDelaysMs: [200, 200] } });
    admin = await startUpAdminToken(server);
  });
  afterAll(async () => {
    await server?.stop();
    await internal?.close();
  });

  const create = (url: string) => server.graphql(CREATE_ENDPOINT, { url, events: ['user.created'] }, { token: admin });

  it.each([
    ['loopback IPv4', () => `http://127.0.0.1:${internal.port}/hooks`],
    ['loopback by name', () => `http://localhost:${internal.port}/hooks`],
    ['loopback IPv6', () => `http://[::1]:${internal.port}/hooks`],
    ['loopback as an IPv4-mapped IPv6 address', () => `http://[::ffff:127.0.0.1]:${internal.port}/hooks`],
    ['loopback as an IPv4-compatible IPv6 address', () => `http://[::127.0.0.1]:${internal.port}/hooks`],
    ['loopback written as one decimal number', () => `http://2130706433:${internal.port}/hooks`],
    ['loopback in short form', () => `http://127.1:${internal.port}/hooks`],
    ['the unspecified address (connects to this host)', () => `http://0.0.0.0:${internal.port}/hooks`],
    ['the cloud metadata service (link-local)', () => 'http://169.254.169.254/latest/meta-data/iam/security-credentials/'],
    ['a private 10/8 address', () => 'http://10.0.0.1/hooks'],
    ['a private 192.168/16 address', () => 'https://192.168.1.1/hooks'],
    ['a carrier-grade NAT address', () => 'http://100.64.0.1/hooks'],
    ['an IPv6 unique-local address', () => 'http://[fd00::1]/hooks'],
    ['an IPv6 link-local address', () => 'http://[fe80::1]/hooks'],
  ])('refuses %s when the endpoint is registered', async (_name, url) => {
    const response = await create(url());
    expect(errorCode(response)).toBe('BAD_USER_INPUT');
    expect(errorField(response)).toBe('url');
    expect(response.errors![0].message).toMatch(/WEBHOOK_ALLOWED_HOSTS/);
    expect((await server.graphql(DELIVERIES, {}, { token: admin })).data?.webhookEndpoints).toEqual([]);
  });

  it.each([
    ['a file URL', 'file:///etc/passwd'],
    ['a gopher URL', 'gopher://127.0.0.1:6379/_INFO'],
    ['a relative URL', '/hooks'],
    ['credentials in the URL', 'https://user:secret@example.com/hooks'],
    ['a URL of 3000 characters', `https://example.com/${'a'.repeat(3000)}`],
    ['port 0', 'https://93.184.216.34:0/hooks'],
  ])('refuses %s', async (_name, url) => {
    const response = await create(url);
    expect(errorCode(response)).toBe('BAD_USER_INPUT');
    expect(errorField(response)).toBe('url');
    expect((await server.graphql(DELIVERIES, {}, { token: admin })).data?.webhookEndpoints).toEqual([]);
  });

  it('checks again at every attempt: an endpoint allowed when registered is refused once its address is no longer allowed', async () => {
    // Registered while the host was allow-listed; then the operator removes it (the same check
    // refuses a name that re-resolves to a private address after registration: DNS rebinding).
    await server.restart({ WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' });
    admin = await startUpAdminToken(server);
    const created = await create(internal.url);
    expect(created.errors).toBeUndefined();
    await server.restart({ WEBHOOK_ALLOWED_HOSTS: '' });
    admin = await startUpAdminToken(server);

    await registerAccount(server);
    const [endpoint] = await waitUntil(async () => {
      const endpoints = (await server.graphql(DELIVERIES, {}, { token: admin })).data?.webhookEndpoints;
      return endpoints?.[0]?.deliveries.length > 0 ? endpoints : undefined;
    }, 'the attempt is logged');
    expect(endpoint.deliveries[0]).toMatchObject({ attempt: 1, status: null, error: expect.stringMatching(/^refused: .*127\.0\.0\.1.*WEBHOOK_ALLOWED_HOSTS/) });
    expect(internal.received).toEqual([]);
    await server.graphql(DELETE_ENDPOINT, { id: endpoint.id }, { token: admin });
  });

  it('allows a private host only as written in WEBHOOK_ALLOWED_HOSTS', async () => {
    await server.restart({ WEBHOOK_ALLOWED_HOSTS: 'localhost' });
    admin = await startUpAdminToken(server);
    expect(errorCode(await create(`http://127.0.0.1:${internal.port}/hooks`))).toBe('BAD_USER_INPUT');
    const allowed = await create(`http://localhost:${internal.port}/hooks`);
    expect(allowed.errors).toBeUndefined();
    await server.graphql(DELETE_ENDPOINT, { id: allowed.data!.createWebhookEndpoint.endpoint.id }, { token: admin });
  });

  it('matches an allow-listed IP address however the list and the URL spell it', async () => {
    await server.restart({ WEBHOOK_ALLOWED_HOSTS: '0:0:0:0:0:0:0:1,127.1' });
    admin = await startUpAdminToken(server);
    for (const url of [`http://[0:0:0:0:0:0:0:1]:${internal.port}/hooks`, `http://[::1]:${internal.port}/hooks`, `http://127.0.0.1:${internal.port}/hooks`, `http://127.1:${internal.port}/hooks`]) {
      const allowed = await create(url);
      expect(allowed.errors, url).toBeUndefined();
      await server.graphql(DELETE_ENDPOINT, { id: allowed.data!.createWebhookEndpoint.endpoint.id }, { token: admin });
    }
    // Still the address only: another loopback address is not on the list.
    expect(errorCode(await create(`http://127.0.0.2:${internal.port}/hooks`))).toBe('BAD_USER_INPUT');
  });
});

describe('WEBHOOK_ALLOWED_HOSTS compared with the host of the URL as its parser writes it', () => {
  const resolveHost = async (host: string) => {
    if (host === 'hook_receiver') return [{ address: '172.18.0.5', family: 4 }];
    throw Object.assign(new Error(`no address for ${host}`), { code: 'ENOTFOUND' });
  };
  const policyFor = (allowedHosts: string) =>
    new DestinationPolicy(loadConfig({ DATA_DIR: mkdtempSync(join(tmpdir(), 'webhook-hosts-')), WEBHOOK_ALLOWED_HOSTS: allowedHosts }).webhooks, resolveHost);

  it.each([
    ['0:0:0:0:0:0:0:1', 'http://[0:0:0:0:0:0:0:1]:41510/', '::1'],
    ['::ffff:127.0.0.1', 'http://[::ffff:127.0.0.1]/', '::ffff:7f00:1'],
    ['127.1', 'http://127.1/', '127.0.0.1'],
    ['fd00::0001', 'http://[fd00::0001]/', 'fd00::1'],
    ['[FD00::1]', 'http://[fd00::1]/', 'fd00::1'],
  ])('allows the list entry %s for %s', async (entry, url, address) => {
    const policy = policyFor(entry);
    expect(await policy.resolve(policy.parse(url))).toEqual([{ address, family: address.includes(':') ? 6 : 4 }]);
  });

  it('allows a host name with an underscore (a Docker Compose service), resolving to a private address', async () => {
    const policy = policyFor('hook_receiver');
    expect(await policy.resolve(policy.parse('http://hook_receiver:8080/hooks'))).toEqual([{ address: '172.18.0.5', family: 4 }]);
    await expect(policyFor('other_receiver').resolve(new URL('http://hook_receiver:8080/hooks'))).rejects.toThrow(DestinationRefusedError);
  });

  it('normalises entries of rules built without loadConfig the same way', async () => {
    const policy = new DestinationPolicy({ httpsOnly: false, allowedHosts: ['0:0:0:0:0:0:0:1', '127.1'] }, resolveHost);
    expect(await policy.resolve(new URL('http://[::1]/'))).toEqual([{ address: '::1', family: 6 }]);
    expect(await policy.resolve(new URL('http://127.0.0.1/'))).toEqual([{ address: '127.0.0.1', family: 4 }]);
  });
});

describe('webhook host names are resolved for every attempt, and the connection goes where the check looked', () => {
  let server: TestServer;
  let admin: string;
  let internal: WebhookReceiver;
  // Stands in for DNS: names under .test resolve to what the test says at the moment.
  const answers = new Map<string, string>();
  const resolveHost = async (host: string) => {
    const address = answers.get(host);
    if (!address) throw Object.assign(new Error(`no address for ${host}`), { code: 'ENOTFOUND' });
    return [{ address, family: address.includes(':') ? 6 : 4 }];
  };

  beforeAll(async () => {
    internal = await startWebhookReceiver();
    server = await startTestServer({ ...START_UP_ADMIN, WEBHOOK_ALLOWED_HOSTS: 'pinned.test' }, { webhooks: { pollIntervalMs: 100, retryDelaysMs: [200] }, resolveHost });
    admin = await startUpAdminToken(server);
  });
  afterAll(async () => {
    await server?.stop();
    await internal?.close();
  });

  async function firstAttemptOf(endpointId: string): Promise<{ status: number | null; error: string | null }> {
    const endpoints = await waitUntil(async () => {
      const listed = (await server.graphql(DELIVERIES, {}, { token: admin })).data?.webhookEndpoints;
      return listed?.find((endpoint: { id: string }) => endpoint.id === endpointId)?.deliveries.length > 0 ? listed : undefined;
    }, 'the attempt is logged');
    return endpoints.find((endpoint: { id: string }) => endpoint.id === endpointId).deliveries.at(-1);
  }

  it('refuses an attempt when the name has moved to a private address since it was registered (DNS rebinding)', async () => {
    answers.set('rebind.test', '93.184.216.34');
    const created = await server.graphql(CREATE_ENDPOINT, { url: `http://rebind.test:${internal.port}/hooks`, events: ['user.created'] }, { token: admin });
    expect(created.errors).toBeUndefined();
    answers.set('rebind.test', '127.0.0.1');
    await registerAccount(server);
    const attempt = await firstAttemptOf(created.data!.createWebhookEndpoint.endpoint.id);
    expect(attempt).toMatchObject({ status: null, error: `refused: ${notPublic('rebind.test')}` });
    expect(internal.received).toEqual([]);
    await server.graphql(DELETE_ENDPOINT, { id: created.data!.createWebhookEndpoint.endpoint.id }, { token: admin });
  });

  it('refuses a name that does not resolve and one that resolves to any non-public address with the same message', async () => {
    // Whoever holds an admin account must not learn which internal names exist, or what they point at.
    answers.set('internal.test', '10.1.2.3');
    answers.set('loopback.test', '127.0.0.1');
    answers.set('metadata.test', '169.254.169.254');
    answers.set('unique-local.test', 'fd00::1');
    for (const host of ['nowhere.test', 'internal.test', 'loopback.test', 'metadata.test', 'unique-local.test']) {
      const response = await server.graphql(CREATE_ENDPOINT, { url: `https://${host}/hooks`, events: ['user.created'] }, { token: admin });
      expect(errorCode(response), host).toBe('BAD_USER_INPUT');
      expect(response.errors![0].message, host).toBe(notPublic(host));
    }
    expect((await server.graphql(DELIVERIES, {}, { token: admin })).data?.webhookEndpoints).toEqual([]);
  });

  it('connects to the address it checked, not to what a second lookup would say', async () => {
    // The system resolver knows nothing of pinned.test: only the checked answer can reach the receiver.
    answers.set('pinned.test', '127.0.0.1');
    const created = await server.graphql(CREATE_ENDPOINT, { url: `http://pinned.test:${internal.port}/hooks`, events: ['user.created'] }, { token: admin });
    expect(created.errors).toBeUndefined();
    const account = await registerAccount(server);
    const hook = await internal.waitFor((received) => JSON.parse(received.body).data.user.id === account.user.id);
    expect(hook.headers.host).toBe(`pinned.test:${internal.port}`);
    await server.graphql(DELETE_ENDPOINT, { id: created.data!.createWebhookEndpoint.endpoint.id }, { token: admin });
  });
});

describe('webhook endpoints in production', () => {
  let server: TestServer;
  let admin: string;

  beforeAll(async () => {
    server = await startTestServer({ NODE_ENV: 'production', JWT_SECRET: 'w'.repeat(48), ...START_UP_ADMIN, WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' });
    admin = await startUpAdminToken(server);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('accepts only https:// URLs, even for an allow-listed host', async () => {
    const plain = await server.graphql(CREATE_ENDPOINT, { url: 'http://127.0.0.1:9/hooks', events: ['user.created'] }, { token: admin });
    expect(errorCode(plain)).toBe('BAD_USER_INPUT');
    expect(plain.errors![0].message).toBe('Only https:// URLs are accepted in production.');
    const secure = await server.graphql(CREATE_ENDPOINT, { url: 'https://127.0.0.1:9/hooks', events: ['user.created'] }, { token: admin });
    expect(secure.errors).toBeUndefined();
  });
});

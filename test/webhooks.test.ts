import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHANGE_PASSWORD, DELETE_USER, REGISTER, registerAccount, START_UP_ADMIN, startUpAdminToken, UPDATE_USER } from './support/accounts.js';
import { CONFIRM_EMAIL_CHANGE, LOCK_ACCOUNT, lockdownTokenOf, REQUEST_EMAIL_CHANGE } from './support/mfa.js';
import { queriesDuring } from './support/database.js';
import { errorCode, errorField, startTestServer, type TestServer } from './support/server.js';
import { startSmtpServer, type TestSmtpServer, verificationCodeOf } from './support/smtp.js';
import { waitUntil, within } from './support/wait.js';
import { CREATE_ENDPOINT, DELETE_ENDPOINT, type ReceivedWebhook, startWebhookReceiver, type WebhookReceiver } from './support/webhooks.js';

const ENDPOINTS = '{ webhookEndpoints { id url events deliveries(first: 20) { webhookId eventType attempt status error createdAt } } }';
const VERIFY_EMAIL = 'mutation Verify($code: String!) { verifyEmail(code: $code) { id emailVerified } }';
const UPDATE_ME = 'mutation UpdateMe($input: UpdateProfileInput!) { updateMe(input: $input) { id firstName } }';
const ALL_EVENTS = ['user.created', 'user.updated', 'user.deleted', 'user.email_verified', 'user.password_changed', 'user.locked'];

/** Retries come fast here; the time limit for an answer stays the real 10 s. */
const RETRY_DELAY_MS = 300;

let smtp: TestSmtpServer;
let server: TestServer;
let admin: string;
let receiver: WebhookReceiver;

beforeAll(async () => {
  smtp = await startSmtpServer();
  receiver = await startWebhookReceiver();
  server = await startTestServer(
    { SMTP_URL: smtp.url, ...START_UP_ADMIN, WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' },
    { webhooks: { pollIntervalMs: 100, retryDelaysMs: Array(6).fill(RETRY_DELAY_MS) } },
  );
  admin = await startUpAdminToken(server);
});
afterAll(async () => {
  await server?.stop();
  await receiver?.close();
  await smtp?.stop();
});

async function createEndpoint(url: string, events = ALL_EVENTS): Promise<{ id: string; secret: string }> {
  const response = await server.graphql(CREATE_ENDPOINT, { url, events }, { token: admin });
  if (!response.data) throw new Error(`createWebhookEndpoint failed: ${JSON.stringify(response.errors)}`);
  return { id: response.data.createWebhookEndpoint.endpoint.id, secret: response.data.createWebhookEndpoint.secret };
}

async function deliveriesOf(endpointId: string): Promise<Array<{ webhookId: string; eventType: string; attempt: number; status: number | null; error: string | null }>> {
  const response = await server.graphql(ENDPOINTS, {}, { token: admin });
  return response.data!.webhookEndpoints.find((endpoint: { id: string }) => endpoint.id === endpointId).deliveries;
}

/** The verified payload of a delivery, as a receiving service using the Standard Webhooks library reads it. */
function verified(secret: string, hook: ReceivedWebhook): any {
  return new Webhook(secret).verify(hook.body, hook.headers as Record<string, string>);
}

const about = (userId: string) => (hook: ReceivedWebhook) => JSON.parse(hook.body).data.user.id === userId;

/**
 * A new account moved to another address (`<prefix>-…@example.com`) by an email change, then locked
 * down with the link the notice to its first address carried: the first address is back.
 */
async function movedAndTakenBack(prefix: string) {
  const account = await registerAccount(server);
  const owners = account.user.email;
  const theirs = `${prefix}-${account.user.id.slice(0, 8)}@example.com`;
  const token = { token: account.accessToken };
  expect((await server.graphql(REQUEST_EMAIL_CHANGE, { newEmail: theirs, password: account.password }, token)).data?.requestEmailChange).toBe(true);
  const code = verificationCodeOf(await smtp.waitFor((mail) => mail.to === theirs && mail.subject.startsWith('Confirm your new email address')));
  expect((await server.graphql(CONFIRM_EMAIL_CHANGE, { code }, token)).data?.confirmEmailChange.email).toBe(theirs);
  const notice = await smtp.waitFor((mail) => mail.to === owners && mail.subject === 'Your email address was changed');
  expect((await server.graphql(LOCK_ACCOUNT, { token: lockdownTokenOf(notice) })).data?.lockAccount).toBe(true);
  return { account, owners, theirs };
}

describe('webhooks', () => {
  it('signs each event so a Standard Webhooks verifier accepts it, and carries the account without secrets', async () => {
    const { id, secret } = await createEndpoint(receiver.url, ['user.created']);
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const listed = await server.graphql(ENDPOINTS, {}, { token: admin });
    expect(JSON.stringify(listed.data)).not.toContain(secret.slice(6));

    const account = await registerAccount(server);
    const hook = await receiver.waitFor(about(account.user.id));
    const event = verified(secret, hook);
    expect(event).toEqual({
      type: 'user.created',
      timestamp: expect.any(String),
      data: {
        user: {
          id: account.user.id,
          email: account.user.email,
          username: account.user.username,
          role: 'USER',
          active: true,
          emailVerified: false,
          createdAt: expect.any(String),
          updatedAt: expect.any(String),
        },
      },
    });
    expect(new Date(event.timestamp).toISOString()).toBe(event.timestamp);
    expect(hook.headers['webhook-id']).toMatch(/^msg_[0-9a-f]{32}$/);
    expect(hook.headers['content-type']).toBe('application/json');
    for (const leaked of [account.password, account.accessToken, account.refreshToken, account.deviceToken]) expect(hook.body).not.toContain(leaked);

    // The verification is real: another secret, a changed body or a stale timestamp is refused.
    expect(() => new Webhook(`whsec_${Buffer.alloc(32, 1).toString('base64')}`).verify(hook.body, hook.headers as Record<string, string>)).toThrow();
    expect(() => verified(secret, { ...hook, body: hook.body.replace('"USER"', '"ADMIN"') })).toThrow();
    expect(() => verified(secret, { ...hook, headers: { ...hook.headers, 'webhook-timestamp': String(Math.floor(Date.now() / 1000) - 3600) } })).toThrow();

    // The log is written once the dispatcher has the answer, a moment after the receiver sent it.
    const log = await waitUntil(async () => {
      const entries = await deliveriesOf(id);
      return entries.length > 0 ? entries : undefined;
    }, 'the attempt is logged');
    expect(log).toEqual([{ webhookId: hook.headers['webhook-id'], eventType: 'user.created', attempt: 1, status: 204, error: null, createdAt: expect.any(String) }]);
    await server.graphql(DELETE_ENDPOINT, { id }, { token: admin });
  });

  it('announces each change of an account once, after it commits: creation, verification, profile, password, role, lockdown, deletion', async () => {
    const { id, secret } = await createEndpoint(receiver.url);
    const account = await registerAccount(server);
    const user = account.user.id;
    const token = { token: account.accessToken };
    const code = verificationCodeOf(await smtp.waitFor((mail) => mail.to === account.user.email && mail.subject.startsWith('Your verification code')));
    expect((await server.graphql(VERIFY_EMAIL, { code }, token)).data?.verifyEmail.emailVerified).toBe(true);
    expect((await server.graphql(UPDATE_ME, { input: { firstName: 'Ada' } }, token)).data?.updateMe.firstName).toBe('Ada');
    const newPassword = `${account.password} and more`;
    expect((await server.graphql(CHANGE_PASSWORD, { input: { currentPassword: account.password, newPassword } }, token)).data?.changePassword).toBe(true);
    // Writing the value an account already has is no change, and sends nothing.
    expect((await server.graphql(UPDATE_USER, { id: user, input: { role: 'USER', active: true } }, { token: admin })).data?.updateUser.role).toBe('USER');
    expect((await server.graphql(UPDATE_USER, { id: user, input: { role: 'ADMIN' } }, { token: admin })).data?.updateUser.role).toBe('ADMIN');
    const notice = await smtp.waitFor((mail) => mail.to === account.user.email && mail.subject === 'Your password was changed');
    expect((await server.graphql(LOCK_ACCOUNT, { token: lockdownTokenOf(notice) })).data?.lockAccount).toBe(true);
    // Changes that fail send nothing: a taken username is found by the unique index at the flush
    // that would have written the account and its event, and rolls both back.
    const refused = `refused-${user.slice(0, 8)}@example.com`;
    expect(errorCode(await server.graphql(REGISTER, { input: { email: refused, username: account.user.username, password: 'another long passphrase' } }))).toBe('CONFLICT');
    expect((await server.graphql(DELETE_USER, { id: user }, { token: admin })).data?.deleteUser).toBe(true);

    const expected = ['user.created', 'user.email_verified', 'user.updated', 'user.password_changed', 'user.updated', 'user.locked', 'user.deleted'];
    const events = await waitUntil(() => {
      const mine = receiver.received.filter(about(user)).map((hook) => verified(secret, hook));
      return mine.length >= expected.length ? mine : undefined;
    }, 'every event of the account arrived');
    // Each event is sent once; their order across events is not promised (each is retried on its own).
    expect(events.map((event: { type: string }) => event.type).sort()).toEqual([...expected].sort());
    const byType = (type: string) => events.filter((event: { type: string }) => event.type === type).map((event: any) => event.data.user);
    expect(byType('user.email_verified')[0]).toMatchObject({ emailVerified: true });
    expect(byType('user.updated').map((state: { role: string }) => state.role).sort()).toEqual(['ADMIN', 'USER']);
    expect(byType('user.locked')[0]).toMatchObject({ id: user, role: 'ADMIN', active: true });
    expect(byType('user.deleted')[0]).toMatchObject({ id: user, email: account.user.email });
    expect(receiver.received.some((hook) => hook.body.includes(refused))).toBe(false);
    expect(new Set(receiver.received.filter(about(user)).map((hook) => hook.headers['webhook-id'])).size).toBe(expected.length);
    await server.graphql(DELETE_ENDPOINT, { id }, { token: admin });
  });

  it('announces a lockdown that restores a replaced address as user.locked and user.updated, both with the restored address', async () => {
    const { id, secret } = await createEndpoint(receiver.url, ['user.updated', 'user.locked']);
    const { account, owners, theirs } = await movedAndTakenBack('moved');

    const events = await waitUntil(() => {
      const mine = receiver.received.filter(about(account.user.id)).map((hook) => verified(secret, hook));
      return mine.length >= 3 ? mine : undefined;
    }, 'the change and the lockdown are announced');
    const emailsOf = (type: string) => events.filter((event: { type: string }) => event.type === type).map((event: any) => event.data.user.email);
    // The change to the hijacker's address, then the lockdown giving the owner's back.
    expect(emailsOf('user.updated').sort()).toEqual([owners, theirs].sort());
    expect(emailsOf('user.locked')).toEqual([owners]);
    await server.graphql(DELETE_ENDPOINT, { id }, { token: admin });
  });

  it('announces user.email_verified for the address a confirmed email change or a lockdown makes the verified one', async () => {
    const { id, secret } = await createEndpoint(receiver.url, ['user.email_verified']);
    const { account, owners, theirs } = await movedAndTakenBack('verified'); // never verified before

    const events = await waitUntil(() => {
      const mine = receiver.received.filter(about(account.user.id)).map((hook) => verified(secret, hook));
      return mine.length >= 2 ? mine : undefined;
    }, 'both verifications are announced');
    expect(events.map((event: any) => [event.type, event.data.user.email, event.data.user.emailVerified])).toEqual([
      ['user.email_verified', theirs, true],
      ['user.email_verified', owners, true],
    ]);
    await server.graphql(DELETE_ENDPOINT, { id }, { token: admin });
  });

  it('delivers the events of one change in the order they were announced', async () => {
    // A lockdown that gives the owner's address back announces user.locked, then user.updated;
    // several accounts at once, so the order cannot come out right by chance.
    const { id } = await createEndpoint(receiver.url, ['user.updated', 'user.locked']);
    const accounts = await Promise.all(
      Array.from({ length: 4 }, async () => {
        const account = await registerAccount(server);
        const theirs = `moved-${account.user.id.slice(0, 8)}@example.com`;
        const token = { token: account.accessToken };
        expect((await server.graphql(REQUEST_EMAIL_CHANGE, { newEmail: theirs, password: account.password }, token)).data?.requestEmailChange).toBe(true);
        const code = verificationCodeOf(await smtp.waitFor((mail) => mail.to === theirs && mail.subject.startsWith('Confirm your new email address')));
        expect((await server.graphql(CONFIRM_EMAIL_CHANGE, { code }, token)).data?.confirmEmailChange.email).toBe(theirs);
        const notice = await smtp.waitFor((mail) => mail.to === account.user.email && mail.subject === 'Your email address was changed');
        return { account, theirs, notice };
      }),
    );
    // The change of address is announced before any lockdown starts.
    for (const { account, theirs } of accounts) {
      await receiver.waitFor((hook) => about(account.user.id)(hook) && JSON.parse(hook.body).data.user.email === theirs);
    }
    await Promise.all(accounts.map(async ({ notice }) => expect((await server.graphql(LOCK_ACCOUNT, { token: lockdownTokenOf(notice) })).data?.lockAccount).toBe(true)));

    for (const { account, theirs } of accounts) {
      const owners = account.user.email;
      const arrived = await waitUntil(() => {
        const mine = receiver.received.filter(about(account.user.id)).map((hook) => JSON.parse(hook.body));
        return mine.length >= 3 ? mine : undefined;
      }, 'the lockdown is announced');
      expect(arrived.map((event: any) => [event.type, event.data.user.email])).toEqual([
        ['user.updated', theirs],
        ['user.locked', owners],
        ['user.updated', owners],
      ]);
    }
    await server.graphql(DELETE_ENDPOINT, { id }, { token: admin });
  });

  it('retries a failing endpoint with the same webhook-id until it answers 2xx, then never sends that event again', async () => {
    const flaky = await startWebhookReceiver();
    try {
      // 500, 502, a dropped connection, then success.
      flaky.answerWith((n) => ([500, 502, 'drop'] as const)[n - 1] ?? 200);
      const { id, secret } = await createEndpoint(flaky.url, ['user.created']);
      const account = await registerAccount(server);
      await flaky.waitFor((hook) => hook.answered && flaky.received.length === 4, 15_000);
      // Several retry delays later, still four requests: the event was delivered once.
      await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS * 5));
      expect(flaky.received).toHaveLength(4);
      const ids = new Set(flaky.received.map((hook) => hook.headers['webhook-id']));
      expect(ids.size).toBe(1);
      for (const hook of flaky.received) expect(verified(secret, hook).data.user.id).toBe(account.user.id);

      const log = await deliveriesOf(id);
      expect(log.map(({ attempt, status }) => [attempt, status])).toEqual([
        [4, 200],
        [3, null],
        [2, 502],
        [1, 500],
      ]);
      expect(log.every((entry) => entry.webhookId === [...ids][0])).toBe(true);
      expect(log[0].error).toBeNull();
      expect(log[2].error).toBe('the endpoint answered 502');
      expect(log[1].error).toMatch(/socket hang up|ECONNRESET/);
      await server.graphql(DELETE_ENDPOINT, { id }, { token: admin });
    } finally {
      await flaky.close();
    }
  });

  it('gives an endpoint that never answers 10 s and one attempt at a time, while requests and other endpoints carry on', async () => {
    const hanging = await startWebhookReceiver();
    const healthy = await startWebhookReceiver();
    try {
      hanging.answerWith(() => 'hang');
      const stuck = await createEndpoint(hanging.url, ['user.created']);
      const fine = await createEndpoint(healthy.url, ['user.created']);
      // No sign-up waits for a delivery: each answers within 2 s, far below the 10 s a delivery to
      // the hanging endpoint takes.
      const signUp = (n: number) => within(2_000, () => registerAccount(server), `sign-up ${n} while the endpoint hangs`);
      const first = await signUp(0);
      await hanging.waitFor(about(first.user.id));
      // While that request hangs, sign-ups still answer, and the other endpoint gets all their
      // events although the hanging one has a backlog larger than the dispatcher's 10 slots.
      const more = [];
      for (let n = 1; n <= 12; n += 1) more.push(await signUp(n));
      // The hang spanned every timed sign-up: the attempt is still unanswered, and still unlogged
      // (an attempt is logged when it ends, at the latest after 10 s).
      expect(hanging.received).toHaveLength(1);
      expect(hanging.received[0].answered).toBe(false);
      expect(await deliveriesOf(stuck.id)).toEqual([]);
      for (const account of more) await healthy.waitFor(about(account.user.id));
      expect(hanging.received).toHaveLength(1);

      const [attempt] = await waitUntil(async () => {
        const log = await deliveriesOf(stuck.id);
        return log.length > 0 ? log : undefined;
      }, 'the hanging attempt is given up', 20_000);
      expect(attempt).toMatchObject({ attempt: 1, status: null, error: 'no answer within 10 s' });
      await server.graphql(DELETE_ENDPOINT, { id: stuck.id }, { token: admin });
      await server.graphql(DELETE_ENDPOINT, { id: fine.id }, { token: admin });
    } finally {
      await hanging.close();
      await healthy.close();
    }
  });

  it('does not follow redirects: a 3xx is a failed attempt, and the redirect target gets nothing', async () => {
    const target = await startWebhookReceiver();
    const redirecting = await startWebhookReceiver();
    try {
      redirecting.answerWith(() => (res) => res.writeHead(307, { location: target.url }).end());
      const { id } = await createEndpoint(redirecting.url, ['user.created']);
      await registerAccount(server);
      await waitUntil(async () => (await deliveriesOf(id)).length >= 2, 'the redirect is retried');
      const [latest] = await deliveriesOf(id);
      expect(latest).toMatchObject({ status: 307, error: 'the endpoint answered 307 (redirects are not followed)' });
      expect(target.received).toEqual([]);
      await server.graphql(DELETE_ENDPOINT, { id }, { token: admin });
    } finally {
      await target.close();
      await redirecting.close();
    }
  });

  it('stops delivering to a deleted endpoint, retries included', async () => {
    const failing = await startWebhookReceiver();
    try {
      failing.answerWith(() => 500);
      const { id } = await createEndpoint(failing.url, ['user.created']);
      await registerAccount(server);
      await failing.waitFor(() => failing.received.length >= 2);
      expect((await server.graphql(DELETE_ENDPOINT, { id }, { token: admin })).data?.deleteWebhookEndpoint).toBe(true);
      const after = failing.received.length;
      await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS * 5));
      // At most the attempt that was already in flight.
      expect(failing.received.length).toBeLessThanOrEqual(after + 1);
      expect(errorCode(await server.graphql(DELETE_ENDPOINT, { id }, { token: admin }))).toBe('NOT_FOUND');
      expect((await server.graphql(ENDPOINTS, {}, { token: admin })).data?.webhookEndpoints.some((endpoint: { id: string }) => endpoint.id === id)).toBe(false);
    } finally {
      await failing.close();
    }
  });

  it('reads the delivery logs of every endpoint listed in one statement', async () => {
    const endpoints = [await createEndpoint(receiver.url, ['user.created']), await createEndpoint(receiver.url, ['user.created']), await createEndpoint(receiver.url, ['user.created'])];
    const account = await registerAccount(server);
    await waitUntil(async () => {
      for (const { id } of endpoints) if ((await deliveriesOf(id)).length === 0) return false;
      return true;
    }, 'each endpoint has delivered the event');
    let listed: any;
    const statements = await queriesDuring(async () => {
      listed = (await server.graphql(ENDPOINTS, {}, { token: admin })).data?.webhookEndpoints;
    });
    expect(statements.filter((sql) => sql.includes('"webhook_deliveries"'))).toHaveLength(1);
    for (const { id } of endpoints) {
      const [latest] = listed.find((endpoint: { id: string }) => endpoint.id === id).deliveries;
      expect(latest).toMatchObject({ eventType: 'user.created', attempt: 1, status: 204 });
    }
    expect(receiver.received.filter(about(account.user.id))).toHaveLength(3);
    for (const { id } of endpoints) await server.graphql(DELETE_ENDPOINT, { id }, { token: admin });
  });

  it('hands an attempt cut by a shutdown back, neither logged nor counted, and makes it again after the restart with the same webhook-id', async () => {
    const cut = await startWebhookReceiver();
    try {
      // The first request hangs until the server shuts down; the next ones are answered.
      cut.answerWith((n) => (n === 1 ? 'hang' : 204));
      const { id, secret } = await createEndpoint(cut.url, ['user.created']);
      const account = await registerAccount(server);
      const first = await cut.waitFor(about(account.user.id));
      await server.restart();
      admin = await startUpAdminToken(server);
      const again = await cut.waitFor((hook) => hook.answered && hook.headers['webhook-id'] === first.headers['webhook-id']);
      expect(verified(secret, again).data.user.id).toBe(account.user.id);
      const log = await waitUntil(async () => {
        const entries = await deliveriesOf(id);
        return entries.length > 0 ? entries : undefined;
      }, 'the attempt after the restart is logged');
      expect(log).toEqual([{ webhookId: first.headers['webhook-id'], eventType: 'user.created', attempt: 1, status: 204, error: null, createdAt: expect.any(String) }]);
      await server.graphql(DELETE_ENDPOINT, { id }, { token: admin });
    } finally {
      await cut.close();
    }
  });

  it('is for admins only, and takes only known event types', async () => {
    const account = await registerAccount(server);
    const asUser = await server.graphql(CREATE_ENDPOINT, { url: receiver.url, events: ['user.created'] }, { token: account.accessToken });
    expect(errorCode(asUser)).toBe('FORBIDDEN');
    expect(errorCode(await server.graphql(ENDPOINTS, {}, { token: account.accessToken }))).toBe('FORBIDDEN');
    expect(errorCode(await server.graphql(ENDPOINTS))).toBe('UNAUTHENTICATED');

    for (const events of [[], ['user.exploded'], ['user.created', 'USER_CREATED']]) {
      const response = await server.graphql(CREATE_ENDPOINT, { url: receiver.url, events }, { token: admin });
      expect(errorCode(response)).toBe('BAD_USER_INPUT');
      expect(errorField(response)).toBe('events');
    }
    const { id } = await createEndpoint(receiver.url, ['user.deleted', 'user.created', 'user.created']);
    const listed = (await server.graphql(ENDPOINTS, {}, { token: admin })).data?.webhookEndpoints.find((endpoint: { id: string }) => endpoint.id === id);
    expect(listed.events).toEqual(['user.created', 'user.deleted']);
    const audit = await server.graphql('{ auditEvents(first: 5) { edges { node { type actorId } } } }', {}, { token: admin });
    expect(audit.data?.auditEvents.edges.map((edge: { node: { type: string } }) => edge.node.type)).toContain('WEBHOOK_ENDPOINT_CREATED');
    await server.graphql(DELETE_ENDPOINT, { id }, { token: admin });
  });
});

describe('a webhook host whose DNS hangs', () => {
  let server: TestServer;
  let admin: string;
  let healthy: WebhookReceiver;
  let slow: WebhookReceiver;
  // Stands in for DNS: both names resolve to the receivers on loopback (allow-listed), and
  // hang.test stops answering while `hanging` is set, until the test lets its lookups go.
  let hanging = false;
  const stalled: Array<() => void> = [];
  const resolveHost = async (host: string) => {
    if (host === 'hang.test' && hanging) await new Promise<void>((resolve) => stalled.push(resolve));
    if (host === 'hang.test' || host === 'healthy.test') return [{ address: '127.0.0.1', family: 4 }];
    throw Object.assign(new Error(`no address for ${host}`), { code: 'ENOTFOUND' });
  };
  const answerDns = () => {
    hanging = false;
    for (const release of stalled.splice(0)) release();
  };

  beforeAll(async () => {
    healthy = await startWebhookReceiver();
    slow = await startWebhookReceiver();
    server = await startTestServer(
      { ...START_UP_ADMIN, WEBHOOK_ALLOWED_HOSTS: 'healthy.test,hang.test' },
      { webhooks: { pollIntervalMs: 100, retryDelaysMs: Array(6).fill(RETRY_DELAY_MS) }, resolveHost },
    );
    admin = await startUpAdminToken(server);
  });
  afterAll(async () => {
    answerDns();
    await server?.stop();
    await healthy?.close();
    await slow?.close();
  });

  const create = (url: string) => server.graphql(CREATE_ENDPOINT, { url, events: ['user.created'] }, { token: admin });
  const logOf = async (endpointId: string): Promise<Array<{ attempt: number; status: number | null; error: string | null }>> =>
    (await server.graphql(ENDPOINTS, {}, { token: admin })).data!.webhookEndpoints.find((endpoint: { id: string }) => endpoint.id === endpointId).deliveries;

  it('delays neither the deliveries to other hosts nor the registration of endpoints, and holds one lookup at a time', async () => {
    const stuck: string[] = [];
    for (let n = 0; n < 2; n += 1) stuck.push((await create(`http://hang.test:${slow.port}/hooks`)).data!.createWebhookEndpoint.endpoint.id);
    const fine = (await create(`http://healthy.test:${healthy.port}/hooks`)).data!.createWebhookEndpoint.endpoint.id;
    hanging = true;
    try {
      const accounts = [];
      for (let n = 0; n < 3; n += 1) accounts.push(await registerAccount(server));
      // Every event reaches the healthy host while hang.test's lookup hangs, well within the time
      // limit of an attempt at it (8 s for its lookup).
      for (const account of accounts) await healthy.waitFor(about(account.user.id), 3_000);
      expect(slow.received).toEqual([]);
      // Both endpoints' attempts at hang.test wait for its one lookup rather than starting another.
      expect(stalled).toHaveLength(1);

      // Admin requests for other hosts answer at once; one for the hanging host answers within its limit.
      const other = await within(3_000, () => create(`http://healthy.test:${healthy.port}/other`), 'registering an endpoint on another host');
      expect(other.errors).toBeUndefined();
      const refused = await within(12_000, () => create(`http://hang.test:${slow.port}/more`), 'registering an endpoint on the hanging host');
      expect(errorCode(refused)).toBe('BAD_USER_INPUT');
      expect(errorField(refused)).toBe('url');
      expect(refused.errors![0].message).toBe('The host hang.test did not resolve within 8 s; check the name, or try again later.');
      expect(stalled).toHaveLength(1);

      const [attempt] = await waitUntil(async () => {
        const log = await logOf(stuck[0]);
        return log.length > 0 ? log : undefined;
      }, 'the attempt at the hanging host is given up', 12_000);
      expect(attempt).toMatchObject({ attempt: 1, status: null, error: 'the host hang.test did not resolve within 8 s' });
      expect(await logOf(fine)).toHaveLength(3);
      expect((await logOf(fine)).every((entry) => entry.status === 204)).toBe(true);

      // Once DNS answers again, the endpoints behind it get their events.
      answerDns();
      for (const account of accounts) {
        await slow.waitFor((hook) => about(account.user.id)(hook) && slow.received.filter(about(account.user.id)).length === 2);
      }
      await server.graphql(DELETE_ENDPOINT, { id: other.data!.createWebhookEndpoint.endpoint.id }, { token: admin });
    } finally {
      answerDns();
      for (const id of [...stuck, fine]) await server.graphql(DELETE_ENDPOINT, { id }, { token: admin });
    }
  }, 60_000);
});

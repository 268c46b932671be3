import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHANGE_PASSWORD, DELETE_ME, DELETE_USER, FORGOT_PASSWORD, LOGIN, newAccountInput, REFRESH, REGISTER, RESET_PASSWORD, REVOKE_SESSION, SESSIONS, UPDATE_USER } from './support/accounts.js';
import { build } from './support/server-process.js';
import { type CallOptions, errorCode, errorField, startTestServer, type TestServer } from './support/server.js';
import { type CapturedMail, resetTokenOf, startSmtpServer, type TestSmtpServer, verificationCodeOf } from './support/smtp.js';
import { waitUntil } from './support/wait.js';

// Not 'root admin passphrase 1': the password policy rightly refuses a password containing the
// username ("admin") or the email's local part ("root").
const ADMIN_PASSWORD = 'chief operator passphrase 1';
const LOOPBACK = '127.0.0.1';

const AUDIT_EVENTS = `query Audit($first: Int, $after: String, $userId: ID) {
  auditEvents(first: $first, after: $after, userId: $userId) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id type userId actorId ip userAgent createdAt } }
  }
}`;
const LOGOUT = 'mutation { logout }';
const VERIFY_EMAIL = 'mutation Verify($code: String!) { verifyEmail(code: $code) { id emailVerified } }';
const UPDATE_ME = 'mutation UpdateMe($input: UpdateProfileInput!) { updateMe(input: $input) { id firstName } }';
const CREATE_USER = 'mutation Create($input: CreateUserInput!) { createUser(input: $input) { id email username role active } }';

interface AuditNode {
  id: string;
  type: string;
  userId: string | null;
  actorId: string | null;
  ip: string | null;
  userAgent: string | null;
  createdAt: string;
}
interface AuditPage {
  totalCount: number;
  pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string | null; endCursor: string | null };
  edges: Array<{ cursor: string; node: AuditNode }>;
}
interface Account {
  id: string;
  email: string;
  username: string;
  password: string;
  accessToken: string;
  refreshToken: string;
}

/** Every password, token and code this file uses: none may end up in audit_events. */
const secrets = new Set<string>();
/** Verification codes are short digit strings: checked outside id and time columns only. */
const codes = new Set<string>();
function secret<T extends string>(value: T): T {
  secrets.add(value);
  return value;
}

let server: TestServer;
let smtp: TestSmtpServer;
let admin: Account;
beforeAll(async () => {
  smtp = await startSmtpServer();
  // A rotated refresh token is reuse at once here (no reuse interval), so the reuse event can be provoked without waiting.
  server = await startTestServer({ ADMIN_EMAIL: 'root@example.test', ADMIN_PASSWORD, SMTP_URL: smtp.url, REFRESH_TOKEN_REUSE_INTERVAL: '0' });
  secret(ADMIN_PASSWORD);
  const response = await server.graphql(LOGIN, { input: { identifier: 'admin', password: ADMIN_PASSWORD } });
  if (!response.data?.login) throw new Error(`admin login failed: ${JSON.stringify(response.errors)}`);
  const { accessToken, refreshToken, user } = response.data.login;
  admin = { ...user, password: ADMIN_PASSWORD, accessToken: secret(accessToken), refreshToken: secret(refreshToken) };
});
afterAll(async () => {
  await server?.stop();
  await smtp?.stop();
});

function suffix(): string {
  return randomBytes(4).toString('hex');
}

/** A User-Agent no other request of this file sends. */
function userAgent(label: string): string {
  return `audit-test/${label} (${suffix()})`;
}

function as(agent: string, token?: string): CallOptions {
  return { headers: { 'user-agent': agent }, ...(token ? { token } : {}) };
}

async function register(agent = userAgent('register'), overrides: Record<string, unknown> = {}): Promise<Account> {
  const input = newAccountInput(overrides);
  const response = await server.graphql(REGISTER, { input }, as(agent));
  if (!response.data?.register) throw new Error(`register failed: ${JSON.stringify(response.errors)}`);
  const { accessToken, refreshToken, user } = response.data.register;
  return { ...user, password: secret(input.password as string), accessToken: secret(accessToken), refreshToken: secret(refreshToken) };
}

async function login(account: { email: string; password: string }, agent: string): Promise<{ accessToken: string; refreshToken: string }> {
  const response = await server.graphql(LOGIN, { input: { identifier: account.email, password: account.password } }, as(agent));
  if (!response.data?.login) throw new Error(`login failed: ${JSON.stringify(response.errors)}`);
  return { accessToken: secret(response.data.login.accessToken), refreshToken: secret(response.data.login.refreshToken) };
}

function auditPage(variables: { first?: number; after?: string | null; userId?: string | null }, token = admin.accessToken) {
  return server.graphql<{ auditEvents: AuditPage }>(AUDIT_EVENTS, variables, { token });
}

/** Every page of auditEvents (optionally of one user), following endCursor. */
async function walkEvents(userId: string | null, first = 100): Promise<AuditPage[]> {
  const pages: AuditPage[] = [];
  let after: string | null = null;
  for (let guard = 0; guard < 1000; guard += 1) {
    const response = await auditPage({ first, after, userId });
    expect(response.errors).toBeUndefined();
    const current: AuditPage = response.data!.auditEvents;
    pages.push(current);
    if (!current.pageInfo.hasNextPage) return pages;
    after = current.pageInfo.endCursor;
  }
  throw new Error('auditEvents pagination never ended');
}

async function eventsOf(userId: string | null): Promise<AuditNode[]> {
  return (await walkEvents(userId)).flatMap((current) => current.edges.map((edge) => edge.node));
}

/**
 * The one event of `type` that the request with User-Agent `agent` recorded about `userId` (or,
 * for `userId` null, among all events), checked for subject, actor, ip and user agent.
 */
async function expectEvent(type: string, agent: string, subject: { userId: string | null; actorId: string | null }): Promise<AuditNode> {
  const events = (await eventsOf(subject.userId)).filter((event) => event.userAgent === agent);
  expect(events.map((event) => event.type)).toContain(type);
  const matching = events.filter((event) => event.type === type);
  expect(matching).toHaveLength(1);
  expect(matching[0]).toMatchObject({ type, userId: subject.userId, actorId: subject.actorId, ip: LOOPBACK, userAgent: agent });
  expect(Date.parse(matching[0].createdAt)).toBeGreaterThan(Date.now() - 60_000);
  return matching[0];
}

function mailTo(email: string, subject: RegExp): Promise<CapturedMail> {
  return smtp.waitFor((mail) => mail.to.toLowerCase().includes(email.toLowerCase()) && subject.test(mail.subject));
}

describe('each action records its event', () => {
  it('register: USER_CREATED with the new user as subject and actor', async () => {
    const agent = userAgent('sign-up');
    const account = await register(agent);
    await expectEvent('USER_CREATED', agent, { userId: account.id, actorId: account.id });
  });

  it('login: LOGIN_SUCCEEDED with the user as subject and actor', async () => {
    const account = await register();
    const agent = userAgent('login');
    await login(account, agent);
    await expectEvent('LOGIN_SUCCEEDED', agent, { userId: account.id, actorId: account.id });
  });

  it('failed login of a known account: LOGIN_FAILED about that account, with no actor', async () => {
    const account = await register();
    const agent = userAgent('login-failed');
    const wrongPassword = secret(`${account.password} but wrong`);
    const response = await server.graphql(LOGIN, { input: { identifier: account.username, password: wrongPassword } }, as(agent));
    expect(errorCode(response)).toBe('UNAUTHENTICATED');
    await expectEvent('LOGIN_FAILED', agent, { userId: account.id, actorId: null });
  });

  it('failed login of an unknown identifier: LOGIN_FAILED with userId null', async () => {
    const agent = userAgent('login-unknown');
    const identifier = `nobody-${suffix()}@example.com`;
    const response = await server.graphql(LOGIN, { input: { identifier, password: secret(`whatever passphrase ${suffix()}`) } }, as(agent));
    expect(errorCode(response)).toBe('UNAUTHENTICATED');
    const event = await expectEvent('LOGIN_FAILED', agent, { userId: null, actorId: null });
    // The typed identifier is not kept anywhere in the event.
    expect(JSON.stringify(event)).not.toContain(identifier);
  });

  it('failed login of a deactivated account: LOGIN_FAILED about that account', async () => {
    const account = await register();
    const deactivated = await server.graphql(UPDATE_USER, { id: account.id, input: { active: false } }, { token: admin.accessToken });
    expect(deactivated.errors).toBeUndefined();
    const agent = userAgent('login-inactive');
    const response = await server.graphql(LOGIN, { input: { identifier: account.email, password: account.password } }, as(agent));
    expect(errorCode(response)).toBe('UNAUTHENTICATED');
    await expectEvent('LOGIN_FAILED', agent, { userId: account.id, actorId: null });
  });

  it('logout: LOGOUT', async () => {
    const account = await register();
    const agent = userAgent('logout');
    const response = await server.graphql(LOGOUT, {}, as(agent, account.accessToken));
    expect(response.data?.logout).toBe(true);
    await expectEvent('LOGOUT', agent, { userId: account.id, actorId: account.id });
  });

  it('revokeSession: SESSION_REVOKED', async () => {
    const account = await register();
    await login(account, userAgent('second-device'));
    const sessions = await server.graphql(SESSIONS, {}, { token: account.accessToken });
    const other = (sessions.data?.sessions as Array<{ id: string; current: boolean }>).find((session) => !session.current);
    expect(other).toBeDefined();
    const agent = userAgent('revoke');
    const response = await server.graphql(REVOKE_SESSION, { id: other!.id }, as(agent, account.accessToken));
    expect(response.data?.revokeSession).toBe(true);
    await expectEvent('SESSION_REVOKED', agent, { userId: account.id, actorId: account.id });
  });

  it('refresh-token reuse: REFRESH_REUSE_DETECTED about the token\'s owner', async () => {
    const account = await register();
    const rotated = await server.graphql(REFRESH, { refreshToken: account.refreshToken }, as(userAgent('refresh')));
    expect(rotated.errors).toBeUndefined();
    secret(rotated.data!.refreshToken.accessToken);
    secret(rotated.data!.refreshToken.refreshToken);
    const agent = userAgent('reuse');
    const reused = await server.graphql(REFRESH, { refreshToken: account.refreshToken }, as(agent));
    expect(errorCode(reused)).toBe('UNAUTHENTICATED');
    await expectEvent('REFRESH_REUSE_DETECTED', agent, { userId: account.id, actorId: null });
  });

  it('forgotPassword and resetPassword: PASSWORD_RESET_REQUESTED (in the background) and PASSWORD_RESET_COMPLETED', async () => {
    const account = await register();
    const requestAgent = userAgent('forgot');
    const forgot = await server.graphql(FORGOT_PASSWORD, { input: { identifier: account.email } }, as(requestAgent));
    expect(forgot.data?.forgotPassword).toBe(true);
    await waitUntil(async () => (await eventsOf(account.id)).some((event) => event.type === 'PASSWORD_RESET_REQUESTED'), 'PASSWORD_RESET_REQUESTED is recorded');
    await expectEvent('PASSWORD_RESET_REQUESTED', requestAgent, { userId: account.id, actorId: null });

    const token = secret(resetTokenOf(await mailTo(account.email, /reset your password/i)));
    const resetAgent = userAgent('reset');
    const newPassword = secret(`a brand new passphrase ${suffix()}`);
    const reset = await server.graphql(RESET_PASSWORD, { input: { token, newPassword } }, as(resetAgent));
    expect(reset.data?.resetPassword).toBe(true);
    await expectEvent('PASSWORD_RESET_COMPLETED', resetAgent, { userId: account.id, actorId: null });
  });

  it('forgotPassword of an unknown identifier records nothing about any account', async () => {
    const agent = userAgent('forgot-unknown');
    const forgot = await server.graphql(FORGOT_PASSWORD, { input: { identifier: `nobody-${suffix()}@example.com` } }, as(agent));
    expect(forgot.data?.forgotPassword).toBe(true);
    await sleep(500);
    expect((await eventsOf(null)).filter((event) => event.userAgent === agent)).toEqual([]);
  });

  it('changePassword: PASSWORD_CHANGED with the user as actor', async () => {
    const account = await register();
    const agent = userAgent('change');
    const newPassword = secret(`another new passphrase ${suffix()}`);
    const response = await server.graphql(CHANGE_PASSWORD, { input: { currentPassword: account.password, newPassword } }, as(agent, account.accessToken));
    expect(response.data?.changePassword).toBe(true);
    await expectEvent('PASSWORD_CHANGED', agent, { userId: account.id, actorId: account.id });
  });

  it('verifyEmail: EMAIL_VERIFIED', async () => {
    const account = await register();
    const code = verificationCodeOf(await mailTo(account.email, /verification code/i));
    codes.add(code);
    const agent = userAgent('verify');
    const response = await server.graphql(VERIFY_EMAIL, { code }, as(agent, account.accessToken));
    expect(response.data?.verifyEmail.emailVerified).toBe(true);
    await expectEvent('EMAIL_VERIFIED', agent, { userId: account.id, actorId: account.id });
  });

  it('updateMe: USER_UPDATED with the user as actor', async () => {
    const account = await register();
    const agent = userAgent('update-me');
    const response = await server.graphql(UPDATE_ME, { input: { firstName: 'Renamed' } }, as(agent, account.accessToken));
    expect(response.data?.updateMe.firstName).toBe('Renamed');
    await expectEvent('USER_UPDATED', agent, { userId: account.id, actorId: account.id });
  });

  it('admin createUser, role change, deactivation and deleteUser: USER_CREATED, ROLE_CHANGED, USER_DEACTIVATED, USER_DELETED by the admin', async () => {
    const tag = suffix();
    const createAgent = userAgent('create-user');
    const created = await server.graphql(
      CREATE_USER,
      { input: { email: `made-${tag}@example.com`, username: `made_${tag}`, password: secret(`an initial passphrase ${tag}`) } },
      as(createAgent, admin.accessToken),
    );
    expect(created.errors).toBeUndefined();
    const userId = created.data!.createUser.id as string;
    await expectEvent('USER_CREATED', createAgent, { userId, actorId: admin.id });

    const roleAgent = userAgent('role');
    const promoted = await server.graphql(UPDATE_USER, { id: userId, input: { role: 'ADMIN' } }, as(roleAgent, admin.accessToken));
    expect(promoted.data?.updateUser.role).toBe('ADMIN');
    await expectEvent('ROLE_CHANGED', roleAgent, { userId, actorId: admin.id });

    const deactivateAgent = userAgent('deactivate');
    const deactivated = await server.graphql(UPDATE_USER, { id: userId, input: { active: false } }, as(deactivateAgent, admin.accessToken));
    expect(deactivated.data?.updateUser.active).toBe(false);
    await expectEvent('USER_DEACTIVATED', deactivateAgent, { userId, actorId: admin.id });

    const deleteAgent = userAgent('delete-user');
    const deleted = await server.graphql(DELETE_USER, { id: userId }, as(deleteAgent, admin.accessToken));
    expect(deleted.data?.deleteUser).toBe(true);
    await expectEvent('USER_DELETED', deleteAgent, { userId, actorId: admin.id });
  });

  it('keeps a very long User-Agent only cut to size', async () => {
    const account = await register();
    const agent = `audit-test/long ${'x'.repeat(2000)}`;
    await login(account, agent);
    const events = (await eventsOf(account.id)).filter((event) => event.type === 'LOGIN_SUCCEEDED');
    expect(events).toHaveLength(1);
    expect(events[0].userAgent).toBe(agent.slice(0, events[0].userAgent!.length));
    expect(events[0].userAgent!.length).toBeGreaterThanOrEqual(200);
    expect(events[0].userAgent!.length).toBeLessThanOrEqual(512);
  });
});

describe('auditEvents', () => {
  let busy: Account;
  const agents: string[] = [];
  beforeAll(async () => {
    busy = await register();
    for (let index = 0; index < 8; index += 1) {
      const agent = userAgent(`busy-${index}`);
      agents.push(agent);
      await login(busy, agent);
      await sleep(3); // distinct creation times, so "newest first" has one right answer
    }
  });

  it('pages one user\'s events newest first, with no duplicates across pages', async () => {
    const pages = await walkEvents(busy.id, 3);
    const nodes = pages.flatMap((current) => current.edges.map((edge) => edge.node));
    // Eight sign-ins, newest first, then the USER_CREATED of the registration.
    expect(nodes).toHaveLength(9);
    expect(new Set(nodes.map((node) => node.id)).size).toBe(9);
    expect(nodes.slice(0, 8).map((node) => node.userAgent)).toEqual([...agents].reverse());
    expect(nodes[8].type).toBe('USER_CREATED');
    for (const node of nodes.slice(0, 8)) expect(node).toMatchObject({ type: 'LOGIN_SUCCEEDED', userId: busy.id, actorId: busy.id, ip: LOOPBACK });
    expect(pages.map((current) => current.edges.length)).toEqual([3, 3, 3]);
    pages.forEach((current, index) => {
      expect(current.totalCount).toBe(9);
      expect(current.pageInfo.hasPreviousPage).toBe(index > 0);
      expect(current.pageInfo.hasNextPage).toBe(index < pages.length - 1);
      expect(current.pageInfo.startCursor).toBe(current.edges[0].cursor);
      expect(current.pageInfo.endCursor).toBe(current.edges.at(-1)!.cursor);
    });
  });

  it('pages all events newest first, matching the table, with totalCount of all events', async () => {
    const expected = await server.sql<{ id: string }>('select id from audit_events order by created_at desc, id desc');
    const pages = await walkEvents(null, 3);
    const ids = pages.flatMap((current) => current.edges.map((edge) => edge.node.id));
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual(expected.map((row) => row.id));
    for (const current of pages) expect(current.totalCount).toBe(expected.length);
    const times = pages.flatMap((current) => current.edges.map((edge) => Date.parse(edge.node.createdAt)));
    for (let index = 1; index < times.length; index += 1) expect(times[index]).toBeLessThanOrEqual(times[index - 1]);
  }, 60_000);

  it('filters by userId, with totalCount counting only that user\'s events', async () => {
    const other = await register();
    await login(other, userAgent('other'));
    const [{ count }] = await server.sql<{ count: string | number }>('select count(*) as count from audit_events where user_id = ?', [busy.id]);
    const all = await auditPage({ first: 1 });
    const mine = await auditPage({ first: 1, userId: busy.id });
    expect(mine.data?.auditEvents.totalCount).toBe(Number(count));
    expect(mine.data?.auditEvents.totalCount).toBe(9);
    expect(all.data!.auditEvents.totalCount).toBeGreaterThan(9);
    const theirs = await eventsOf(other.id);
    expect(theirs.length).toBeGreaterThan(0);
    for (const event of theirs) expect(event.userId).toBe(other.id);
    expect(theirs.map((event) => event.id)).not.toContain(mine.data!.auditEvents.edges[0].node.id);
  });

  it('gives an empty list for an id no account ever had', async () => {
    const response = await auditPage({ first: 5, userId: '00000000-0000-4000-8000-000000000000' });
    expect(response.errors).toBeUndefined();
    expect(response.data?.auditEvents).toEqual({ totalCount: 0, edges: [], pageInfo: { hasNextPage: false, hasPreviousPage: false, startCursor: null, endCursor: null } });
  });

  it('refuses an invalid userId with BAD_USER_INPUT, not a 500', async () => {
    for (const userId of ['nope', '', '00000000-0000-0000-0000-00000000000g', "' or 1=1 --"]) {
      const response = await auditPage({ first: 5, userId });
      if (userId === '' && !response.errors) continue; // "" may be read as no filter
      expect({ userId, status: response.status, code: errorCode(response), field: errorField(response) }).toEqual({ userId, status: 200, code: 'BAD_USER_INPUT', field: 'userId' });
      expect(response.data ?? null).toBeNull();
    }
  });

  it('refuses an invalid cursor and a negative first with BAD_USER_INPUT', async () => {
    const badCursor = await auditPage({ first: 5, after: 'garbage' });
    expect(errorCode(badCursor)).toBe('BAD_USER_INPUT');
    const negative = await auditPage({ first: -1 });
    expect(errorCode(negative)).toBe('BAD_USER_INPUT');
    const capped = await auditPage({ first: 1000 });
    expect(capped.data!.auditEvents.edges.length).toBeLessThanOrEqual(100);
  });

  // Same defect as in test/listing.test.ts: the cursor's id part is only matched against
  // [0-9a-f-]{36} (src/graphql/pagination.ts), so PostgreSQL rejects it as a uuid and the client gets a 500-class error.
  it('refuses a cursor whose id part is not a UUID with BAD_USER_INPUT, never INTERNAL_SERVER_ERROR', async () => {
    const after = Buffer.from(`2024-01-01T00:00:00.000Z|${'-'.repeat(36)}`).toString('base64url');
    const response = await auditPage({ first: 5, after });
    expect({ code: errorCode(response), field: errorField(response) }).toEqual({ code: 'BAD_USER_INPUT', field: 'after' });
  });

  it('is for admins only', async () => {
    const account = await register();
    const forbidden = await auditPage({ first: 5, userId: account.id }, account.accessToken);
    expect(forbidden.data ?? null).toBeNull();
    expect(errorCode(forbidden)).toBe('FORBIDDEN');
    const anonymous = await server.graphql(AUDIT_EVENTS, { first: 5 });
    expect(anonymous.data ?? null).toBeNull();
    expect(errorCode(anonymous)).toBe('UNAUTHENTICATED');
  });
});

describe('events of deleted accounts', () => {
  it('are still listed by userId after deleteUser', async () => {
    const account = await register();
    const agent = userAgent('before-delete');
    await login(account, agent);
    const before = await eventsOf(account.id);
    expect(before.map((event) => event.type)).toContain('LOGIN_SUCCEEDED');
    const deleted = await server.graphql(DELETE_USER, { id: account.id }, { token: admin.accessToken });
    expect(deleted.data?.deleteUser).toBe(true);
    const after = await eventsOf(account.id);
    expect(after.map((event) => event.type)).toEqual(['USER_DELETED', ...before.map((event) => event.type)]);
    expect(after.slice(1)).toEqual(before);
    expect(after[0]).toMatchObject({ userId: account.id, actorId: admin.id });
    const page = await auditPage({ first: 100, userId: account.id });
    expect(page.data?.auditEvents.totalCount).toBe(before.length + 1);
  });

  it('are still listed by userId after deleteMe', async () => {
    const account = await register();
    const loginAgent = userAgent('before-delete-me');
    const session = await login(account, loginAgent);
    const deleteAgent = userAgent('delete-me');
    const response = await server.graphql(DELETE_ME, { password: account.password }, as(deleteAgent, session.accessToken));
    expect(response.data?.deleteMe).toBe(true);
    expect(await server.sql('select id from users where id = ?', [account.id])).toEqual([]);
    await expectEvent('LOGIN_SUCCEEDED', loginAgent, { userId: account.id, actorId: account.id });
    await expectEvent('USER_DELETED', deleteAgent, { userId: account.id, actorId: account.id });
    const page = await auditPage({ first: 100, userId: account.id });
    expect(page.data?.auditEvents.edges.map((edge: { node: { type: string } }) => edge.node.type)).toEqual(['USER_DELETED', 'LOGIN_SUCCEEDED', 'USER_CREATED']);
  });
});

describe('the audit_events table', () => {
  it('holds no password, access token, refresh token, reset token or verification code used in this file', async () => {
    expect(secrets.size).toBeGreaterThan(20);
    expect(codes.size).toBeGreaterThan(0);
    const rows = await server.sql<Record<string, unknown>>('select * from audit_events');
    expect(rows.length).toBeGreaterThan(20);
    const text = JSON.stringify(rows);
    for (const value of secrets) expect(text.includes(value), `audit_events contains ${value.slice(0, 12)}…`).toBe(false);
    // Parts of a token or password are no better: no 16-character run of any secret either.
    for (const value of secrets) {
      for (let start = 0; start + 16 <= value.length; start += 8) {
        const piece = value.slice(start, start + 16);
        expect(text.includes(piece), `audit_events contains part of a secret: ${piece}`).toBe(false);
      }
    }
    // Codes are 6 digits, which random ids and times may contain by chance: look only elsewhere.
    const withoutIdsAndTimes = JSON.stringify(rows.map(({ id: _id, user_id: _user, actor_id: _actor, created_at: _created, ...rest }) => rest));
    for (const code of codes) expect(withoutIdsAndTimes).not.toContain(code);
    // Nothing but the documented columns.
    expect(Object.keys(rows[0]).sort()).toEqual(['actor_id', 'created_at', 'detail', 'id', 'ip', 'type', 'user_agent', 'user_id']);
  });
});

describe('user:create command', () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const script = join(root, 'dist/src/cli/create-user.js');
  const operatorPassword = secret('a long operator passphrase');
  let dataDir: string;

  beforeAll(async () => {
    // Serialized with the other tests that build, so dist/ is never rewritten under a running process.
    await build();
    dataDir = await mkdtemp(join(tmpdir(), 'user-create-cli-'));
  }, 180_000);
  afterAll(async () => {
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  /** Runs the compiled command on the embedded database in `dataDir`. */
  function createUser(args: string[], input = '') {
    const result = spawnSync(process.execPath, [script, ...args], {
      cwd: root,
      env: { ...process.env, DATABASE_URL: '', DATA_DIR: dataDir, NODE_ENV: 'test', BCRYPT_COST: '4' },
      input,
      encoding: 'utf8',
      timeout: 120_000,
    });
    return { status: result.status, stdout: result.stdout, stderr: result.stderr, output: `${result.stdout}${result.stderr}` };
  }

  it('creates an ADMIN with --password', () => {
    const result = createUser(['--email', 'ops@example.test', '--role', 'ADMIN', '--password', operatorPassword]);
    expect(result.status, result.output).toBe(0);
    expect(result.stdout).toMatch(/created ADMIN ops <ops@example\.test>/);
    expect(result.output).not.toContain(operatorPassword);
  }, 120_000);

  it('refuses the same email again with exit code 1 and a conflict message', () => {
    const result = createUser(['--email', 'OPS@example.test', '--username', 'ops2', '--role', 'ADMIN', '--password', 'a different long passphrase']);
    expect(result.status, result.output).toBe(1);
    expect(result.stderr).toMatch(/not created/);
    expect(result.stderr).toMatch(/already (exists|taken)|conflict/i);
    expect(result.stderr).toMatch(/email/i);
  }, 120_000);

  it('refuses a too-short password read from standard input, naming the rule', () => {
    const result = createUser(['--email', 'short@example.test'], 'too short\n');
    expect(result.status, result.output).toBe(1);
    expect(result.stderr).toMatch(/password/i);
    expect(result.stderr).toMatch(/at least 12 characters/);
    expect(result.output).not.toContain('too short');
  }, 120_000);

  it('creates a USER by default, with the password read from standard input', () => {
    const result = createUser(['--email', 'reader@example.test'], `${secret('a long passphrase from stdin')}\n`);
    expect(result.status, result.output).toBe(0);
    expect(result.stdout).toMatch(/created USER reader <reader@example\.test>/);
  }, 120_000);

  it('refuses an unknown role with usage help', () => {
    const result = createUser(['--email', 'odd@example.test', '--role', 'ROOT', '--password', 'a long passphrase for odd']);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(/usage/i);
  }, 120_000);

  // The server is started on the CLI's embedded DATA_DIR (DATABASE_URL emptied), so this part runs
  // in both suites; startTestServer only creates an unused database when DATABASE_URL is set.
  it('made accounts a server on the same DATA_DIR signs in, with the creation audited', async () => {
    const cliServer = await startTestServer({ DATA_DIR: dataDir, DATABASE_URL: '' });
    try {
      const response = await cliServer.graphql(LOGIN, { input: { identifier: 'ops', password: operatorPassword } });
      expect(response.errors).toBeUndefined();
      expect(response.data?.login.user).toMatchObject({ email: 'ops@example.test', username: 'ops', role: 'ADMIN', active: true });
      const token = response.data!.login.accessToken as string;

      const reader = await cliServer.graphql(LOGIN, { input: { identifier: 'reader@example.test', password: 'a long passphrase from stdin' } });
      expect(reader.data?.login.user.role).toBe('USER');
      const refused = await cliServer.graphql(LOGIN, { input: { identifier: 'short@example.test', password: 'too short' } });
      expect(errorCode(refused)).toBe('UNAUTHENTICATED');

      const events = await cliServer.graphql<{ auditEvents: AuditPage }>(AUDIT_EVENTS, { first: 100, userId: response.data!.login.user.id }, { token });
      expect(events.errors).toBeUndefined();
      const created = events.data!.auditEvents.edges.map((edge) => edge.node).filter((event) => event.type === 'USER_CREATED');
      expect(created).toHaveLength(1);
      expect(created[0]).toMatchObject({ userId: response.data!.login.user.id, actorId: null, ip: null });
      expect(created[0].userAgent).toMatch(/user:create/);
      expect(JSON.stringify(await cliServer.sql('select * from audit_events'))).not.toContain(operatorPassword);
    } finally {
      await cliServer.stop();
    }
  }, 120_000);
});

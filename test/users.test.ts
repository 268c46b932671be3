import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DELETE_ME, DELETE_USER, FORGOT_PASSWORD, LOGIN, REFRESH, registerAccount, RESET_PASSWORD, type SignedInAccount } from './support/accounts.js';
import { type CallOptions, errorCode, errorField, type GraphQLResponse, startTestServer, type TestServer } from './support/server.js';
import { resetTokenOf, startSmtpServer, type TestSmtpServer, verificationCodeOf } from './support/smtp.js';

// The start-up admin. (The password must pass the policy, so it may not contain "admin" or "root":
// the username and the email's local part.)
const ADMIN_USERNAME = 'admin';
const ADMIN_EMAIL = 'root@example.test';
const ADMIN_PASSWORD = 'quiet lantern over the fjord 7';
// These tests sign in and register far more often than the per-IP limits allow; limits are not their subject.
const ADMIN_ENV = { ADMIN_EMAIL, ADMIN_PASSWORD, RATE_LIMIT_SCALE: '0' };

const USER_FIELDS = 'id email username firstName lastName role active emailVerified';
const ME_FULL = `{ me { ${USER_FIELDS} } }`;
const UPDATE_ME = `mutation UpdateMe($input: UpdateProfileInput!) { updateMe(input: $input) { ${USER_FIELDS} } }`;
const USER_BY_ID = `query User($id: ID!) { user(id: $id) { ${USER_FIELDS} } }`;
const USER_BY_USERNAME = `query UserByUsername($username: String!) { userByUsername(username: $username) { ${USER_FIELDS} } }`;
const USERS = 'query Users($filter: UserFilter) { users(first: 100, filter: $filter) { totalCount edges { node { id username role } } } }';
const CREATE_USER = `mutation CreateUser($input: CreateUserInput!) { createUser(input: $input) { ${USER_FIELDS} } }`;
const UPDATE_USER = `mutation UpdateUser($id: ID!, $input: UpdateUserInput!) { updateUser(id: $id, input: $input) { ${USER_FIELDS} } }`;
const VERIFY_EMAIL = 'mutation Verify($code: String!) { verifyEmail(code: $code) { id email emailVerified } }';
const AUDIT_EVENTS = 'query Audit($userId: ID) { auditEvents(first: 100, userId: $userId) { totalCount edges { node { id type userId actorId } } } }';

const LAST_ADMIN = /last active admin/i;

interface UserView {
  id: string;
  email: string;
  username: string;
  firstName: string | null;
  lastName: string | null;
  role: string;
  active: boolean;
  emailVerified: boolean;
}

/** Someone signed in: their tokens, user and password. */
interface Signed {
  accessToken: string;
  refreshToken: string;
  user: { id: string; email: string; username: string; role: string };
  password: string;
}

function suffix(): string {
  return randomBytes(4).toString('hex');
}

function login(target: TestServer, identifier: string, password: string, options?: CallOptions) {
  return target.graphql(LOGIN, { input: { identifier, password } }, options);
}

/** Signs in and returns the tokens; fails the test when sign-in fails. */
async function signIn(target: TestServer, identifier: string, password: string): Promise<Signed> {
  const response = await login(target, identifier, password);
  if (!response.data?.login) throw new Error(`login of ${identifier} failed: ${JSON.stringify(response.errors)}`);
  return { ...response.data.login, password };
}

/** The start-up admin, signed in. */
function signInAsRoot(target: TestServer): Promise<Signed> {
  return signIn(target, ADMIN_USERNAME, ADMIN_PASSWORD);
}

/** Valid createUser fields, unique per call. */
function newUserInput(overrides: Record<string, unknown> = {}) {
  const tag = suffix();
  return { email: `made-${tag}@example.com`, username: `made_${tag}`, password: `a long passphrase ${tag}`, ...overrides };
}

/** Creates an account through createUser as `admin` and signs it in; fails the test when either fails. */
async function createAndSignIn(target: TestServer, admin: Signed, overrides: Record<string, unknown> = {}): Promise<Signed> {
  const input = newUserInput(overrides);
  const created = await target.graphql(CREATE_USER, { input }, { token: admin.accessToken });
  if (!created.data?.createUser) throw new Error(`createUser failed: ${JSON.stringify(created.errors)}`);
  return signIn(target, input.email, input.password);
}

function updateMe(target: TestServer, token: string | undefined, input: Record<string, unknown>) {
  return target.graphql(UPDATE_ME, { input }, { token });
}

function updateUser(target: TestServer, token: string | undefined, id: string, input: Record<string, unknown>) {
  return target.graphql(UPDATE_USER, { id, input }, { token });
}

function refresh(target: TestServer, refreshToken: string) {
  return target.graphql(REFRESH, { refreshToken });
}

/** The users row as stored (everything an operation could change). */
async function userRow(target: TestServer, id: string): Promise<Record<string, unknown> | undefined> {
  const [row] = await target.sql(
    'select id, email, username, first_name, last_name, password_hash, role, active, email_verified_at, updated_at from users where id = ?',
    [id],
  );
  return row;
}

async function countOf(target: TestServer, query: string, params: unknown[] = []): Promise<number> {
  const [row] = await target.sql<{ count: string | number }>(query, params);
  return Number(row.count);
}

function activeAdminCount(target: TestServer): Promise<number> {
  return countOf(target, "select count(*) as count from users where role = 'ADMIN' and active");
}

function expectError(response: GraphQLResponse, code: string, field?: string): void {
  // No result: `data` is null, or (for a nullable field such as `user`) holds only nulls.
  expect(Object.values(response.data ?? {}).filter((value) => value !== null), JSON.stringify(response.errors)).toEqual([]);
  expect(errorCode(response), JSON.stringify(response.errors)).toBe(code);
  if (field !== undefined) expect(errorField(response)).toBe(field);
}

/** Asserts `token` is signed in as `userId`. */
async function expectSignedIn(target: TestServer, token: string, userId: string): Promise<void> {
  const response = await target.graphql(ME_FULL, {}, { token });
  expect(response.errors).toBeUndefined();
  expect(response.data?.me.id).toBe(userId);
}

/** Asserts `me` refuses `token` with UNAUTHENTICATED. */
async function expectSignedOut(target: TestServer, token: string): Promise<void> {
  expectError(await target.graphql(ME_FULL, {}, { token }), 'UNAUTHENTICATED');
}

async function expectRefreshRefused(target: TestServer, refreshToken: string): Promise<void> {
  expectError(await refresh(target, refreshToken), 'UNAUTHENTICATED');
}

/** The message login gives for a wrong password (the generic credentials message). */
async function wrongPasswordMessage(target: TestServer, identifier: string): Promise<string> {
  const response = await login(target, identifier, `wrong password ${suffix()}`);
  expectError(response, 'UNAUTHENTICATED');
  return response.errors![0].message;
}

/** Asserts `token` (an admin's) can still call an admin-only operation. */
async function expectAdminAccess(target: TestServer, token: string): Promise<void> {
  const response = await target.graphql(USERS, {}, { token });
  expect(response.errors).toBeUndefined();
  expect(response.data?.users.totalCount).toBeGreaterThan(0);
}

// =============================================================================================
// Main server: one start-up admin plus whatever accounts the tests create
// =============================================================================================

describe('with a start-up admin', () => {
  let server: TestServer;
  let smtp: TestSmtpServer;
  let root: Signed;
  beforeAll(async () => {
    smtp = await startSmtpServer();
    server = await startTestServer({ ...ADMIN_ENV, SMTP_URL: smtp.url });
    root = await signInAsRoot(server);
  });
  afterAll(async () => {
    await server?.stop();
    await smtp?.stop();
  });

  // -------------------------------------------------------------------------------------------
  describe('updateMe', () => {
    it('changes username, first and last name, returns the user, and me shows the change', async () => {
      const account = await registerAccount(server);
      const username = `Renamed_${suffix()}`;
      const response = await updateMe(server, account.accessToken, { username, firstName: '  Ada ', lastName: 'Lovelace' });
      expect(response.errors).toBeUndefined();
      expect(response.data?.updateMe).toMatchObject({ id: account.user.id, username, firstName: 'Ada', lastName: 'Lovelace', email: account.user.email, role: 'USER' });

      const me = await server.graphql(ME_FULL, {}, { token: account.accessToken });
      expect(me.data?.me).toMatchObject({ id: account.user.id, username, firstName: 'Ada', lastName: 'Lovelace' });
      // The new username signs in.
      expect((await login(server, username.toLowerCase(), account.password)).data?.login.user.id).toBe(account.user.id);
    });

    it('clears a name sent as an empty string to null and leaves omitted fields as they were', async () => {
      const account = await registerAccount(server, { firstName: 'Grace', lastName: 'Hopper' });
      const response = await updateMe(server, account.accessToken, { firstName: '' });
      expect(response.errors).toBeUndefined();
      expect(response.data?.updateMe).toMatchObject({ firstName: null, lastName: 'Hopper', username: account.user.username });

      const onlyLast = await updateMe(server, account.accessToken, { lastName: 'Brewster' });
      expect(onlyLast.data?.updateMe).toMatchObject({ firstName: null, lastName: 'Brewster', username: account.user.username });

      const me = await server.graphql(ME_FULL, {}, { token: account.accessToken });
      expect(me.data?.me).toMatchObject({ firstName: null, lastName: 'Brewster', username: account.user.username });
    });

    it.each([
      ['role', { role: 'ADMIN' }],
      ['active', { active: false }],
      ['email', { email: 'stolen@example.com' }],
      ['an unknown field', { isAdmin: true }],
      ['a field next to a valid one', { firstName: 'Mallory', role: 'ADMIN' }],
    ])('refuses %s in the input at the schema with BAD_USER_INPUT and changes nothing', async (_what, input) => {
      const account = await registerAccount(server, { firstName: 'Original' });
      const before = await userRow(server, account.user.id);
      const response = await updateMe(server, account.accessToken, input);
      expectError(response, 'BAD_USER_INPUT');
      expect(await userRow(server, account.user.id)).toEqual(before);
      const me = await server.graphql(ME_FULL, {}, { token: account.accessToken });
      expect(me.data?.me).toMatchObject({ role: 'USER', active: true, email: account.user.email, firstName: 'Original' });
    });

    it('refuses role written inline in the query (not as a variable) with BAD_USER_INPUT', async () => {
      const account = await registerAccount(server);
      const before = await userRow(server, account.user.id);
      const response = await server.graphql(`mutation { updateMe(input: { firstName: "X", role: ADMIN, active: true }) { id role } }`, {}, { token: account.accessToken });
      expectError(response, 'BAD_USER_INPUT');
      expect(await userRow(server, account.user.id)).toEqual(before);
    });

    it('refuses a username taken by someone else in another letter case with CONFLICT on the username field', async () => {
      const owner = await registerAccount(server, { username: `Owner_${suffix()}` });
      const other = await registerAccount(server);
      const response = await updateMe(server, other.accessToken, { username: owner.user.username.toUpperCase() });
      expectError(response, 'CONFLICT', 'username');
      const me = await server.graphql(ME_FULL, {}, { token: other.accessToken });
      expect(me.data?.me.username).toBe(other.user.username);
    });

    it('gives one free username to only one of two users sending 10 concurrent updates; the other gets CONFLICT', async () => {
      const first = await registerAccount(server);
      const second = await registerAccount(server);
      const wanted = `Wanted_${suffix()}`;
      const callers = Array.from({ length: 10 }, (_, index) => (index % 2 === 0 ? first : second));
      const responses = await Promise.all(callers.map((caller) => updateMe(server, caller.accessToken, { username: wanted })));

      expect(responses.map(errorCode)).not.toContain('INTERNAL_SERVER_ERROR');
      const winners = new Set(responses.flatMap((response, index) => (response.data?.updateMe ? [callers[index].user.id] : [])));
      expect(winners.size).toBe(1);
      const [winnerId] = winners;
      const loser = winnerId === first.user.id ? second : first;
      for (const [index, response] of responses.entries()) {
        // A user renaming itself to the name it already holds is no conflict; the other user's calls all are.
        if (callers[index] === loser) expectError(response, 'CONFLICT', 'username');
        else expect(response.data?.updateMe.username).toBe(wanted);
      }
      const rows = await server.sql<{ id: string }>('select id from users where lower(username) = lower(?)', [wanted]);
      expect(rows.map((row) => row.id)).toEqual([winnerId]);
      const loserMe = await server.graphql(ME_FULL, {}, { token: loser.accessToken });
      expect(loserMe.data?.me.username).toBe(loser.user.username);
    });

    it('gives one free username to exactly one of 10 users renaming themselves at once; the other 9 get CONFLICT', async () => {
      const accounts = await Promise.all(Array.from({ length: 10 }, () => registerAccount(server)));
      const wanted = `solo_${suffix()}`;
      const responses = await Promise.all(
        accounts.map((account, index) => updateMe(server, account.accessToken, { username: index % 2 ? wanted.toUpperCase() : wanted })),
      );
      expect(responses.map(errorCode)).not.toContain('INTERNAL_SERVER_ERROR');
      const winners = responses.flatMap((response, index) => (response.data?.updateMe ? [index] : []));
      expect(winners).toHaveLength(1);
      for (const [index, response] of responses.entries()) if (index !== winners[0]) expectError(response, 'CONFLICT', 'username');
      expect(await countOf(server, 'select count(*) as count from users where lower(username) = lower(?)', [wanted])).toBe(1);
    });

    it('never loses a change when a user edits first and last name at once while an admin renames them (10 rounds)', async () => {
      const account = await registerAccount(server);
      const secondDevice = await signIn(server, account.user.email, account.password);
      for (let round = 0; round < 10; round += 1) {
        const tag = `${suffix()}${round}`;
        const firstName = `First${tag}`;
        const lastName = `Last${tag}`;
        const username = `renamed_${tag}`;
        // Odd rounds: both profile edits with the same token; even rounds: from two devices.
        const lastNameToken = round % 2 === 1 ? account.accessToken : secondDevice.accessToken;
        const responses = await Promise.all([
          updateMe(server, account.accessToken, { firstName }),
          updateMe(server, lastNameToken, { lastName }),
          updateUser(server, root.accessToken, account.user.id, { username }),
        ]);
        for (const response of responses) expect(response.errors, `round ${round}`).toBeUndefined();

        const me = await server.graphql(ME_FULL, {}, { token: account.accessToken });
        expect(me.data?.me, `round ${round}`).toMatchObject({ firstName, lastName, username });
        const row = await userRow(server, account.user.id);
        expect(row, `round ${round}`).toMatchObject({ first_name: firstName, last_name: lastName, username });
      }
    });

    it('refuses a caller without a token with UNAUTHENTICATED', async () => {
      expectError(await updateMe(server, undefined, { firstName: 'Nobody' }), 'UNAUTHENTICATED');
    });
  });

  // -------------------------------------------------------------------------------------------
  describe('deleteMe', () => {
    it('refuses a wrong password with BAD_USER_INPUT on the password field and keeps the account', async () => {
      const account = await registerAccount(server);
      const before = await userRow(server, account.user.id);
      const response = await server.graphql(DELETE_ME, { password: `${account.password} nope` }, { token: account.accessToken });
      expectError(response, 'BAD_USER_INPUT', 'password');
      expect(await userRow(server, account.user.id)).toEqual(before);
      await expectSignedIn(server, account.accessToken, account.user.id);
      expect((await login(server, account.user.email, account.password)).data?.login.user.id).toBe(account.user.id);
    });

    it('deletes the account with its sessions and tokens, ends every access token, and keeps its audit trail', async () => {
      const account = await registerAccount(server);
      const secondDevice = await signIn(server, account.user.username, account.password);
      const generic = await wrongPasswordMessage(server, account.user.email);
      expect(await countOf(server, 'select count(*) as count from sessions where user_id = ?', [account.user.id])).toBeGreaterThanOrEqual(2);
      // register queued an email verification code.
      expect(await countOf(server, 'select count(*) as count from one_time_tokens where user_id = ?', [account.user.id])).toBeGreaterThanOrEqual(1);

      const response = await server.graphql(DELETE_ME, { password: account.password }, { token: account.accessToken });
      expect(response.errors).toBeUndefined();
      expect(response.data?.deleteMe).toBe(true);

      await expectSignedOut(server, account.accessToken);
      await expectSignedOut(server, secondDevice.accessToken);
      await expectRefreshRefused(server, account.refreshToken);
      await expectRefreshRefused(server, secondDevice.refreshToken);
      const relogin = await login(server, account.user.email, account.password);
      expectError(relogin, 'UNAUTHENTICATED');
      expect(relogin.errors?.[0].message).toBe(generic);

      expect(await userRow(server, account.user.id)).toBeUndefined();
      expect(await countOf(server, 'select count(*) as count from sessions where user_id = ?', [account.user.id])).toBe(0);
      expect(await countOf(server, 'select count(*) as count from one_time_tokens where user_id = ?', [account.user.id])).toBe(0);
      const events = await server.sql<{ type: string }>('select type from audit_events where user_id = ?', [account.user.id]);
      expect(events.map((event) => event.type)).toEqual(expect.arrayContaining(['LOGIN_SUCCEEDED', 'USER_DELETED']));

      // An admin still finds the trail of the deleted account.
      const audit = await server.graphql(AUDIT_EVENTS, { userId: account.user.id }, { token: root.accessToken });
      expect(audit.errors).toBeUndefined();
      expect(audit.data?.auditEvents.edges.map((edge: { node: { type: string } }) => edge.node.type)).toContain('USER_DELETED');
    });

    it('refuses a caller without a token with UNAUTHENTICATED', async () => {
      expectError(await server.graphql(DELETE_ME, { password: 'whatever it is 123' }), 'UNAUTHENTICATED');
    });
  });

  // -------------------------------------------------------------------------------------------
  describe('user and userByUsername', () => {
    it('show a user their own account, by id and by username in any letter case', async () => {
      const account = await registerAccount(server, { username: `Self_${suffix()}` });
      const byId = await server.graphql(USER_BY_ID, { id: account.user.id }, { token: account.accessToken });
      expect(byId.errors).toBeUndefined();
      expect(byId.data?.user).toMatchObject({ id: account.user.id, username: account.user.username });
      const byName = await server.graphql(USER_BY_USERNAME, { username: account.user.username.toUpperCase() }, { token: account.accessToken });
      expect(byName.errors).toBeUndefined();
      expect(byName.data?.userByUsername).toMatchObject({ id: account.user.id });
    });

    it('refuse a non-admin another existing user with FORBIDDEN', async () => {
      const caller = await registerAccount(server);
      const other = await registerAccount(server);
      expectError(await server.graphql(USER_BY_ID, { id: other.user.id }, { token: caller.accessToken }), 'FORBIDDEN');
      expectError(await server.graphql(USER_BY_USERNAME, { username: other.user.username }, { token: caller.accessToken }), 'FORBIDDEN');
    });

    it('answer a non-admin the same FORBIDDEN for an account that does not exist as for one that does', async () => {
      const caller = await registerAccount(server);
      const other = await registerAccount(server);
      const options = { token: caller.accessToken };
      const responses = {
        existingId: await server.graphql(USER_BY_ID, { id: other.user.id }, options),
        randomId: await server.graphql(USER_BY_ID, { id: randomUUID() }, options),
        notAUuid: await server.graphql(USER_BY_ID, { id: 'not-a-uuid' }, options),
        existingName: await server.graphql(USER_BY_USERNAME, { username: other.user.username }, options),
        unknownName: await server.graphql(USER_BY_USERNAME, { username: `nobody_${suffix()}` }, options),
      };
      const shapes = Object.fromEntries(
        Object.entries(responses).map(([name, response]) => [
          name,
          { result: Object.values(response.data ?? {})[0] ?? null, errors: response.errors?.length, message: response.errors?.[0].message, extensions: response.errors?.[0].extensions },
        ]),
      );
      expect(shapes.existingId).toMatchObject({ result: null, errors: 1, extensions: { code: 'FORBIDDEN' } });
      for (const [name, shape] of Object.entries(shapes)) expect(shape, name).toEqual(shapes.existingId);
    });

    it('show an admin any user by id and by username', async () => {
      const other = await registerAccount(server);
      const byId = await server.graphql(USER_BY_ID, { id: other.user.id }, { token: root.accessToken });
      expect(byId.errors).toBeUndefined();
      expect(byId.data?.user).toMatchObject({ id: other.user.id, email: other.user.email, role: 'USER' });
      const byName = await server.graphql(USER_BY_USERNAME, { username: other.user.username.toUpperCase() }, { token: root.accessToken });
      expect(byName.errors).toBeUndefined();
      expect(byName.data?.userByUsername).toMatchObject({ id: other.user.id });
    });

    it('answer an admin null for an unknown id, an id that is not a UUID and an unknown username', async () => {
      for (const id of [randomUUID(), 'not-a-uuid']) {
        const response = await server.graphql(USER_BY_ID, { id }, { token: root.accessToken });
        expect(response.errors, id).toBeUndefined();
        expect(response.data?.user, id).toBeNull();
      }
      const byName = await server.graphql(USER_BY_USERNAME, { username: `nobody_${suffix()}` }, { token: root.accessToken });
      expect(byName.errors).toBeUndefined();
      expect(byName.data?.userByUsername).toBeNull();
    });
  });

  // -------------------------------------------------------------------------------------------
  describe('what a non-admin may not do to someone else', () => {
    let attacker: SignedInAccount;
    let victim: SignedInAccount;
    let victimBefore: Record<string, unknown> | undefined;
    beforeAll(async () => {
      attacker = await registerAccount(server);
      victim = await registerAccount(server);
      victimBefore = await userRow(server, victim.user.id);
    });

    const operations: Array<[string, string, () => Record<string, unknown>]> = [
      ['user(id) of the other user', USER_BY_ID, () => ({ id: victim.user.id })],
      ['userByUsername of the other user', USER_BY_USERNAME, () => ({ username: victim.user.username })],
      ['users', USERS, () => ({})],
      ['createUser', CREATE_USER, () => ({ input: newUserInput({ role: 'ADMIN' }) })],
      ['updateUser of the other user', UPDATE_USER, () => ({ id: victim.user.id, input: { email: `owned-${suffix()}@example.com`, role: 'ADMIN', active: false, firstName: 'Owned' } })],
      ['updateUser of themselves (promotion to ADMIN)', UPDATE_USER, () => ({ id: attacker.user.id, input: { role: 'ADMIN' } })],
      ['deleteUser of the other user', DELETE_USER, () => ({ id: victim.user.id })],
      ['auditEvents of the other user', AUDIT_EVENTS, () => ({ userId: victim.user.id })],
      ['auditEvents of everyone', AUDIT_EVENTS, () => ({})],
    ];

    it.each(operations)('%s is FORBIDDEN and leaves both accounts unchanged', async (_name, query, variables) => {
      const vars = variables();
      const attackerBefore = await userRow(server, attacker.user.id);
      const response = await server.graphql(query, vars, { token: attacker.accessToken });
      expectError(response, 'FORBIDDEN');
      expect(await userRow(server, victim.user.id)).toEqual(victimBefore);
      expect(await userRow(server, attacker.user.id)).toEqual(attackerBefore);
      await expectSignedIn(server, victim.accessToken, victim.user.id);
      const input = vars.input as { email?: string } | undefined;
      if (query === CREATE_USER) expect(await countOf(server, 'select count(*) as count from users where email = ?', [input!.email])).toBe(0);
    });

    it.each([
      ...operations,
      ['me', ME_FULL, () => ({})],
      ['updateMe', UPDATE_ME, () => ({ input: { firstName: 'Anon' } })],
      ['deleteMe', DELETE_ME, () => ({ password: 'some password 123' })],
    ] as typeof operations)('%s without a token is UNAUTHENTICATED and changes nothing', async (_name, query, variables) => {
      const vars = variables();
      const response = await server.graphql(query, vars);
      expectError(response, 'UNAUTHENTICATED');
      expect(await userRow(server, victim.user.id)).toEqual(victimBefore);
    });

    it.each(operations)('%s with a garbage token is UNAUTHENTICATED', async (_name, query, variables) => {
      const response = await server.graphql(query, variables(), { token: 'not.a.token' });
      expectError(response, 'UNAUTHENTICATED');
      expect(await userRow(server, victim.user.id)).toEqual(victimBefore);
    });
  });

  // -------------------------------------------------------------------------------------------
  describe('createUser', () => {
    it('returns the new user with the role and active flag given, and it can sign in', async () => {
      const input = newUserInput({ firstName: 'Made', lastName: 'ByAdmin', role: 'ADMIN', email: `  Made-${suffix()}@Example.COM ` });
      const response = await server.graphql(CREATE_USER, { input }, { token: root.accessToken });
      expect(response.errors).toBeUndefined();
      const created = response.data?.createUser as UserView;
      expect(created).toMatchObject({ email: input.email.trim().toLowerCase(), username: input.username, firstName: 'Made', lastName: 'ByAdmin', role: 'ADMIN', active: true });
      const signed = await signIn(server, input.email.trim(), input.password);
      expect(signed.user).toMatchObject({ id: created.id, role: 'ADMIN' });
      await expectAdminAccess(server, signed.accessToken);
    });

    it('defaults to an active USER', async () => {
      const input = newUserInput();
      const response = await server.graphql(CREATE_USER, { input }, { token: root.accessToken });
      expect(response.errors).toBeUndefined();
      expect(response.data?.createUser).toMatchObject({ role: 'USER', active: true, firstName: null, lastName: null });
      const signed = await signIn(server, input.username, input.password);
      expectError(await server.graphql(USERS, {}, { token: signed.accessToken }), 'FORBIDDEN');
    });

    it('creates an inactive account that cannot sign in (generic credentials error)', async () => {
      const input = newUserInput({ active: false });
      const response = await server.graphql(CREATE_USER, { input }, { token: root.accessToken });
      expect(response.errors).toBeUndefined();
      expect(response.data?.createUser).toMatchObject({ active: false, role: 'USER' });
      const generic = await wrongPasswordMessage(server, input.email);
      const attempt = await login(server, input.email, input.password);
      expectError(attempt, 'UNAUTHENTICATED');
      expect(attempt.errors?.[0].message).toBe(generic);
    });

    it.each([
      ['too short', () => 'short pass'],
      ['common', () => 'password1234'],
      ['a common password padded with digits', () => '123456password123'],
      ['containing the username', (username: string) => `my name is ${username} ok`],
    ])('refuses a %s password with BAD_USER_INPUT on the password field and creates nothing', async (_what, password) => {
      const input = newUserInput();
      input.password = password(input.username);
      const response = await server.graphql(CREATE_USER, { input }, { token: root.accessToken });
      expectError(response, 'BAD_USER_INPUT', 'password');
      expect(await countOf(server, 'select count(*) as count from users where email = ?', [input.email])).toBe(0);
    });

    it('refuses an email already taken (in another letter case) with CONFLICT on the email field', async () => {
      const existing = await registerAccount(server);
      const response = await server.graphql(CREATE_USER, { input: newUserInput({ email: existing.user.email.toUpperCase() }) }, { token: root.accessToken });
      expectError(response, 'CONFLICT', 'email');
      expect(await countOf(server, 'select count(*) as count from users where email = ?', [existing.user.email])).toBe(1);
    });

    it('refuses a username already taken (in another letter case) with CONFLICT on the username field', async () => {
      const existing = await registerAccount(server);
      const response = await server.graphql(CREATE_USER, { input: newUserInput({ username: existing.user.username.toUpperCase() }) }, { token: root.accessToken });
      expectError(response, 'CONFLICT', 'username');
    });
  });

  // -------------------------------------------------------------------------------------------
  describe('updateUser', () => {
    it('changes the email (trimmed, lower-cased), makes it unverified and ends the sessions', async () => {
      const account = await registerAccount(server);
      await server.sql('update users set email_verified_at = now() where id = ?', [account.user.id]);
      expect((await server.graphql(ME_FULL, {}, { token: account.accessToken })).data?.me.emailVerified).toBe(true);

      const newEmail = `Changed-${suffix()}@Example.TEST`;
      const response = await updateUser(server, root.accessToken, account.user.id, { email: `  ${newEmail} ` });
      expect(response.errors).toBeUndefined();
      expect(response.data?.updateUser).toMatchObject({ id: account.user.id, email: newEmail.toLowerCase(), emailVerified: false });
      // As a confirmed change of the address ends the other sessions, an admin's ends them all.
      expect((await server.graphql(ME_FULL, {}, { token: account.accessToken })).errors?.[0].extensions?.reason).toBe('SESSION_ENDED');
      const signedIn = await login(server, newEmail, account.password);
      expect(signedIn.data?.login.user.id).toBe(account.user.id);
      expect((await server.graphql(ME_FULL, {}, { token: signedIn.data!.login.accessToken })).data?.me).toMatchObject({ email: newEmail.toLowerCase(), emailVerified: false });
      expectError(await login(server, account.user.email, account.password), 'UNAUTHENTICATED');
    });

    it('tells the old address, with a "this wasn\'t me" link that cannot take the address back, and lets it go', async () => {
      const account = await registerAccount(server);
      const newEmail = `admin-moved-${suffix()}@example.test`;
      expect((await updateUser(server, root.accessToken, account.user.id, { email: newEmail })).errors).toBeUndefined();
      const notice = await smtp.waitFor((message) => message.to === account.user.email && message.subject === 'Your email address was changed');
      expect(notice.text).toMatch(/\/lockdown\?token=[A-Za-z0-9_-]{43}/);
      // The admin's change stands: no link gives the account back to the replaced address, so that
      // address is nobody's to keep (test/lockdown.test.ts: a hijacker's links after a correction).
      const other = await registerAccount(server);
      expect((await updateUser(server, root.accessToken, other.user.id, { email: account.user.email })).errors).toBeUndefined();
    });

    it('makes a verification code mailed to the old address useless for the new one', async () => {
      const account = await registerAccount(server);
      const mail = await smtp.waitFor((message) => message.to.includes(account.user.email));
      const oldCode = verificationCodeOf(mail);
      const newEmail = `moved-${suffix()}@example.test`;
      expect((await updateUser(server, root.accessToken, account.user.id, { email: newEmail })).errors).toBeUndefined();

      const token = (await login(server, newEmail, account.password)).data!.login.accessToken as string;
      const response = await server.graphql(VERIFY_EMAIL, { code: oldCode }, { token });
      expectError(response, 'BAD_USER_INPUT', 'code');
      const me = await server.graphql(ME_FULL, {}, { token });
      expect(me.data?.me).toMatchObject({ email: newEmail, emailVerified: false });
    });

    it('makes a password-reset link mailed to the old address useless', async () => {
      const account = await registerAccount(server);
      expect((await server.graphql(FORGOT_PASSWORD, { input: { identifier: account.user.email } })).data?.forgotPassword).toBe(true);
      const mail = await smtp.waitFor((message) => message.to.includes(account.user.email) && /reset-password\?token=/.test(message.text));
      const resetToken = resetTokenOf(mail);
      const newEmail = `moved-${suffix()}@example.test`;
      expect((await updateUser(server, root.accessToken, account.user.id, { email: newEmail })).errors).toBeUndefined();

      const newPassword = `taken over passphrase ${suffix()}`;
      const response = await server.graphql(RESET_PASSWORD, { input: { token: resetToken, newPassword } });
      expectError(response, 'BAD_USER_INPUT');
      expectError(await login(server, newEmail, newPassword), 'UNAUTHENTICATED');
      expect((await login(server, newEmail, account.password)).data?.login.user.id).toBe(account.user.id);
    });

    it('changes username, names, role and active together, and keeps fields not sent', async () => {
      const account = await registerAccount(server, { firstName: 'Keep', lastName: 'Me' });
      const username = `Admin_Set_${suffix()}`;
      const response = await updateUser(server, root.accessToken, account.user.id, { username, firstName: 'New', role: 'ADMIN' });
      expect(response.errors).toBeUndefined();
      expect(response.data?.updateUser).toMatchObject({ username, firstName: 'New', lastName: 'Me', role: 'ADMIN', active: true, email: account.user.email });

      const cleared = await updateUser(server, root.accessToken, account.user.id, { lastName: '', role: 'USER', active: false });
      expect(cleared.errors).toBeUndefined();
      expect(cleared.data?.updateUser).toMatchObject({ username, firstName: 'New', lastName: null, role: 'USER', active: false });
      expect(await userRow(server, account.user.id)).toMatchObject({ username, first_name: 'New', last_name: null, role: 'USER', active: false });
    });

    it('answers NOT_FOUND for an unknown id and for an id that is not a UUID', async () => {
      for (const id of [randomUUID(), 'not-a-uuid']) {
        expectError(await updateUser(server, root.accessToken, id, { firstName: 'Ghost' }), 'NOT_FOUND');
      }
    });

    it('refuses an email or username taken by another account with CONFLICT on that field and changes nothing', async () => {
      const owner = await registerAccount(server);
      const account = await registerAccount(server);
      const before = await userRow(server, account.user.id);
      expectError(await updateUser(server, root.accessToken, account.user.id, { email: owner.user.email.toUpperCase(), firstName: 'Half' }), 'CONFLICT', 'email');
      expectError(await updateUser(server, root.accessToken, account.user.id, { username: owner.user.username.toUpperCase() }), 'CONFLICT', 'username');
      expect(await userRow(server, account.user.id)).toEqual(before);
    });

    it('refuses invalid values with BAD_USER_INPUT on the field', async () => {
      const account = await registerAccount(server);
      expectError(await updateUser(server, root.accessToken, account.user.id, { email: 'not an email' }), 'BAD_USER_INPUT', 'email');
      expectError(await updateUser(server, root.accessToken, account.user.id, { username: 'x' }), 'BAD_USER_INPUT', 'username');
    });
  });

  // -------------------------------------------------------------------------------------------
  describe('roles are read from the database on every request', () => {
    it('a promoted user can list users, and after demotion the very next request with the same token is FORBIDDEN', async () => {
      const account = await registerAccount(server);
      expectError(await server.graphql(USERS, {}, { token: account.accessToken }), 'FORBIDDEN');

      expect((await updateUser(server, root.accessToken, account.user.id, { role: 'ADMIN' })).errors).toBeUndefined();
      await expectAdminAccess(server, account.accessToken);

      expect((await updateUser(server, root.accessToken, account.user.id, { role: 'USER' })).errors).toBeUndefined();
      expectError(await server.graphql(USERS, {}, { token: account.accessToken }), 'FORBIDDEN');
      expectError(await server.graphql(USER_BY_ID, { id: root.user.id }, { token: account.accessToken }), 'FORBIDDEN');
      // Still signed in: demotion is not deactivation.
      await expectSignedIn(server, account.accessToken, account.user.id);
    });
  });

  // -------------------------------------------------------------------------------------------
  describe('deactivation', () => {
    it('ends the user\'s sessions at once, makes login fail with the generic message, and reactivation allows login again', async () => {
      const account = await registerAccount(server);
      const secondDevice = await signIn(server, account.user.email, account.password);
      const generic = await wrongPasswordMessage(server, account.user.email);

      const response = await updateUser(server, root.accessToken, account.user.id, { active: false });
      expect(response.errors).toBeUndefined();
      expect(response.data?.updateUser.active).toBe(false);

      await expectSignedOut(server, account.accessToken);
      await expectSignedOut(server, secondDevice.accessToken);
      await expectRefreshRefused(server, account.refreshToken);
      await expectRefreshRefused(server, secondDevice.refreshToken);
      expect(await countOf(server, 'select count(*) as count from sessions where user_id = ? and revoked_at is null', [account.user.id])).toBe(0);
      for (const identifier of [account.user.email, account.user.username]) {
        const attempt = await login(server, identifier, account.password);
        expectError(attempt, 'UNAUTHENTICATED');
        expect(attempt.errors?.[0].message).toBe(generic);
      }

      const reactivated = await updateUser(server, root.accessToken, account.user.id, { active: true });
      expect(reactivated.errors).toBeUndefined();
      expect(reactivated.data?.updateUser.active).toBe(true);
      // The sessions that were ended stay ended.
      await expectSignedOut(server, account.accessToken);
      await expectRefreshRefused(server, secondDevice.refreshToken);
      const again = await signIn(server, account.user.email, account.password);
      await expectSignedIn(server, again.accessToken, account.user.id);
    });

    it('of an admin takes their admin powers away at once', async () => {
      const other = await createAndSignIn(server, root, { role: 'ADMIN' });
      await expectAdminAccess(server, other.accessToken);
      expect((await updateUser(server, root.accessToken, other.user.id, { active: false })).errors).toBeUndefined();
      expectError(await server.graphql(USERS, {}, { token: other.accessToken }), 'UNAUTHENTICATED');
    });
  });

  // -------------------------------------------------------------------------------------------
  describe('deleteUser', () => {
    it('returns true, ends the user\'s tokens and removes their rows, keeping the audit trail', async () => {
      const account = await registerAccount(server);
      const response = await server.graphql(DELETE_USER, { id: account.user.id }, { token: root.accessToken });
      expect(response.errors).toBeUndefined();
      expect(response.data?.deleteUser).toBe(true);

      await expectSignedOut(server, account.accessToken);
      await expectRefreshRefused(server, account.refreshToken);
      expectError(await login(server, account.user.email, account.password), 'UNAUTHENTICATED');
      expect(await userRow(server, account.user.id)).toBeUndefined();
      expect(await countOf(server, 'select count(*) as count from sessions where user_id = ?', [account.user.id])).toBe(0);
      expect(await countOf(server, 'select count(*) as count from one_time_tokens where user_id = ?', [account.user.id])).toBe(0);
      const events = await server.sql<{ type: string; actor_id: string | null }>('select type, actor_id from audit_events where user_id = ?', [account.user.id]);
      expect(events).toContainEqual({ type: 'USER_DELETED', actor_id: root.user.id });

      const byId = await server.graphql(USER_BY_ID, { id: account.user.id }, { token: root.accessToken });
      expect(byId.data?.user).toBeNull();
    });

    it('racing the user\'s own updateMe calls never makes them answer with an internal error (20 rounds)', async () => {
      // The edits that lose the race should answer like any request of a deleted account, not with a 500.
      for (let round = 0; round < 20; round += 1) {
        const account = await registerAccount(server);
        const [deletion, ...edits] = await Promise.all([
          server.graphql(DELETE_USER, { id: account.user.id }, { token: root.accessToken }),
          ...Array.from({ length: 4 }, (_, index) => updateMe(server, account.accessToken, { firstName: `Racer${round}x${index}` })),
        ]);
        expect(deletion.data?.deleteUser, `round ${round}`).toBe(true);
        for (const edit of edits) expect(errorCode(edit), `round ${round}: ${JSON.stringify(edit.errors)}`).not.toBe('INTERNAL_SERVER_ERROR');
        expect(await userRow(server, account.user.id)).toBeUndefined();
      }
    });

    it('answers NOT_FOUND for an unknown id, an id that is not a UUID, and a user deleted already', async () => {
      const account = await registerAccount(server);
      expect((await server.graphql(DELETE_USER, { id: account.user.id }, { token: root.accessToken })).data?.deleteUser).toBe(true);
      for (const id of [randomUUID(), 'not-a-uuid', account.user.id]) {
        expectError(await server.graphql(DELETE_USER, { id }, { token: root.accessToken }), 'NOT_FOUND');
      }
    });

    it('of an admin ends their admin token at once', async () => {
      const other = await createAndSignIn(server, root, { role: 'ADMIN' });
      expect((await server.graphql(DELETE_USER, { id: other.user.id }, { token: root.accessToken })).data?.deleteUser).toBe(true);
      expectError(await server.graphql(USERS, {}, { token: other.accessToken }), 'UNAUTHENTICATED');
    });
  });
});

// =============================================================================================
// A server whose only admin is the start-up one: the last-admin rule
// =============================================================================================

describe('the last active admin', () => {
  let server: TestServer;
  let root: Signed;
  let rootBefore: Record<string, unknown> | undefined;
  /** The one active admin between the race tests (whoever survived the last round). */
  let survivor: Signed;
  beforeAll(async () => {
    server = await startTestServer(ADMIN_ENV);
    root = await signInAsRoot(server);
    rootBefore = await userRow(server, root.user.id);
    survivor = root;
  });
  afterAll(() => server?.stop());

  /** Asserts the start-up admin is still an active ADMIN with a working admin token. */
  async function expectRootUnchanged(): Promise<void> {
    expect(await userRow(server, root.user.id)).toEqual(rootBefore);
    await expectAdminAccess(server, root.accessToken);
  }

  it('is the start-up admin alone', async () => {
    expect(await activeAdminCount(server)).toBe(1);
  });

  it('cannot demote themselves', async () => {
    const response = await updateUser(server, root.accessToken, root.user.id, { role: 'USER' });
    expectError(response, 'FORBIDDEN');
    expect(response.errors?.[0].message).toMatch(LAST_ADMIN);
    await expectRootUnchanged();
  });

  it('cannot deactivate themselves', async () => {
    const response = await updateUser(server, root.accessToken, root.user.id, { active: false });
    expectError(response, 'FORBIDDEN');
    expect(response.errors?.[0].message).toMatch(LAST_ADMIN);
    await expectRootUnchanged();
  });

  it('cannot demote and deactivate themselves in one update, nor sneak it in beside other changes', async () => {
    const response = await updateUser(server, root.accessToken, root.user.id, { role: 'USER', active: false, firstName: 'Sneaky' });
    expectError(response, 'FORBIDDEN');
    expect(response.errors?.[0].message).toMatch(LAST_ADMIN);
    await expectRootUnchanged();
  });

  it('cannot delete themselves with deleteUser', async () => {
    const response = await server.graphql(DELETE_USER, { id: root.user.id }, { token: root.accessToken });
    expectError(response, 'FORBIDDEN');
    expect(response.errors?.[0].message).toMatch(LAST_ADMIN);
    await expectRootUnchanged();
  });

  it('cannot delete themselves with deleteMe, even with the right password', async () => {
    const response = await server.graphql(DELETE_ME, { password: ADMIN_PASSWORD }, { token: root.accessToken });
    expectError(response, 'FORBIDDEN');
    expect(response.errors?.[0].message).toMatch(LAST_ADMIN);
    await expectRootUnchanged();
    expect(await countOf(server, 'select count(*) as count from sessions where user_id = ? and revoked_at is null', [root.user.id])).toBeGreaterThanOrEqual(1);
  });

  it('is still the last active one when the only other admin is deactivated', async () => {
    const inactive = await server.graphql(CREATE_USER, { input: newUserInput({ role: 'ADMIN', active: false }) }, { token: root.accessToken });
    expect(inactive.errors).toBeUndefined();
    const response = await updateUser(server, root.accessToken, root.user.id, { role: 'USER' });
    expectError(response, 'FORBIDDEN');
    expect(response.errors?.[0].message).toMatch(LAST_ADMIN);
    await expectRootUnchanged();
    expect((await server.graphql(DELETE_USER, { id: inactive.data!.createUser.id }, { token: root.accessToken })).data?.deleteUser).toBe(true);
  });

  it('may still edit their own names and email', async () => {
    const response = await updateUser(server, root.accessToken, root.user.id, { firstName: 'Root' });
    expect(response.errors).toBeUndefined();
    expect(response.data?.updateUser).toMatchObject({ firstName: 'Root', role: 'ADMIN', active: true });
    expect((await updateUser(server, root.accessToken, root.user.id, { firstName: '' })).errors).toBeUndefined();
    rootBefore = await userRow(server, root.user.id);
  });

  it('with two active admins, one may demote the other, who then is FORBIDDEN on the next request', async () => {
    const second = await createAndSignIn(server, root, { role: 'ADMIN' });
    expect(await activeAdminCount(server)).toBe(2);
    const response = await updateUser(server, root.accessToken, second.user.id, { role: 'USER' });
    expect(response.errors).toBeUndefined();
    expect(response.data?.updateUser.role).toBe('USER');
    expectError(await server.graphql(USERS, {}, { token: second.accessToken }), 'FORBIDDEN');
    expect(await activeAdminCount(server)).toBe(1);
  });

  it('with two active admins, one may demote themselves', async () => {
    const second = await createAndSignIn(server, root, { role: 'ADMIN' });
    const response = await updateUser(server, second.accessToken, second.user.id, { role: 'USER' });
    expect(response.errors).toBeUndefined();
    expect(response.data?.updateUser.role).toBe('USER');
    expect(await activeAdminCount(server)).toBe(1);
    await expectAdminAccess(server, root.accessToken);
  });

  it('never leaves zero active admins when two admins demote each other at once (5 rounds)', async () => {
    for (let round = 0; round < 5; round += 1) {
      const challenger = await createAndSignIn(server, survivor, { role: 'ADMIN' });
      expect(await activeAdminCount(server), `round ${round}`).toBe(2);
      const [bySurvivor, byChallenger] = await Promise.all([
        updateUser(server, survivor.accessToken, challenger.user.id, { role: 'USER' }),
        updateUser(server, challenger.accessToken, survivor.user.id, { role: 'USER' }),
      ]);
      const codes = [bySurvivor, byChallenger].map(errorCode);
      expect(codes, `round ${round}`).not.toContain('INTERNAL_SERVER_ERROR');
      expect(await activeAdminCount(server), `round ${round}`).toBe(1);
      const succeeded = [bySurvivor, byChallenger].filter((response) => response.data?.updateUser);
      expect(succeeded, `round ${round}`).toHaveLength(1);
      expect(codes.filter((code) => code === 'FORBIDDEN'), `round ${round}`).toHaveLength(1);
      survivor = bySurvivor.data?.updateUser ? survivor : challenger;
      await expectAdminAccess(server, survivor.accessToken);
    }
  });

  it.each([
    ['deactivate each other', (token: string, id: string) => updateUser(server, token, id, { active: false })],
    ['delete each other', (token: string, id: string) => server.graphql(DELETE_USER, { id }, { token })],
  ])('never leaves zero active admins when two admins %s at once (3 rounds)', async (_what, act) => {
    for (let round = 0; round < 3; round += 1) {
      const challenger = await createAndSignIn(server, survivor, { role: 'ADMIN' });
      const responses = await Promise.all([act(survivor.accessToken, challenger.user.id), act(challenger.accessToken, survivor.user.id)]);
      expect(responses.map(errorCode), `round ${round}`).not.toContain('INTERNAL_SERVER_ERROR');
      expect(await activeAdminCount(server), `round ${round}`).toBe(1);
      expect(responses.filter((response) => !response.errors), `round ${round}`).toHaveLength(1);
      survivor = responses[0].errors ? challenger : survivor;
      await expectAdminAccess(server, survivor.accessToken);
    }
  });

  it('never leaves zero active admins when two admins delete their own accounts at once (3 rounds)', async () => {
    for (let round = 0; round < 3; round += 1) {
      const challenger = await createAndSignIn(server, survivor, { role: 'ADMIN' });
      const pair = [survivor, challenger];
      const responses = await Promise.all(pair.map((admin) => server.graphql(DELETE_ME, { password: admin.password }, { token: admin.accessToken })));
      expect(responses.map(errorCode), `round ${round}`).not.toContain('INTERNAL_SERVER_ERROR');
      expect(await activeAdminCount(server), `round ${round}`).toBe(1);
      const kept = pair.filter((_admin, index) => responses[index].errors);
      expect(kept, `round ${round}`).toHaveLength(1);
      expect(responses.find((response) => response.errors)?.errors?.[0].message).toMatch(LAST_ADMIN);
      survivor = kept[0];
      await expectAdminAccess(server, survivor.accessToken);
    }
  });
});

// =============================================================================================
// The first admin from ADMIN_EMAIL / ADMIN_PASSWORD at start-up
// =============================================================================================

describe('first admin at start-up', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(ADMIN_ENV);
  });
  afterAll(() => server?.stop());

  async function admins(): Promise<Array<{ id: string; email: string; username: string; active: boolean }>> {
    return server.sql("select id, email, username, active from users where role = 'ADMIN' order by created_at");
  }

  it('is created once, as an active ADMIN named "admin" with the configured email, and can sign in', async () => {
    const rows = await admins();
    expect(rows).toEqual([expect.objectContaining({ email: ADMIN_EMAIL, username: ADMIN_USERNAME, active: true })]);
    expect(await countOf(server, 'select count(*) as count from users')).toBe(1);
    const signed = await signInAsRoot(server);
    expect(signed.user).toMatchObject({ id: rows[0].id, role: 'ADMIN' });
    const byEmail = await signIn(server, ADMIN_EMAIL, ADMIN_PASSWORD);
    expect(byEmail.user.id).toBe(rows[0].id);
  });

  it('is not created a second time by a restart', async () => {
    const before = await admins();
    await server.restart();
    expect(await admins()).toEqual(before);
    expect(await countOf(server, 'select count(*) as count from users')).toBe(1);
    await signInAsRoot(server);
  });

  it('is not created by a restart with a different ADMIN_EMAIL while an admin exists', async () => {
    const before = await admins();
    await server.restart({ ADMIN_EMAIL: 'other-root@example.test', ADMIN_USERNAME: 'other_admin', ADMIN_PASSWORD: 'another fine passphrase 42' });
    expect(await admins()).toEqual(before);
    expect(await countOf(server, 'select count(*) as count from users where email = ? or lower(username) = ?', ['other-root@example.test', 'other_admin'])).toBe(0);
    expectError(await login(server, 'other_admin', 'another fine passphrase 42'), 'UNAUTHENTICATED');
    await signInAsRoot(server);
  });

  it('is never made by promoting an existing non-admin account that has the configured email', async () => {
    const account = await registerAccount(server);
    // No admin left (behind the server's back: the API refuses to remove the last one).
    await server.sql("update users set role = 'USER' where role = 'ADMIN'");
    await server.restart({ ADMIN_EMAIL: account.user.email, ADMIN_USERNAME: `boss_${suffix()}`, ADMIN_PASSWORD: 'yet another fine passphrase 7' });
    expect(await admins()).toEqual([]);
    expect(await userRow(server, account.user.id)).toMatchObject({ role: 'USER', email: account.user.email });
    expect(server.logs.some((line) => /no admin was created/.test(String(line.msg)))).toBe(true);
  });

  it('is created at a restart when no admin exists any more', async () => {
    expect(await admins()).toEqual([]);
    const email = `new-root-${suffix()}@example.test`;
    await server.restart({ ADMIN_EMAIL: email, ADMIN_USERNAME: 'second_boss', ADMIN_PASSWORD: 'yet another fine passphrase 7' });
    expect(await admins()).toEqual([expect.objectContaining({ email, username: 'second_boss', active: true })]);
    const signed = await signIn(server, 'second_boss', 'yet another fine passphrase 7');
    await expectAdminAccess(server, signed.accessToken);
  });

  it('refuses to start when ADMIN_PASSWORD fails the password policy', async () => {
    await expect(startTestServer({ ADMIN_EMAIL: 'a@example.test', ADMIN_PASSWORD: 'short' })).rejects.toThrow(/ADMIN_PASSWORD/);
  });

  it('refuses to start when ADMIN_PASSWORD contains the admin username', async () => {
    await expect(startTestServer({ ADMIN_EMAIL: 'boss@example.test', ADMIN_PASSWORD: 'the admin passphrase 1' })).rejects.toThrow(/ADMIN_PASSWORD/);
  });
});

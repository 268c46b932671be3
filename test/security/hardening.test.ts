import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHANGE_PASSWORD, FORGOT_PASSWORD, LOGIN, ME, newAccountInput, REFRESH, REGISTER, registerAccount, RESET_PASSWORD, type SignedInAccount } from '../support/accounts.js';
import { errorCode, errorField, type GraphQLResponse, startTestServer, type TestServer } from '../support/server.js';
import { type CapturedMail, resetTokenOf, startSmtpServer, type TestSmtpServer } from '../support/smtp.js';
import { waitUntil } from '../support/wait.js';

// One server in production mode (NODE_ENV=production, a real JWT_SECRET, real SMTP), the way it is
// deployed: prototype pollution, privilege escalation, tokens in URLs, secrets in logs, error masking.
const UPDATE_ME = 'mutation UpdateMe($input: UpdateProfileInput!) { updateMe(input: $input) { id role active email } }';
const JWT = /eyJ[A-Za-z0-9_-]{10,}\./;

let server: TestServer;
let smtp: TestSmtpServer;
beforeAll(async () => {
  smtp = await startSmtpServer();
  server = await startTestServer({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(40), SMTP_URL: smtp.url });
});
afterAll(async () => {
  await server?.stop();
  await smtp?.stop();
});

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function suffix(): string {
  return randomBytes(4).toString('hex');
}

async function count(query: string, params: unknown[] = []): Promise<number> {
  const [row] = await server.sql<{ n: string }>(query, params);
  return Number(row.n);
}

const adminCount = () => count("select count(*) as n from users where role = 'ADMIN'");

/** The JSON text of a fresh, valid RegisterInput without its closing brace, to append keys to. */
function registerInputOpen(): { email: string; open: string } {
  const input = newAccountInput();
  return { email: input.email, open: JSON.stringify(input).slice(0, -1) };
}

async function userRow(userId: string) {
  const [row] = await server.sql('select email, username, role, active, first_name, last_name from users where id = ?', [userId]);
  return row;
}

function expectNoInternalError(response: { status: number; json?: any }): void {
  expect(response.status).toBeLessThan(500);
  for (const error of response.json?.errors ?? []) expect(error.extensions?.code).not.toBe('INTERNAL_SERVER_ERROR');
}

// ---------------------------------------------------------------------------------------------
// Prototype pollution
// ---------------------------------------------------------------------------------------------

describe('prototype-pollution keys in variables', () => {
  it.each([
    ['"__proto__": {"role": "ADMIN"} inside the register input', '"__proto__": {"role": "ADMIN"}'],
    ['"constructor": {"prototype": {"role": "ADMIN"}} inside the register input', '"constructor": {"prototype": {"role": "ADMIN"}}'],
    ['"prototype": {"role": "ADMIN"} inside the register input', '"prototype": {"role": "ADMIN"}'],
    ['"__proto__": {"__proto__": {"role": "ADMIN", "active": true}} nested twice inside the register input', '"__proto__": {"__proto__": {"role": "ADMIN", "active": true}}'],
  ])('%s is refused with BAD_USER_INPUT and creates no account', async (_name, extra) => {
    const { email, open } = registerInputOpen();
    const response = await server.postJson(`{"query": ${JSON.stringify(REGISTER)}, "variables": {"input": ${open}, ${extra}}}`);
    expect(response.status).toBe(400);
    expect(response.json?.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(await count('select count(*) as n from users where email = ?', [email])).toBe(0);
    expect(await adminCount()).toBe(0);
  });

  it('does not read login fields hidden under "__proto__": the login is refused with BAD_USER_INPUT', async () => {
    const account = await registerAccount(server);
    const response = await server.postJson(
      `{"query": ${JSON.stringify(LOGIN)}, "variables": {"input": {"__proto__": ${JSON.stringify({ identifier: account.user.email, password: account.password })}}}}`,
    );
    expect(response.status).toBe(400);
    expect(response.json?.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(response.json?.data ?? null).toBeNull();
  });

  it.each([
    ['"__proto__" at the top level of the variables', (input: string) => `{"query": ${JSON.stringify(REGISTER)}, "variables": {"__proto__": {"role": "ADMIN"}, "input": ${input}}}`],
    ['"constructor" at the top level of the variables', (input: string) => `{"query": ${JSON.stringify(REGISTER)}, "variables": {"constructor": {"prototype": {"role": "ADMIN"}}, "input": ${input}}}`],
    ['"__proto__" at the top level of the request body', (input: string) => `{"__proto__": {"role": "ADMIN"}, "query": ${JSON.stringify(REGISTER)}, "variables": {"input": ${input}}}`],
    ['"__proto__" in the request extensions', (input: string) => `{"query": ${JSON.stringify(REGISTER)}, "extensions": {"__proto__": {"role": "ADMIN"}}, "variables": {"input": ${input}}}`],
  ])('%s is ignored or refused, never a 500, and never makes an ADMIN', async (_name, body) => {
    const { email, open } = registerInputOpen();
    const response = await server.postJson(body(`${open}}`));
    expectNoInternalError(response);
    if (response.json?.data?.register) {
      expect(response.json.data.register.user.role).toBe('USER');
      expect(await count("select count(*) as n from users where email = ? and role = 'USER'", [email])).toBe(1);
    } else {
      expect(response.json?.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    }
    expect(await adminCount()).toBe(0);
  });

  it('still behaves afterwards: a plain register creates a USER and there is no ADMIN at all', async () => {
    const account = await registerAccount(server);
    expect(account.user.role).toBe('USER');
    const me = await server.graphql(ME, {}, { token: account.accessToken });
    expect(me.data?.me.role).toBe('USER');
    expect(await adminCount()).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Privilege escalation through updateMe
// ---------------------------------------------------------------------------------------------

describe('escalation through updateMe', () => {
  it.each([
    ['role: ADMIN', { role: 'ADMIN' }],
    ['active: false', { active: false }],
    ['a new email', { email: 'taken-over@example.com' }],
  ])('refuses %s with BAD_USER_INPUT and changes nothing', async (_name, input) => {
    const account = await registerAccount(server);
    const before = await userRow(account.user.id);
    const response = await server.graphql(UPDATE_ME, { input }, { token: account.accessToken });
    expect(response.status).toBe(400);
    expect(errorCode(response)).toBe('BAD_USER_INPUT');
    expect(await userRow(account.user.id)).toEqual(before);
    expect(before.role).toBe('USER');
  });

  it('refuses a role hidden under "__proto__" or "constructor" in the updateMe input, and the role stays USER', async () => {
    const account = await registerAccount(server);
    const before = await userRow(account.user.id);
    for (const hidden of ['"__proto__": {"role": "ADMIN"}', '"constructor": {"prototype": {"role": "ADMIN"}}']) {
      const response = await server.postJson(`{"query": ${JSON.stringify(UPDATE_ME)}, "variables": {"input": {"firstName": "Mallory", ${hidden}}}}`, {
        authorization: `Bearer ${account.accessToken}`,
      });
      expect(response.status, hidden).toBe(400);
      expect(response.json?.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    }
    expect(await userRow(account.user.id)).toEqual(before);
  });
});

// ---------------------------------------------------------------------------------------------
// Access tokens travel in the Authorization header only
// ---------------------------------------------------------------------------------------------

describe('access tokens in URLs', () => {
  let account: SignedInAccount;
  beforeAll(async () => {
    account = await registerAccount(server);
  });
  const meUrl = (extra: string) => `/graphql?query=${encodeURIComponent('{ me { id } }')}${extra}`;
  // Apollo's CSRF guard wants a non-simple header on GET; it is sent so only the token decides.
  const preflight = { 'apollo-require-preflight': 'true' };

  it('signs in a GET with the token in the Authorization header (control)', async () => {
    const response = await server.raw(meUrl(''), { headers: { ...preflight, authorization: `Bearer ${account.accessToken}` } });
    expect(response.json?.data?.me?.id).toBe(account.user.id);
  });

  it.each([
    ['?access_token=', '&access_token='],
    ['?token=', '&token='],
    ['?authorization=Bearer …', '&authorization=Bearer%20'],
  ])('does not sign in a GET with the token in the URL as %s', async (_name, parameter) => {
    const response = await server.raw(meUrl(`${parameter}${account.accessToken}`), { headers: preflight });
    expect(response.json?.data?.me ?? null).toBeNull();
    expect(response.json?.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });

  it('does not sign in a POST with the token in the URL or in the body', async () => {
    const inUrl = await server.raw(`/graphql?access_token=${account.accessToken}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: ME }),
    });
    expect(inUrl.json?.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    const inBody = await server.postJson(
      JSON.stringify({ query: ME, access_token: account.accessToken, extensions: { authorization: `Bearer ${account.accessToken}`, token: account.accessToken } }),
    );
    expect(inBody.json?.data?.me ?? null).toBeNull();
    expect(inBody.json?.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });
});

// ---------------------------------------------------------------------------------------------
// Production: logs and error masking
// ---------------------------------------------------------------------------------------------

/** Renames the sessions table for the duration of `work`, so that signing in fails unexpectedly. */
async function withoutSessionsTable<T>(work: () => Promise<T>): Promise<T> {
  await server.sql('alter table sessions rename to sessions_moved_away');
  try {
    return await work();
  } finally {
    await server.sql('alter table sessions_moved_away rename to sessions');
  }
}

function mailsTo(email: string, subject: string): CapturedMail[] {
  return smtp.messages.filter((mail) => mail.to === email && mail.subject === subject);
}

describe('production', () => {
  it('logs neither passwords, JWTs, refresh tokens, reset tokens nor reset links, through a whole account life and an unexpected error', async () => {
    const secrets: string[] = [];
    const keep = (...values: string[]) => {
      secrets.push(...values);
      return values[0];
    };
    const password = keep(`first logged nowhere ${suffix()}`);
    const account = await registerAccount(server, { password });
    keep(account.accessToken, account.refreshToken);

    const signedIn = await server.graphql(LOGIN, { input: { identifier: account.user.email, password } });
    keep(signedIn.data!.login.accessToken, signedIn.data!.login.refreshToken);
    const wrong = keep(`wrong logged nowhere ${suffix()}`);
    expect(errorCode(await server.graphql(LOGIN, { input: { identifier: account.user.username, password: wrong } }))).toBe('UNAUTHENTICATED');
    const refreshed = await server.graphql(REFRESH, { refreshToken: signedIn.data!.login.refreshToken });
    keep(refreshed.data!.refreshToken.accessToken, refreshed.data!.refreshToken.refreshToken);

    expect((await server.graphql(FORGOT_PASSWORD, { input: { identifier: account.user.email } })).data?.forgotPassword).toBe(true);
    const resetMail = await smtp.waitFor((mail) => mail.to === account.user.email && mail.subject === 'Reset your password');
    const resetToken = keep(resetTokenOf(resetMail));
    keep(resetMail.text.match(/https?:\/\/\S+reset-password\?token=\S+/)![0]);
    expect(errorField(await server.graphql(RESET_PASSWORD, { input: { token: resetToken, newPassword: 'short' } }))).toBe('newPassword');
    const afterReset = keep(`reset logged nowhere ${suffix()}`);
    expect((await server.graphql(RESET_PASSWORD, { input: { token: resetToken, newPassword: afterReset } })).data?.resetPassword).toBe(true);

    const again = await server.graphql(LOGIN, { input: { identifier: account.user.email, password: afterReset } });
    const token = keep(again.data!.login.accessToken);
    keep(again.data!.login.refreshToken);
    const changed = keep(`changed logged nowhere ${suffix()}`);
    const wrongCurrent = keep(`wrong current logged nowhere ${suffix()}`);
    expect(errorField(await server.graphql(CHANGE_PASSWORD, { input: { currentPassword: wrongCurrent, newPassword: changed } }, { token }))).toBe('currentPassword');
    expect((await server.graphql(CHANGE_PASSWORD, { input: { currentPassword: afterReset, newPassword: changed } }, { token })).data?.changePassword).toBe(true);

    // An unexpected error in the middle of a sign-in, which is logged with its cause.
    const failed = await withoutSessionsTable(() => server.graphql(LOGIN, { input: { identifier: account.user.email, password: changed } }));
    expect(errorCode(failed)).toBe('INTERNAL_SERVER_ERROR');

    await waitUntil(() => mailsTo(account.user.email, 'Your password was changed').length === 2, 'two "password was changed" emails');
    const logs = JSON.stringify(server.logs);
    expect(logs).toContain('unexpected error');
    for (const secret of secrets) expect(logs.includes(secret), `a secret of ${secret.length} characters is in the logs`).toBe(false);
    expect(logs).not.toMatch(JWT);
    expect(logs).not.toContain('reset-password?token');
  });

  it('masks an unexpected error as "Internal server error." with no stack and no SQL, and logs the cause under the request id', async () => {
    const account = await registerAccount(server);
    const response = await withoutSessionsTable(() =>
      server.raw('/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: LOGIN, variables: { input: { identifier: account.user.email, password: account.password } } }),
      }),
    );
    expect(response.json?.data ?? null).toBeNull();
    expect(response.json?.errors).toHaveLength(1);
    const [error] = response.json.errors as NonNullable<GraphQLResponse['errors']>;
    expect(error.message).toBe('Internal server error.');
    expect(error.extensions).toEqual({ code: 'INTERNAL_SERVER_ERROR' });
    for (const leak of ['sessions', 'relation', 'insert', 'select', 'Exception', 'node_modules', 'stack', '.ts:', '.js:']) {
      expect(response.text, `response mentions "${leak}"`).not.toContain(leak);
    }
    const requestId = response.headers.get('x-request-id');
    expect(requestId).toBeTruthy();
    const logged = server.logs.find((line) => line.requestId === requestId && line.level >= 50);
    expect(logged, 'an error log line for the request').toBeDefined();
    expect(JSON.stringify(logged)).toContain('sessions');
    // The database is back: the same login works.
    expect((await server.graphql(LOGIN, { input: { identifier: account.user.email, password: account.password } })).errors).toBeUndefined();
  });

  it('gives no "did you mean" hints about the schema for a misspelled field', async () => {
    const response = await server.graphql('{ mee { id } }');
    expect(response.status).toBe(400);
    expect(errorCode(response)).toBe('BAD_USER_INPUT');
    expect(JSON.stringify(response.errors)).not.toMatch(/did you mean/i);
  });

  it('tells every cache to keep no GraphQL answer: tokens from login, the account from me, and errors', async () => {
    const account = await registerAccount(server);
    const login = await server.postJson(JSON.stringify({ query: LOGIN, variables: { input: { identifier: account.user.email, password: account.password } } }));
    const me = await server.postJson(JSON.stringify({ query: ME }), { authorization: `Bearer ${account.accessToken}` });
    const refused = await server.postJson(JSON.stringify({ query: ME }));
    expect(login.json?.data?.login?.refreshToken).toBeTruthy();
    expect(me.json?.data?.me?.id).toBe(account.user.id);
    expect(refused.json?.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    for (const response of [login, me, refused]) expect(response.headers.get('cache-control')).toBe('no-store');
  });

  it('serves no Apollo Sandbox page to a browser', async () => {
    const response = await server.raw('/graphql', { headers: { accept: 'text/html' } });
    expect(response.headers.get('content-type') ?? '').not.toMatch(/text\/html/);
    expect(response.text.toLowerCase()).not.toContain('sandbox');
    expect(response.status).toBeGreaterThanOrEqual(400);
  });
});

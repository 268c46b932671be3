import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processEnv } from '../src/config/config.js';
import { PROJECT_ROOT } from '../src/config/paths.js';
import { FORGOT_PASSWORD, LOGIN, ME, newAccountInput, REGISTER, RESET_PASSWORD } from './support/accounts.js';
import { build, exitOf, type GraphQLAnswer, killServerProcesses, postGraphQL, type ServerProcess, serverProcessEnv, startServerProcess } from './support/server-process.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { resetTokenOf, startSmtpServer, type TestSmtpServer } from './support/smtp.js';

// Three `node dist/src/main.js` processes on one PostgreSQL database must behave as one server:
// everything that decides (sessions, one-time tokens, rate-limit counters, the admin bootstrap,
// migrations) lives in the database, never in a process.

const SERVER_URL = processEnv().DATABASE_URL;
const INSTANCES = 3;
const START_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 30_000;
const LOGIN_PER_IDENTIFIER = 10;
const RESET_SUBJECT = 'Reset your password';

let ipCounter = 0;
/** A client address no other call of this file uses (the servers trust one proxy hop). */
function freshIp(): string {
  ipCounter += 1;
  return `10.77.${Math.floor(ipCounter / 250) % 250}.${(ipCounter % 250) + 1}`;
}

function call(instance: ServerProcess, query: string, variables: Record<string, unknown> = {}, options: { token?: string; ip?: string } = {}): Promise<GraphQLAnswer> {
  return postGraphQL(instance.origin, query, variables, { token: options.token, headers: { 'x-forwarded-for': options.ip ?? freshIp() } });
}

const codeOf = (answer: GraphQLAnswer) => answer.errors?.[0]?.extensions?.code;

describe.skipIf(!SERVER_URL)('three instances on one PostgreSQL behave as one server (needs a real PostgreSQL: set DATABASE_URL; the embedded database belongs to a single process)', () => {
  const admin = { email: `root-${randomBytes(3).toString('hex')}@example.com`, password: 'Tangerine-Lighthouse-4417' };
  let database: TestDatabase | undefined;
  let smtp: TestSmtpServer | undefined;
  let instances: ServerProcess[] = [];
  const dataDirs: string[] = [];
  let builtMigrations: string[] = [];

  const sql = <T = Record<string, any>>(query: string, params: unknown[] = []) => database!.sql<T>(query, params);

  beforeAll(async () => {
    await build();
    builtMigrations = readdirSync(join(PROJECT_ROOT, 'dist/migrations'))
      .filter((file) => /^Migration\d{14}\.js$/.test(file))
      .map((file) => file.replace(/\.js$/, ''))
      .sort();
    smtp = await startSmtpServer();
    database = await createTestDatabase(SERVER_URL);
    // One call: every instance shares the secrets. Each binds a free port of its own and logs it.
    const shared = serverProcessEnv({
      DATABASE_URL: database.url!,
      SMTP_URL: smtp.url,
      ADMIN_EMAIL: admin.email,
      ADMIN_PASSWORD: admin.password,
      RATE_LIMIT_SCALE: '1',
      TRUST_PROXY: '1',
    });
    // All three at once: they race for the migration lock and the admin bootstrap.
    const started = await Promise.allSettled(
      Array.from({ length: INSTANCES }, (_, index) => {
        const dataDir = mkdtempSync(join(tmpdir(), `user-server-instance-${index}-`));
        dataDirs.push(dataDir);
        return startServerProcess(`instance ${'ABC'[index]}`, { ...shared, DATA_DIR: dataDir }, START_TIMEOUT_MS);
      }),
    );
    const failed = started.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failed.length > 0) throw new Error(failed.map((result) => String(result.reason?.message ?? result.reason)).join('\n\n'));
    instances = started.map((result) => (result as PromiseFulfilledResult<ServerProcess>).value);
  });

  afterAll(async () => {
    // Whatever happened above: no process outlives the file.
    await killServerProcesses();
    await smtp?.stop();
    await database?.drop();
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
  });

  it('applied each migration exactly once', async () => {
    const rows = await sql<{ name: string; times: number }>('select name, count(*)::int as times from mikro_orm_migrations group by name order by name');
    expect(rows.filter((row) => row.times !== 1)).toEqual([]);
    expect(rows.map((row) => row.name)).toEqual(builtMigrations);
  });

  it('created exactly one admin from ADMIN_EMAIL, usable on every instance', async () => {
    const [{ admins }] = await sql<{ admins: number }>("select count(*)::int as admins from users where role = 'ADMIN'");
    expect(admins).toBe(1);
    const creators = instances.filter((instance) => instance.logs.some((line) => line.msg === 'created the first admin from ADMIN_EMAIL'));
    expect(creators).toHaveLength(1);
    for (const instance of instances) {
      const signedIn = await call(instance, LOGIN, { input: { identifier: admin.email, password: admin.password } });
      expect(signedIn.errors).toBeUndefined();
      expect(signedIn.data.login.user.role).toBe('ADMIN');
    }
  });

  it('a session signed out on one instance is refused by the others', async () => {
    const [a, b, c] = instances;
    const registered = await call(a, REGISTER, { input: newAccountInput() });
    expect(registered.errors).toBeUndefined();
    const { accessToken, user } = registered.data.register;
    const before = await call(c, ME, {}, { token: accessToken });
    expect(before.data?.me.id).toBe(user.id);

    const loggedOut = await call(b, 'mutation { logout }', {}, { token: accessToken });
    expect(loggedOut.errors).toBeUndefined();
    expect(loggedOut.data.logout).toBe(true);

    for (const instance of [c, a, b]) {
      const after = await call(instance, ME, {}, { token: accessToken });
      expect(codeOf(after), instance.name).toBe('UNAUTHENTICATED');
    }
  });

  it('a reset token mailed by one instance works once, on any instance', async () => {
    const [a, b, c] = instances;
    const input = newAccountInput();
    const registered = await call(a, REGISTER, { input });
    expect(registered.errors).toBeUndefined();

    const requested = await call(a, FORGOT_PASSWORD, { input: { identifier: input.email } });
    expect(requested.data?.forgotPassword).toBe(true);
    const isReset = (mail: { to: string; subject: string }) => mail.to.includes(input.email) && mail.subject === RESET_SUBJECT;
    const token = resetTokenOf(await smtp!.waitFor(isReset, 20_000));

    const [firstPassword, secondPassword] = [`first new passphrase ${randomBytes(4).toString('hex')}`, `second new passphrase ${randomBytes(4).toString('hex')}`];
    const first = await call(b, RESET_PASSWORD, { input: { token, newPassword: firstPassword } });
    expect(first.errors).toBeUndefined();
    expect(first.data.resetPassword).toBe(true);
    const second = await call(c, RESET_PASSWORD, { input: { token, newPassword: secondPassword } });
    expect(codeOf(second)).toBe('BAD_USER_INPUT');
    expect(second.errors?.[0]?.extensions?.field).toBe('token');

    const signedIn = await call(c, LOGIN, { input: { identifier: input.email, password: firstPassword } });
    expect(signedIn.errors).toBeUndefined();
    // Three outbox workers poll the one queue (every 2 s); the email still went out once.
    await sleep(3_000);
    expect(smtp!.messages.filter(isReset)).toHaveLength(1);
  });

  it('counts the per-identifier login limit across instances', async () => {
    const identifier = `nobody-${randomBytes(4).toString('hex')}@example.com`;
    // Each attempt from an address of its own, so only the per-identifier counter can refuse.
    for (let attempt = 0; attempt < LOGIN_PER_IDENTIFIER; attempt++) {
      const instance = instances[attempt % INSTANCES];
      const answer = await call(instance, LOGIN, { input: { identifier, password: 'not the password at all' } });
      expect(codeOf(answer), `attempt ${attempt + 1} on ${instance.name}`).toBe('UNAUTHENTICATED');
    }
    for (const instance of instances) {
      const answer = await call(instance, LOGIN, { input: { identifier, password: 'not the password at all' } });
      expect(codeOf(answer), instance.name).toBe('RATE_LIMITED');
      expect(answer.errors?.[0]?.extensions?.retryAfter).toBeGreaterThan(0);
    }
  });

  // Last: stops the three processes the way an orchestrator does.
  it('stops every instance on SIGTERM with exit code 0', async () => {
    expect(instances).toHaveLength(INSTANCES);
    for (const instance of instances) instance.child.kill('SIGTERM');
    const outcomes = await Promise.all(instances.map((instance) => exitOf(instance, STOP_TIMEOUT_MS)));
    instances.forEach((instance, index) => {
      const messages = instance.logs.map((line) => line.msg);
      expect(outcomes[index], `${instance.name}:\n${instance.output.slice(-20).join('\n')}`).toEqual({ code: 0, signal: null });
      expect(messages.indexOf('shutting down'), instance.name).toBeGreaterThanOrEqual(0);
      expect(messages.indexOf('stopped'), instance.name).toBeGreaterThan(messages.indexOf('shutting down'));
    });
  }, STOP_TIMEOUT_MS + 10_000);
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FORGOT_PASSWORD, LOGIN, ME, REFRESH, registerAccount, type SignedInAccount } from './support/accounts.js';
import { startTestServer, type TestServer } from './support/server.js';
import { waitUntil } from './support/wait.js';

// A soak of simulated weeks: every round the same active users sign in, refresh, mistype a
// password and ask for reset links, strangers try unknown identifiers, and then a week passes (every
// timestamp in the database moves 8 days back, rate-limit windows included). Maintenance runs every
// second with the shortest retention. Without it every table grows by a round's rows each round;
// with it each one levels off once its oldest rows reach retention.

const USERS = 20;
const ROUNDS = 8;
const REFRESHES = 4;
const DAY_MS = 86_400_000;
const WEEK = 8; // days a round stands for: past the 7 days sent mail and spent tokens are kept
const TABLES = ['sessions', 'audit_events', 'mail_outbox', 'one_time_tokens', 'rate_limits'] as const;

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    MAINTENANCE_INTERVAL_SECONDS: '1',
    SESSION_RETENTION_DAYS: '1',
    AUDIT_RETENTION_DAYS: '10',
    // Every limit counts (so the counters have rows), none refuses this traffic from one address.
    RATE_LIMIT_SCALE: '1000',
  });
});
afterAll(() => server?.stop());

const rows = async (table: string) => Number((await server.sql<{ n: string }>(`select count(*) as n from "${table}"`))[0].n);

/** One simulated day of use by `users`, and of strangers guessing. */
async function useForADay(users: SignedInAccount[], round: number): Promise<void> {
  await Promise.all(
    users.map(async (user, index) => {
      const signedIn = (await server.graphql(LOGIN, { input: { identifier: user.user.email, password: user.password } })).data!.login;
      let refreshToken = signedIn.refreshToken as string;
      let accessToken = signedIn.accessToken as string;
      for (let refresh = 0; refresh < REFRESHES; refresh += 1) {
        const next = (await server.graphql(REFRESH, { refreshToken })).data!.refreshToken;
        refreshToken = next.refreshToken;
        accessToken = next.accessToken;
      }
      expect((await server.graphql(ME, {}, { token: accessToken })).data?.me.id).toBe(user.user.id);
      await server.graphql(LOGIN, { input: { identifier: user.user.username, password: 'a mistyped passphrase' } });
      if (index % 4 === round % 4) await server.graphql(FORGOT_PASSWORD, { input: { identifier: user.user.email } });
      await server.graphql(LOGIN, { input: { identifier: `stranger-${round}-${index}@example.com`, password: 'a guessed passphrase' } });
    }),
  );
}

/** A week passes for every row: timestamps, expiries and rate-limit windows move `WEEK` days back. */
async function aWeekPasses(): Promise<void> {
  const back = `interval '${WEEK} days'`;
  await server.sql(`update sessions set created_at = created_at - ${back}, last_used_at = last_used_at - ${back}, expires_at = expires_at - ${back}, revoked_at = revoked_at - ${back}`);
  await server.sql(`update audit_events set created_at = created_at - ${back}`);
  await server.sql(`update mail_outbox set created_at = created_at - ${back}, sent_at = sent_at - ${back}, failed_at = failed_at - ${back}`);
  await server.sql(`update one_time_tokens set created_at = created_at - ${back}, expires_at = expires_at - ${back}, used_at = used_at - ${back}`);
  await server.sql('update rate_limits set expire = expire - ? where expire is not null', [WEEK * DAY_MS]);
}

/** Waits for a maintenance run that starts after now. */
async function maintenanceRuns(): Promise<void> {
  const seen = server.logs.length;
  await waitUntil(() => server.logs.slice(seen + 1).some((entry) => entry.msg === 'maintenance done'), 'a maintenance run', 15_000);
}

describe('a soak of simulated weeks', () => {
  it('keeps every table bounded: after the first weeks no table grows any more, though every round adds rows to each', async () => {
    const users = await Promise.all(Array.from({ length: USERS }, () => registerAccount(server)));
    // Mail written at registration leaves the outbox first.
    await waitUntil(async () => (await server.sql<{ n: string }>('select count(*) as n from mail_outbox where sent_at is null and failed_at is null'))[0].n === '0', 'the outbox to drain', 15_000);
    const history: Array<Record<string, number>> = [];
    const added: Record<string, number> = Object.fromEntries(TABLES.map((table) => [table, 0]));
    for (let round = 0; round < ROUNDS; round += 1) {
      const before = Object.fromEntries(await Promise.all(TABLES.map(async (table) => [table, await rows(table)] as const)));
      await useForADay(users, round);
      await waitUntil(async () => (await server.sql<{ n: string }>('select count(*) as n from mail_outbox where sent_at is null and failed_at is null'))[0].n === '0', 'the outbox to drain', 15_000);
      for (const table of TABLES) added[table] += (await rows(table)) - before[table];
      await aWeekPasses();
      await maintenanceRuns();
      await maintenanceRuns();
      history.push(Object.fromEntries(await Promise.all(TABLES.map(async (table) => [table, await rows(table)] as const))));
    }
    console.log(`rows after each simulated week (${USERS} users, ${ROUNDS} rounds):`);
    for (const table of TABLES) console.log(`  ${table.padEnd(16)} ${history.map((counts) => String(counts[table]).padStart(5)).join(' ')}   (${added[table]} added in all)`);

    for (const table of TABLES) {
      // Each round really adds rows to the table (so a table that stays level was purged) …
      expect(added[table], table).toBeGreaterThanOrEqual(ROUNDS);
      // … and by the last rounds the count stays level: never above what it was at the half-way mark.
      const settled = history[ROUNDS / 2 - 1][table];
      for (const counts of history.slice(ROUNDS / 2)) expect(counts[table], `${table}: ${history.map((c) => c[table]).join(', ')}`).toBeLessThanOrEqual(settled);
      // What remains is less than what was written.
      expect(history[ROUNDS - 1][table], table).toBeLessThan(added[table]);
    }
  }, 180_000);
});

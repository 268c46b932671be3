import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { processEnv } from '../src/config/config.js';
import { purgeStatements } from '../src/maintenance.js';
import { RATE_LIMIT_TABLE, RateLimits } from '../src/rate-limits.js';
import { LOGIN, ME, REFRESH, registerAccount } from './support/accounts.js';
import { queriesDuring } from './support/database.js';
import { startTestServer, type TestServer } from './support/server.js';
import { waitUntil, within } from './support/wait.js';

// Retention: with a one-second maintenance interval, rows past their retention disappear and
// everything younger, or still in use, stays. Rows are aged by moving their timestamps back.
const DATABASE_URL = processEnv().DATABASE_URL;

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ MAINTENANCE_INTERVAL_SECONDS: '1', SESSION_RETENTION_DAYS: '1', AUDIT_RETENTION_DAYS: '2' });
});
afterAll(() => server?.stop());

const count = async (sql: string, params: unknown[] = []) => Number((await server.sql<{ n: string }>(`select count(*) as n from ${sql}`, params))[0].n);

/** Resolves with the report of the next maintenance run that starts after now. */
async function nextRun(): Promise<Record<string, number>> {
  const seen = server.logs.length;
  const line = await waitUntil(() => server.logs.slice(seen + 1).find((entry) => entry.msg === 'maintenance done'), 'a maintenance run', 15_000);
  return line.purged as Record<string, number>;
}

/** The rows purged by every run logged since log line `from`, summed per purge. */
function purgedSince(from: number): Record<string, number> {
  const sum: Record<string, number> = {};
  for (const line of server.logs.slice(from)) {
    if (line.msg !== 'maintenance done') continue;
    for (const [name, rows] of Object.entries(line.purged as Record<string, number>)) sum[name] = (sum[name] ?? 0) + rows;
  }
  return sum;
}

describe('maintenance', () => {
  it('purges ended and expired sessions, old audit events, sent mail, done webhook messages, old delivery logs, spent tokens and expired rate-limit rows — and nothing else', async () => {
    // Runs go on every second while the rows are aged: what they purge is summed from here on.
    const from = server.logs.length;
    const old = await registerAccount(server);
    const fresh = await registerAccount(server);
    // `spent`: a code used eight days ago that would still be valid for a day goes (used is done).
    const spent = await registerAccount(server);
    // A rotated row of `fresh` (ended now) and its live successor: both stay.
    const rotated = (await server.graphql(REFRESH, { refreshToken: fresh.refreshToken })).data!.refreshToken;
    // `old`: a second device whose session ended three days ago, and one that expired three days ago.
    for (const _ of [0, 1]) await server.graphql(LOGIN, { input: { identifier: old.user.email, password: old.password } });
    const oldRows = await server.sql<{ id: string }>('select id from sessions where user_id = ? order by created_at desc limit 2', [old.user.id]);
    await server.sql("update sessions set revoked_at = now() - interval '3 days', revoked_reason = 'LOGOUT' where id = ?", [oldRows[0].id]);
    await server.sql("update sessions set expires_at = now() - interval '3 days' where id = ?", [oldRows[1].id]);
    // Audit events: those of `old` are three days old (past AUDIT_RETENTION_DAYS=2).
    await server.sql("update audit_events set created_at = now() - interval '3 days' where user_id = ?", [old.user.id]);
    // Mail and tokens: `old`'s are eight days past sending / use / expiry.
    await waitUntil(async () => (await count('mail_outbox where sent_at is not null or failed_at is not null')) >= 2, 'the verification emails to be handled', 15_000);
    await server.sql("update mail_outbox set sent_at = now() - interval '8 days', failed_at = case when failed_at is null then null else now() - interval '8 days' end where recipient = ?", [old.user.email]);
    await server.sql("update mail_outbox set failed_at = now() - interval '8 days' where recipient = ? and sent_at is null", [old.user.email]);
    await server.sql("update one_time_tokens set expires_at = now() - interval '8 days' where user_id = ?", [old.user.id]);
    await server.sql("update one_time_tokens set used_at = now() - interval '8 days', expires_at = now() + interval '1 day' where user_id = ?", [spent.user.id]);
    await server.sql("insert into rate_limits (key, points, expire) values ('test:expired', 1, ?), ('test:live', 1, ?), ('test:forever', 1, null)", [Date.now() - 1000, Date.now() + 3_600_000]);
    // Webhooks: messages delivered or given up eight days ago go, a recent and a pending one stay;
    // delivery-log entries go after 30 days. (The endpoint hears of no event this test causes.)
    const [endpoint] = await server.sql<{ id: string }>("insert into webhook_endpoints (id, created_at, url, events, secret) values (gen_random_uuid(), now(), 'https://example.com/hooks', '{user.locked}', 'sealed') returning id");
    const message = "insert into webhook_messages (id, created_at, endpoint_id, event_id, event_type, attempts, next_attempt_at, delivered_at, failed_at) values (gen_random_uuid(), now(), ?, ?, 'user.locked', 1, now() + interval '1 day', ?, ?)";
    const daysAgo = (days: number) => new Date(Date.now() - days * 86_400_000);
    await server.sql(message, [endpoint.id, 'msg_old_delivered', daysAgo(8), null]);
    await server.sql(message, [endpoint.id, 'msg_old_failed', null, daysAgo(8)]);
    await server.sql(message, [endpoint.id, 'msg_recent', daysAgo(1), null]);
    await server.sql(message, [endpoint.id, 'msg_pending', null, null]);
    const attempt = "insert into webhook_deliveries (id, endpoint_id, webhook_id, event_type, attempt, status, created_at) values (gen_random_uuid(), ?, ?, 'user.locked', 1, 200, ?)";
    await server.sql(attempt, [endpoint.id, 'msg_old_delivered', daysAgo(31)]);
    await server.sql(attempt, [endpoint.id, 'msg_recent', daysAgo(1)]);

    await nextRun();
    const report = purgedSince(from);
    expect(report).toMatchObject({ sessions: 2, mail: 1, oneTimeTokens: 2, rateLimits: 1, webhookMessages: 2, webhookDeliveries: 1 });
    // register, two logins of `old`: at least three events of its own.
    expect(report.auditEvents).toBeGreaterThanOrEqual(3);

    expect(await count('sessions where user_id = ?', [old.user.id])).toBe(1);
    expect(await count('sessions where user_id = ?', [fresh.user.id])).toBe(2);
    expect(await count('audit_events where user_id = ?', [old.user.id])).toBe(0);
    expect(await count('audit_events where user_id = ?', [fresh.user.id])).toBeGreaterThan(0);
    expect(await count('mail_outbox where recipient = ?', [old.user.email])).toBe(0);
    expect(await count('mail_outbox where recipient = ?', [fresh.user.email])).toBe(1);
    expect(await count('one_time_tokens where user_id = ?', [fresh.user.id])).toBe(1);
    expect(await count('one_time_tokens where user_id = ?', [spent.user.id])).toBe(0);
    expect((await server.sql<{ key: string }>("select key from rate_limits where key like 'test:%' order by key")).map((row) => row.key)).toEqual(['test:forever', 'test:live']);
    expect((await server.sql<{ event_id: string }>('select event_id from webhook_messages order by event_id')).map((row) => row.event_id)).toEqual(['msg_pending', 'msg_recent']);
    expect((await server.sql<{ webhook_id: string }>('select webhook_id from webhook_deliveries')).map((row) => row.webhook_id)).toEqual(['msg_recent']);

    // Whatever is still in use still works.
    expect((await server.graphql(ME, {}, { token: rotated.accessToken })).data?.me.id).toBe(fresh.user.id);
    expect((await server.graphql(ME, {}, { token: fresh.accessToken })).data?.me.id).toBe(fresh.user.id);
    expect((await server.graphql(LOGIN, { input: { identifier: old.user.email, password: old.password } })).data?.login).toBeTruthy();

    // The next run finds nothing more.
    expect(await nextRun()).toEqual({ sessions: 0, auditEvents: 0, mail: 0, webhookMessages: 0, webhookDeliveries: 0, oneTimeTokens: 0, rateLimits: 0 });
  }, 60_000);
});

/**
 * Makes every DELETE statement on `table` of `target`'s database take `seconds` longer, holding
 * what it locked meanwhile (a statement trigger that sleeps); resolves with what undoes it.
 */
async function slowDeletes(target: TestServer, table: string, seconds: number): Promise<() => Promise<void>> {
  const name = `slow_delete_${table}`;
  await target.sql(`create function ${name}() returns trigger language plpgsql as $$ begin perform pg_sleep(${seconds}); return null; end $$`);
  await target.sql(`create trigger ${name} after delete on ${table} for each statement execute function ${name}()`);
  return async () => {
    await target.sql(`drop trigger ${name} on ${table}`);
    await target.sql(`drop function ${name}()`);
  };
}

/** Every node of an `EXPLAIN (FORMAT JSON)` plan. */
function planNodes(node: Record<string, any>): Array<Record<string, any>> {
  return [node, ...((node.Plans as Array<Record<string, any>> | undefined) ?? []).flatMap(planNodes)];
}

describe('rotated refresh tokens', () => {
  it('stay while the token would be valid, however short the retention: replayed after it, the token still ends its device session', async () => {
    const account = await registerAccount(server);
    const successor = (await server.graphql(REFRESH, { refreshToken: account.refreshToken })).data!.refreshToken;
    // The rotation happened three days ago (past SESSION_RETENTION_DAYS=1); the token it replaced
    // would still be valid for weeks.
    await server.sql("update sessions set revoked_at = now() - interval '3 days' where user_id = ? and revoked_reason = 'ROTATED'", [account.user.id]);
    await nextRun();
    await nextRun();
    expect(await count("sessions where user_id = ? and revoked_reason = 'ROTATED'", [account.user.id])).toBe(1);
    // A thief replays the old token: reuse is recognised, and the successor (the other holder's) ends.
    expect((await server.graphql(REFRESH, { refreshToken: account.refreshToken })).errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
    expect((await server.graphql(ME, {}, { token: successor.accessToken })).errors?.[0].extensions?.reason).toBe('SESSION_ENDED');
    expect((await server.graphql(REFRESH, { refreshToken: successor.refreshToken })).errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');

    // Once the token has expired as well, the row goes.
    await server.sql("update sessions set expires_at = now() - interval '1 second' where user_id = ? and revoked_reason = 'ROTATED'", [account.user.id]);
    await waitUntil(async () => (await count("sessions where user_id = ? and revoked_reason = 'ROTATED'", [account.user.id])) === 0, 'the expired rotated row to go', 15_000);
  }, 60_000);
});

describe('what maintenance purges is found through indexes', () => {
  it('plans every purge statement without reading its whole table', async () => {
    const statements = purgeStatements(server.config.retention, Date.now());
    expect(statements.map((statement) => statement.name)).toEqual(['sessions', 'auditEvents', 'mail', 'webhookMessages', 'webhookDeliveries', 'oneTimeTokens', 'rateLimits']);
    for (const statement of statements) {
      // With sequential scans priced out, the planner still takes one when no index serves the condition.
      const plan = await server.app.orm.em.fork().transactional(async (em) => {
        const connection = em.getConnection();
        await connection.execute('set local enable_seqscan = off', [], 'run', em.getTransactionContext());
        const rows = await connection.execute<Array<Record<string, any>>>(`explain (format json) ${statement.sql}`, statement.params, 'all', em.getTransactionContext());
        const json = rows[0]['QUERY PLAN'];
        return (typeof json === 'string' ? JSON.parse(json) : json)[0].Plan as Record<string, any>;
      });
      const scans = planNodes(plan).filter((node) => node['Node Type'] === 'Seq Scan').map((node) => node['Relation Name']);
      expect(scans, `${statement.name}: ${statement.sql}`).toEqual([]);
    }
  });

  it('leaves expired rate-limit rows to maintenance: the limiter schedules no purge of its own', async () => {
    // What the library would schedule: a DELETE of the whole table's expired rows every 5 minutes.
    const scheduled: Array<() => unknown> = [];
    const setTimeoutSpy = vi.spyOn(globalThis, 'setTimeout').mockImplementation(((callback: () => unknown) => {
      scheduled.push(callback);
      return { unref() {}, ref() {}, hasRef: () => false, refresh() {}, [Symbol.toPrimitive]: () => 0 } as unknown as NodeJS.Timeout;
    }) as unknown as typeof setTimeout);
    let limits: RateLimits;
    try {
      limits = RateLimits.create({ rateLimitScale: 1, redisUrl: undefined }, server.app.orm);
    } finally {
      setTimeoutSpy.mockRestore();
    }
    const statements = await queriesDuring(async () => {
      for (const callback of scheduled) callback();
      await new Promise((resolve) => setTimeout(resolve, 200));
    });
    await limits.stop();
    expect(statements.filter((text) => text.includes(RATE_LIMIT_TABLE))).toEqual([]);
  });
});

describe.skipIf(!DATABASE_URL)('several instances on one database (PostgreSQL)', () => {
  let second: TestServer;
  beforeAll(async () => {
    second = await startTestServer({ DATABASE_URL: server.config.databaseUrl!, MAINTENANCE_INTERVAL_SECONDS: '1' });
  });
  afterAll(() => second?.stop());

  it('run maintenance one at a time: while the lease is held elsewhere, neither runs; then they resume', async () => {
    const runs = (target: TestServer, from: number) => target.logs.slice(from).filter((line) => line.msg === 'maintenance done').length;
    // The test takes the maintenance lease itself, as a third instance in the middle of a run would.
    await server.sql(
      `insert into leases (name, holder, expires_at) values ('maintenance', ?, now() + interval '1 hour')
         on conflict (name) do update set holder = excluded.holder, expires_at = excluded.expires_at`,
      [randomUUID()],
    );
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const [fromFirst, fromSecond] = [server.logs.length, second.logs.length];
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(runs(server, fromFirst) + runs(second, fromSecond)).toBe(0);
    await server.sql(`update leases set expires_at = now() where name = 'maintenance'`);
    await waitUntil(() => runs(server, fromFirst) > 0 && runs(second, fromSecond) > 0, 'both instances to run again', 10_000);
  }, 30_000);

  it('never run at the same time, though both try every second while a run takes seconds', async () => {
    // A backlog of 8 batches of expired rate-limit rows, each batch made to take 0.3 s: a run lasts
    // well over the 1 s both instances poll at.
    await server.sql("insert into rate_limits (key, points, expire) select 'overlap:' || g, 1, ? from generate_series(1, 8000) g", [Date.now() - 60_000]);
    const undoSlowDeletes = await slowDeletes(server, 'rate_limits', 0.3);
    const [fromFirst, fromSecond] = [server.logs.length, second.logs.length];
    try {
      const left = async () => Number((await server.sql<{ n: string }>("select count(*) as n from rate_limits where key like 'overlap:%'"))[0].n);
      await waitUntil(async () => (await left()) === 0, 'the backlog purged', 30_000, 200);
      // And a few more turns of both instances, each finding little.
      await new Promise((resolve) => setTimeout(resolve, 2500));
    } finally {
      await undoSlowDeletes();
    }
    // Each run as [start, end] from its log line (pino's time is when it ended; ms how long it took).
    const spans = (target: TestServer, from: number, who: string) =>
      target.logs.slice(from).filter((line) => line.msg === 'maintenance done').map((line) => ({ who, start: line.time - line.ms, end: line.time, purged: line.purged.rateLimits as number }));
    const all = [...spans(server, fromFirst, 'first'), ...spans(second, fromSecond, 'second')].sort((a, b) => a.start - b.start);
    expect(all.some((run) => run.purged >= 1000)).toBe(true);
    expect(new Set(all.map((run) => run.who)).size, 'both instances ran').toBe(2);
    for (let index = 1; index < all.length; index += 1) {
      expect(all[index].start, `${JSON.stringify(all[index - 1])} overlaps ${JSON.stringify(all[index])}`).toBeGreaterThanOrEqual(all[index - 1].end);
    }
  }, 60_000);
});

describe.skipIf(!DATABASE_URL)('sign-in while maintenance purges a backlog (PostgreSQL)', () => {
  it('signs in, refreshes and answers me while slow batches delete the same account\'s expired sessions', async () => {
    const own = await startTestServer({ MAINTENANCE_INTERVAL_SECONDS: '1', SESSION_RETENTION_DAYS: '1' });
    try {
      const account = await registerAccount(own);
      const expired = async () => Number((await own.sql<{ n: string }>('select count(*) as n from sessions where user_id = ? and expires_at < now()', [account.user.id]))[0].n);
      // A backlog of 5,000 expired sessions of the account (copies of its live one), each purge batch
      // of 1,000 made to take 3 s while it holds what it locked: a request that waited for a batch
      // would miss the 2 s bound below.
      const backlog = 5_000;
      await slowDeletes(own, 'sessions', 3);
      const [live] = await own.sql<{ id: string }>('select id from sessions where user_id = ?', [account.user.id]);
      // In slices, each well within the statement bound of the connection the test borrows.
      for (let from = 0; from < backlog; from += 1000) {
        await own.sql(
          `insert into sessions select (jsonb_populate_record(null::sessions, to_jsonb(s) || jsonb_build_object(
             'id', gen_random_uuid(), 'family', gen_random_uuid(), 'expires_at', now() - interval '3 days',
             'refresh_token_hash', encode(sha256(convert_to(s.id::text || g, 'UTF8')), 'hex')))).*
           from sessions s, generate_series(?::int + 1, ?::int + 1000) g where s.id = ?`,
          [from, from, live.id],
        );
      }
      // A batch is under way: its DELETE is running (sleeping in the trigger, its locks held).
      await waitUntil(async () => {
        const [purging] = await own.sql<{ n: string }>(`select count(*) as n from pg_stat_activity where datname = current_database() and state = 'active' and query like 'delete from "sessions"%'`);
        return Number(purging.n) > 0;
      }, 'a purge batch of sessions under way', 15_000, 50);

      // In the middle of the purge: the account signs in, rotates its refresh token, and is served.
      const login = await within(2000, () => own.graphql(LOGIN, { input: { identifier: account.user.email, password: account.password } }), 'login during the purge');
      expect(login.errors).toBeUndefined();
      const refreshed = await within(2000, () => own.graphql(REFRESH, { refreshToken: account.refreshToken }), 'refresh during the purge');
      expect(refreshed.errors).toBeUndefined();
      expect((await within(2000, () => own.graphql(ME, {}, { token: login.data!.login.accessToken }), 'me during the purge')).data?.me.id).toBe(account.user.id);
      // The purge was still going on: the requests overlapped it.
      expect(await expired()).toBeGreaterThan(0);
    } finally {
      await own.stop();
    }
  }, 60_000);
});

describe('shutdown during a long maintenance run', () => {
  it('ends the run after the batch in progress instead of waiting for the whole backlog', async () => {
    const own = await startTestServer({ MAINTENANCE_INTERVAL_SECONDS: '1' });
    const backlog = 20_000;
    try {
      // A backlog of 20 batches of expired rate-limit rows, each batch made to take 0.2 s.
      await own.sql("insert into rate_limits (key, points, expire) select 'backlog:' || g, 1, ? from generate_series(1, ?) g", [Date.now() - 60_000, backlog]);
      await slowDeletes(own, 'rate_limits', 0.2);
      const left = async () => Number((await own.sql<{ n: string }>("select count(*) as n from rate_limits where key like 'backlog:%'"))[0].n);
      await waitUntil(async () => (await left()) < backlog, 'a first batch of the backlog purged', 15_000);
    } finally {
      // Shutdown now waits for the run only until its batch in progress ends (before, for all 20).
      await own.stop();
    }
    const cut = own.logs.find((line) => line.msg === 'maintenance cut short by shutdown');
    expect(cut, 'a run cut short by the shutdown').toBeDefined();
    expect(cut!.purged.rateLimits).toBeLessThan(backlog);
    expect(own.logs.some((line) => line.msg === 'maintenance done' && line.purged.rateLimits > 0)).toBe(false);
  }, 60_000);
});

import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processEnv } from '../../src/config/config.js';
import { CHANGE_PASSWORD, DELETE_ME, DELETE_USER, FORGOT_PASSWORD, LOGIN, LOGOUT_ALL, ME, REFRESH, registerAccount, RESET_PASSWORD, REVOKE_SESSION, SESSIONS, type SignedInAccount, START_UP_ADMIN, UPDATE_USER } from '../support/accounts.js';
import { errorCode, type GraphQLResponse, startTestServer, type TestServer } from '../support/server.js';
import { enableMfa, lockdownTokenOf, LOCK_ACCOUNT, REQUEST_EMAIL_CHANGE, START_TOTP } from '../support/mfa.js';
import { resetTokenOf, startSmtpServer, type TestSmtpServer } from '../support/smtp.js';

// A thief holding stolen refresh tokens rotates them in a tight loop while the owner (or an admin)
// ends every session of the account. Once the ending operation has answered, nothing the thief holds
// may work: not a token issued before, and not one rotated from a refresh that was in flight.
// Rotation and ending race only where transactions really run side by side, so this file needs a
// PostgreSQL server (DATABASE_URL); the embedded database runs one statement at a time.
const ON_POSTGRESQL = Boolean(processEnv().DATABASE_URL);
/** Trials per operation: a race that wins one time in ten survives 20 trials with probability 0.9^20 ≈ 12 %; 30 make it 4 %. */
const TRIALS = 30;
/** Stolen device sessions, each rotated by its own loop, per trial. */
const THIEVES = 4;
/** Rotations every thief has made before the owner acts, so the loops are in full swing. */
const WARM_UP_ROTATIONS = 3;

const { ADMIN_EMAIL, ADMIN_PASSWORD } = START_UP_ADMIN;

let server: TestServer;
let smtp: TestSmtpServer;
let adminToken: string;

beforeAll(async () => {
  if (!ON_POSTGRESQL) return;
  smtp = await startSmtpServer();
  server = await startTestServer({ RATE_LIMIT_SCALE: '0', SMTP_URL: smtp.url, ADMIN_EMAIL, ADMIN_PASSWORD });
  const admin = await server.graphql(LOGIN, { input: { identifier: ADMIN_EMAIL, password: ADMIN_PASSWORD } });
  adminToken = admin.data!.login.accessToken;
});
afterAll(async () => {
  await server?.stop();
  await smtp?.stop();
});

/** One stolen device session, rotated in a loop: the last pair it obtained, and how many it got. */
interface Thief {
  accessToken: string;
  refreshToken: string;
  rotations: number;
  /** Every pair it obtained, oldest first (the stolen one included). */
  issued: Array<{ accessToken: string; refreshToken: string }>;
  /** When each of its successful refreshes was sent (performance.now()). */
  succeeded: number[];
  /** Resolves when the loop stops: its refresh was refused, or it was told to stop. */
  done: Promise<void>;
  stop(): void;
}

function startThief(stolen: { accessToken: string; refreshToken: string }): Thief {
  let stopped = false;
  const thief: Thief = {
    ...stolen,
    rotations: 0,
    issued: [{ ...stolen }],
    succeeded: [],
    done: Promise.resolve(),
    stop: () => {
      stopped = true;
    },
  };
  thief.done = (async () => {
    while (!stopped) {
      const sentAt = performance.now();
      const rotated = await server.graphql(REFRESH, { refreshToken: thief.refreshToken });
      const pair = rotated.data?.refreshToken;
      if (!pair) return;
      thief.succeeded.push(sentAt);
      thief.accessToken = pair.accessToken;
      thief.refreshToken = pair.refreshToken;
      thief.issued.push({ accessToken: pair.accessToken, refreshToken: pair.refreshToken });
      thief.rotations += 1;
    }
  })();
  return thief;
}

/**
 * How long a thief's loop may take, once the operation has answered, to meet its first refusal (it
 * stops there). Only a bound: what decides is whether a refresh sent after the answer succeeded.
 */
const SETTLE_CAP_MS = 30_000;

/**
 * Waits (bounded) for the thief's loop to be refused; `false` when a refresh it sent after
 * `answeredAt` (when the operation's answer arrived) succeeded, or it was still rotating at the cap.
 */
async function settle(thief: Thief, answeredAt: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const ended = await Promise.race([thief.done.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), SETTLE_CAP_MS)))]);
  clearTimeout(timer);
  thief.stop();
  await thief.done;
  return ended && !thief.succeeded.some((sentAt) => sentAt > answeredAt);
}

/** Pairs checked besides the last: rotated within the reuse interval, a replay of one would get the live successor. */
const EARLIER_PAIRS = 3;

/**
 * Whether a token the thief obtained still works: the last access or refresh token, or one of the
 * pairs just before it (presented again within the reuse interval, a refresh token would be answered
 * with its device session's live successor, if the session had one).
 */
async function holdsWorkingToken(thief: Thief): Promise<boolean> {
  for (const pair of thief.issued.slice(-(EARLIER_PAIRS + 1)).reverse()) {
    const me = await server.graphql(ME, {}, { token: pair.accessToken });
    if (me.data?.me) return true;
    const refreshed = await server.graphql(REFRESH, { refreshToken: pair.refreshToken });
    if (refreshed.data?.refreshToken) return true;
  }
  return false;
}

/** Whether anything the thief holds still works once the owner's operation has answered (at `answeredAt`). */
async function survives(thief: Thief, answeredAt: number): Promise<boolean> {
  // A refresh sent after the answer that succeeded has obviously survived.
  return !(await settle(thief, answeredAt)) || holdsWorkingToken(thief);
}

async function signInAgain(account: SignedInAccount, password = account.password) {
  const response = await server.graphql(LOGIN, { input: { identifier: account.user.email, password } });
  if (!response.data?.login) throw new Error(`login failed: ${JSON.stringify(response.errors)}`);
  return response.data.login as { accessToken: string; refreshToken: string };
}

async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('the thieves never got going');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** What one trial prepares: the owner's own session, and the thieves' stolen ones. */
interface Trial {
  owner: SignedInAccount;
  thieves: Thief[];
  /** The device-session id (as `sessions` lists it) of the first thief. */
  firstThiefSession: string;
}

/**
 * Runs `trials` trials of `operation` against thieves rotating stolen sessions of a fresh account,
 * and returns how many trials left a thief with a working token. `prepare` runs before the thieves
 * start (e.g. to obtain a reset token); `operation` must answer successfully.
 */
async function race<P>(
  name: string,
  operation: (trial: Trial, prepared: P) => Promise<GraphQLResponse>,
  prepare: (owner: SignedInAccount) => Promise<P> = async () => undefined as P,
  afterwards: (owner: SignedInAccount) => Promise<void> = async () => {},
): Promise<{ survivors: number; trials: number }> {
  let survivors = 0;
  for (let index = 0; index < TRIALS; index += 1) {
    const owner = await registerAccount(server);
    const stolen = await Promise.all(Array.from({ length: THIEVES }, () => signInAgain(owner)));
    const listed = await server.graphql(SESSIONS, {}, { token: stolen[0].accessToken });
    const firstThiefSession = (listed.data?.sessions as Array<{ id: string; current: boolean }>).find((session) => session.current)!.id;
    const prepared = await prepare(owner);
    const thieves = stolen.map(startThief);
    await until(() => thieves.every((thief) => thief.rotations >= WARM_UP_ROTATIONS));
    const answer = await operation({ owner, thieves, firstThiefSession }, prepared);
    const answeredAt = performance.now();
    expect(answer.errors, `${name}, trial ${index + 1}: ${JSON.stringify(answer.errors)}`).toBeUndefined();
    const settled = await Promise.all(thieves.map((thief) => settle(thief, answeredAt)));
    await afterwards(owner);
    const working = await Promise.all(thieves.map(holdsWorkingToken));
    if (settled.includes(false) || working.includes(true)) survivors += 1;
  }
  console.log(`${name}: ${survivors} survivors / ${TRIALS} trials (${THIEVES} thieves each)`);
  return { survivors, trials: TRIALS };
}

async function resetTokenFor(owner: SignedInAccount): Promise<string> {
  const requested = await server.graphql(FORGOT_PASSWORD, { input: { identifier: owner.user.email } });
  expect(requested.data?.forgotPassword).toBe(true);
  return resetTokenOf(await smtp.waitFor((mail) => mail.to.includes(owner.user.email) && /reset/i.test(mail.subject)));
}

describe.skipIf(!ON_POSTGRESQL)('ending sessions while a thief rotates stolen refresh tokens (PostgreSQL)', () => {
  // Each test runs TRIALS trials of a few hundred requests.
  const TIMEOUT = 240_000;

  it('resetPassword: no thief keeps a working token', { timeout: TIMEOUT }, async () => {
    const result = await race(
      'resetPassword',
      (_trial, token: string) => server.graphql(RESET_PASSWORD, { input: { token, newPassword: `a brand new passphrase ${Date.now()}` } }),
      resetTokenFor,
    );
    expect(result.survivors).toBe(0);
  });

  it('changePassword: no thief keeps a working token (the owner\'s session stays)', { timeout: TIMEOUT }, async () => {
    const result = await race('changePassword', ({ owner }) =>
      server.graphql(CHANGE_PASSWORD, { input: { currentPassword: owner.password, newPassword: `a brand new passphrase ${Date.now()}` } }, { token: owner.accessToken }),
    );
    expect(result.survivors).toBe(0);
  });

  it('logoutAll: no thief keeps a working token', { timeout: TIMEOUT }, async () => {
    const result = await race('logoutAll', ({ owner }) => server.graphql(LOGOUT_ALL, {}, { token: owner.accessToken }));
    expect(result.survivors).toBe(0);
  });

  it('revokeSession: the revoked device session keeps no working token', { timeout: TIMEOUT }, async () => {
    let survivors = 0;
    // Only the first thief's device session is revoked; the others are the owner's business.
    const result = await race('revokeSession', async ({ owner, thieves, firstThiefSession }) => {
      const answer = await server.graphql(REVOKE_SESSION, { id: firstThiefSession }, { token: owner.accessToken });
      const answeredAt = performance.now();
      expect(answer.data?.revokeSession).toBe(true);
      if (await survives(thieves[0], answeredAt)) survivors += 1;
      // The other device sessions are not the subject here: stop their loops and sign them out.
      await server.graphql(LOGOUT_ALL, {}, { token: owner.accessToken });
      return answer;
    });
    console.log(`revokeSession (the revoked device only): ${survivors} survivors / ${result.trials} trials`);
    expect(survivors).toBe(0);
  });

  it('deactivation by an admin: no thief keeps a working token, also after reactivation', { timeout: TIMEOUT }, async () => {
    const result = await race(
      'deactivation',
      async ({ owner }) => {
        const answer = await server.graphql(UPDATE_USER, { id: owner.user.id, input: { active: false } }, { token: adminToken });
        expect(answer.data?.updateUser.active).toBe(false);
        return answer;
      },
      undefined,
      // A deactivated account refuses every token anyway; what matters is that none comes back with the account.
      async (owner) => {
        const answer = await server.graphql(UPDATE_USER, { id: owner.user.id, input: { active: true } }, { token: adminToken });
        expect(answer.data?.updateUser.active).toBe(true);
      },
    );
    expect(result.survivors).toBe(0);
  });

  it('deleteMe: the deletion succeeds every time and no thief keeps a working token', { timeout: TIMEOUT }, async () => {
    const result = await race('deleteMe', async ({ owner }) => {
      const answer = await server.graphql(DELETE_ME, { password: owner.password }, { token: owner.accessToken });
      expect(errorCode(answer)).toBeUndefined();
      expect(answer.data?.deleteMe).toBe(true);
      expect(await server.sql('select id from users where id = ?', [owner.user.id])).toEqual([]);
      return answer;
    });
    expect(result.survivors).toBe(0);
  });

  it('deleteUser by an admin: the deletion succeeds every time and no thief keeps a working token', { timeout: TIMEOUT }, async () => {
    const result = await race('deleteUser', async ({ owner }) => {
      const answer = await server.graphql(DELETE_USER, { id: owner.user.id }, { token: adminToken });
      expect(errorCode(answer)).toBeUndefined();
      expect(answer.data?.deleteUser).toBe(true);
      return answer;
    });
    expect(result.survivors).toBe(0);
  });

  // A sign-in compares the password against the row it read before; the comparison takes a while.
  // A password change that commits meanwhile must win: the sign-in writes nothing, or its session
  // is among those the change ends. Sign-ins with the old password are fired in waves around the change.
  it('a sign-in with the old password racing changePassword never outlives the change', { timeout: TIMEOUT }, async () => {
    // With the change, within the free attempts of the account backoff (each attempt counts until it succeeds).
    const SIGN_INS = 4;
    let survivors = 0;
    let signedIn = 0;
    for (let index = 0; index < TRIALS; index += 1) {
      const owner = await registerAccount(server);
      const attempts = Array.from({ length: SIGN_INS }, (_, wave) =>
        new Promise((resolve) => setTimeout(resolve, wave % 3)).then(() => server.graphql(LOGIN, { input: { identifier: owner.user.email, password: owner.password } })),
      );
      const change = await server.graphql(
        CHANGE_PASSWORD,
        { input: { currentPassword: owner.password, newPassword: `a brand new passphrase ${Date.now()}` } },
        { token: owner.accessToken },
      );
      expect(change.errors, JSON.stringify(change.errors)).toBeUndefined();
      const pairs = (await Promise.all(attempts)).flatMap((answer) => (answer.data?.login ? [answer.data.login as { accessToken: string; refreshToken: string }] : []));
      signedIn += pairs.length;
      const working = await Promise.all(pairs.map((pair) => holdsWorkingToken({ ...pair, rotations: 0, issued: [pair], succeeded: [], done: Promise.resolve(), stop: () => {} })));
      if (working.includes(true)) survivors += 1;
    }
    console.log(`sign-in racing changePassword: ${survivors} survivors / ${TRIALS} trials (${SIGN_INS} sign-ins each, ${signedIn} succeeded in all)`);
    expect(survivors).toBe(0);
  });
});

describe.skipIf(!ON_POSTGRESQL)("a lockdown while the hijacker's requests are on their way (PostgreSQL)", () => {
  it('no re-authentication or enrollment in flight undoes it: sign-in stays refused and no secret stays behind', { timeout: 240_000 }, async () => {
    let survivors = 0;
    for (let index = 0; index < TRIALS; index += 1) {
      // The hijacker knows the password and is signed in; a notice of theirs gave the owner a link.
      const account = await registerAccount(server);
      const auth = { token: account.accessToken };
      expect((await server.graphql(REQUEST_EMAIL_CHANGE, { newEmail: `elsewhere-${Date.now()}-${index}@example.org`, password: account.password }, auth)).errors).toBeUndefined();
      const link = lockdownTokenOf(await smtp.waitFor((mail) => mail.to === account.user.email && mail.subject === 'Someone asked to change your email address'));

      // Two loops of requests that prove the right password: a changePassword the policy refuses
      // (the password check comes first, then clears the backoff), and starting an enrollment.
      let stopped = false;
      let sent = 0;
      const loop = (send: () => Promise<GraphQLResponse>, goOn: (answer: GraphQLResponse) => boolean) =>
        (async () => {
          while (!stopped) {
            const answer = await send();
            sent += 1;
            if (!goOn(answer)) return;
          }
        })();
      const loops = [
        loop(() => server.graphql(CHANGE_PASSWORD, { input: { currentPassword: account.password, newPassword: 'short' } }, auth), (answer) => errorCode(answer) === 'BAD_USER_INPUT'),
        loop(() => server.graphql(START_TOTP, { password: account.password }, auth), (answer) => Boolean(answer.data?.startTotpEnrollment)),
      ];
      await until(() => sent >= 4);
      const locked = await server.graphql(LOCK_ACCOUNT, { token: link });
      expect(locked.data?.lockAccount, JSON.stringify(locked.errors)).toBe(true);
      stopped = true;
      await Promise.all(loops);

      const signIn = await server.graphql(LOGIN, { input: { identifier: account.user.email, password: account.password } });
      const [row] = await server.sql<{ failed_login_count: number; totp_secret: string | null }>('select failed_login_count, totp_secret from users where id = ?', [account.user.id]);
      if (signIn.data?.login || row.failed_login_count < 100 || row.totp_secret !== null) survivors += 1;
    }
    console.log(`lockdown racing the hijacker's re-authentications and enrollments: ${survivors} survivors / ${TRIALS} trials`);
    expect(survivors).toBe(0);
  });
});

describe.skipIf(!ON_POSTGRESQL)('requests racing the deletion of their account (PostgreSQL)', () => {
  it('answer as for an account that is gone, never INTERNAL_SERVER_ERROR: an MFA sign-in, a new verification code', { timeout: 240_000 }, async () => {
    const answers = new Map<string, number>();
    const note = (what: string, response: GraphQLResponse) => {
      const key = `${what}: ${errorCode(response) ?? 'ok'}`;
      answers.set(key, (answers.get(key) ?? 0) + 1);
    };
    for (let index = 0; index < TRIALS; index += 1) {
      const account = await enableMfa(server, await registerAccount(server));
      const [signIn, resend] = await Promise.all([
        server.graphql(LOGIN, { input: { identifier: account.user.email, password: account.password } }),
        server.graphql('mutation { sendVerificationEmail }', {}, { token: account.accessToken }),
        server.graphql(DELETE_USER, { id: account.user.id }, { token: adminToken }),
      ]);
      note('login', signIn);
      note('sendVerificationEmail', resend);
    }
    console.log(`requests racing deleteUser over ${TRIALS} trials: ${JSON.stringify(Object.fromEntries(answers))}`);
    expect([...answers.keys()].filter((key) => key.endsWith('INTERNAL_SERVER_ERROR'))).toEqual([]);
  });
});

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditEventsOf, CHANGE_PASSWORD, FORGOT_PASSWORD, LOGIN, ME, newAccountInput, REFRESH, REGISTER, registerAccount, RESET_PASSWORD, type SignedInAccount, START_UP_ADMIN, startUpAdminToken, tokenLifetimesOf, UPDATE_USER } from './support/accounts.js';
import { CONFIRM_EMAIL_CHANGE, CONFIRM_TOTP, enableMfa, LOCK_ACCOUNT, lockdownTokenOf, ME_MFA, REQUEST_EMAIL_CHANGE, START_TOTP, Authenticator, VERIFY_MFA } from './support/mfa.js';
import { errorCode, errorField, startTestServer, type TestServer } from './support/server.js';
import { resetTokenOf, startSmtpServer, type TestSmtpServer, verificationCodeOf } from './support/smtp.js';
import { waitUntil } from './support/wait.js';

let smtp: TestSmtpServer;
let server: TestServer;
let adminToken: string;
beforeAll(async () => {
  smtp = await startSmtpServer();
  server = await startTestServer({ SMTP_URL: smtp.url, ...START_UP_ADMIN });
  adminToken = await startUpAdminToken(server);
});
afterAll(async () => {
  await server?.stop();
  await smtp?.stop();
});

const noticeTo = (address: string, subject: string) => smtp.waitFor((mail) => mail.to === address && mail.subject === subject);
/** Follows a lockdown link; `userAgent` is the browser it is followed from. */
const lock = (token: string, userAgent?: string) => server.graphql(LOCK_ACCOUNT, { token }, userAgent ? { headers: { 'user-agent': userAgent } } : {});
const login = (identifier: string, password: string, deviceToken?: string) => server.graphql(LOGIN, { input: { identifier, password, deviceToken } });
let addressCounter = 0;
const attackerAddress = () => `attacker-${Date.now()}-${(addressCounter += 1)}@evil.example`;

/** The account's password-changed notice's lockdown token, after a changePassword. */
async function changePasswordNotice(account: SignedInAccount, newPassword: string, code?: string): Promise<string> {
  const notices = () => smtp.messages.filter((mail) => mail.to === account.user.email && mail.subject === 'Your password was changed');
  const before = notices().length;
  const changed = await server.graphql(CHANGE_PASSWORD, { input: { currentPassword: account.password, newPassword, code } }, { token: account.accessToken });
  expect(changed.data?.changePassword).toBe(true);
  await smtp.waitFor(() => notices().length > before);
  return lockdownTokenOf(notices().at(-1)!);
}

/**
 * The lockdown token of the "someone asked to change your email address" notice, after the owner
 * asked (a notice that ends no session, unlike a password change).
 */
async function emailChangeNotice(account: SignedInAccount): Promise<string> {
  const asked = await server.graphql(REQUEST_EMAIL_CHANGE, { newEmail: attackerAddress().replace('attacker', 'elsewhere'), password: account.password }, { token: account.accessToken });
  expect(asked.data?.requestEmailChange).toBe(true);
  return lockdownTokenOf(await noticeTo(account.user.email, 'Someone asked to change your email address'));
}

/** The account's audit events with where they came from, as an admin reads them. */
async function auditTrailOf(userId: string): Promise<Array<{ type: string; ip: string | null; userAgent: string | null; detail: string | null }>> {
  const response = await server.graphql('query Audit($userId: ID) { auditEvents(first: 100, userId: $userId) { edges { node { type ip userAgent detail } } } }', { userId }, { token: adminToken });
  if (!response.data) throw new Error(`auditEvents failed: ${JSON.stringify(response.errors)}`);
  return response.data.auditEvents.edges.map((edge: { node: { type: string; ip: string | null; userAgent: string | null; detail: string | null } }) => edge.node);
}

async function stillSignedIn(accessToken: string): Promise<boolean> {
  return !(await server.graphql(ME, {}, { token: accessToken })).errors;
}

describe('an account hijacked by password, taken back with the lockdown link', () => {
  it('undoes the email change and the MFA enrollment, ends every session, blocks sign-in until the owner resets the password', async () => {
    const owner = await registerAccount(server);
    const ownerAddress = owner.user.email;

    // The attacker knows the password: signs in, moves the account to their address, turns on MFA.
    const attacker = (await login(ownerAddress, owner.password)).data!.login;
    const attackerSession = { ...owner, accessToken: attacker.accessToken };
    const theirs = attackerAddress();
    expect((await server.graphql(REQUEST_EMAIL_CHANGE, { newEmail: theirs, password: owner.password }, { token: attacker.accessToken })).data?.requestEmailChange).toBe(true);
    const changeCode = verificationCodeOf(await smtp.waitFor((mail) => mail.to === theirs && mail.subject.startsWith('Confirm your new email address')));
    expect((await server.graphql(CONFIRM_EMAIL_CHANGE, { code: changeCode }, { token: attacker.accessToken })).data?.confirmEmailChange.email).toBe(theirs);
    const hijacked = await enableMfa(server, attackerSession);
    const attackerRefresh = (await login(theirs, owner.password)).errors?.[0].extensions?.mfaToken as string;
    const attackerDevice = (await server.graphql(VERIFY_MFA, { mfaToken: attackerRefresh, code: hijacked.recoveryCodes[0] })).data!.verifyMfa;
    // The owner's own session was ended by the email change.
    expect(await stillSignedIn(owner.accessToken)).toBe(false);
    // The attacker's notices went to the attacker's address, with links of their own.
    const attackersLink = lockdownTokenOf(await noticeTo(theirs, 'Two-factor sign-in was turned on'));

    // The owner's old address got two notices, each with a link; the first one is enough.
    const requested = await noticeTo(ownerAddress, 'Someone asked to change your email address');
    await noticeTo(ownerAddress, 'Your email address was changed');
    const ownersLink = lockdownTokenOf(requested);
    const locked = await lock(ownersLink);
    expect(locked.errors).toBeUndefined();
    expect(locked.data?.lockAccount).toBe(true);

    // Every session is gone, refresh tokens included.
    expect(await stillSignedIn(attacker.accessToken)).toBe(false);
    expect(await stillSignedIn(attackerDevice.accessToken)).toBe(false);
    expect(errorCode(await server.graphql(REFRESH, { refreshToken: attackerDevice.refreshToken }))).toBe('UNAUTHENTICATED');
    // Nobody signs in, with the password or the attacker's device token, at either address.
    for (const identifier of [ownerAddress, theirs]) {
      const refused = await login(identifier, owner.password, attackerDevice.deviceToken);
      expect(['RATE_LIMITED', 'UNAUTHENTICATED']).toContain(errorCode(refused));
      expect(refused.data ?? null).toBeNull();
    }
    // The attacker's own lockdown link died with the lockdown: it cannot lock the owner out again.
    expect(errorField(await lock(attackersLink))).toBe('token');

    // The reset link went to the restored address; after the reset the owner signs in without MFA.
    const resetMail = await noticeTo(ownerAddress, 'Your account is locked: choose a new password');
    const newPassword = 'the rightful owner is back 42';
    expect((await server.graphql(RESET_PASSWORD, { input: { token: resetTokenOf(resetMail), newPassword } })).data?.resetPassword).toBe(true);
    const back = await login(ownerAddress, newPassword);
    expect(back.errors).toBeUndefined();
    const me = await server.graphql(ME_MFA, {}, { token: back.data!.login.accessToken });
    expect(me.data!.me).toMatchObject({ id: owner.user.id, email: ownerAddress, emailVerified: true, mfaEnabled: false });
    expect(errorCode(await login(theirs, newPassword))).toBe('UNAUTHENTICATED');

    const events = (await auditEventsOf(server, adminToken, owner.user.id)).map((event) => event.type);
    expect(events).toEqual(expect.arrayContaining(['EMAIL_CHANGE_REQUESTED', 'EMAIL_CHANGED', 'MFA_ENABLED', 'ACCOUNT_LOCKED', 'MFA_DISABLED', 'PASSWORD_RESET_COMPLETED']));
  });
});

describe("an admin's correction of the address after a hijack", () => {
  it('stands: no lockdown link gives the account back to the address the admin moved it away from', async () => {
    const owner = await registerAccount(server);
    const ownerAddress = owner.user.email;
    // The hijacker moves the account to their address and changes the password there: a notice
    // with a link (to their address) lands in their mailbox.
    const theirs = attackerAddress();
    expect((await server.graphql(REQUEST_EMAIL_CHANGE, { newEmail: theirs, password: owner.password }, { token: owner.accessToken })).data?.requestEmailChange).toBe(true);
    const changeCode = verificationCodeOf(await smtp.waitFor((mail) => mail.to === theirs && mail.subject.startsWith('Confirm your new email address')));
    const moved = await server.graphql(CONFIRM_EMAIL_CHANGE, { code: changeCode }, { token: owner.accessToken });
    expect(moved.data?.confirmEmailChange.email).toBe(theirs);
    const hijacker = { ...owner, user: { ...owner.user, email: theirs } };
    const theirPassword = 'the hijacker was here 31';
    const linkFromTheirTime = await changePasswordNotice(hijacker, theirPassword);

    // Support puts the owner's address back; the admin's change mails the previous (hijacker's) address.
    const corrected = await server.graphql(UPDATE_USER.replace('{ id role active }', '{ id email }'), { id: owner.user.id, input: { email: ownerAddress } }, { token: adminToken });
    expect(corrected.data?.updateUser.email).toBe(ownerAddress);
    const linkFromAdminNotice = lockdownTokenOf(await noticeTo(theirs, 'Your email address was changed'));
    // The hijacker's session ended with the admin's change.
    expect((await server.graphql(ME, {}, { token: owner.accessToken })).errors?.[0].extensions?.reason).toBe('SESSION_ENDED');
    // The owner resets the password at their address and signs in.
    expect((await server.graphql(FORGOT_PASSWORD, { input: { identifier: ownerAddress } })).data?.forgotPassword).toBe(true);
    const resetMail = await smtp.waitFor((mail) => mail.to === ownerAddress && mail.subject === 'Reset your password');
    const ownersPassword = 'mine again after support 57';
    expect((await server.graphql(RESET_PASSWORD, { input: { token: resetTokenOf(resetMail), newPassword: ownersPassword } })).data?.resetPassword).toBe(true);

    // The link from the hijacker's time is dead. The admin's notice's link locks, but gives nothing
    // back to the hijacker's address: the account stays at the owner's, where its reset link goes.
    expect(errorField(await lock(linkFromTheirTime))).toBe('token');
    expect((await lock(linkFromAdminNotice)).data?.lockAccount).toBe(true);
    const [row] = await server.sql<{ email: string }>('select email from users where id = ?', [owner.user.id]);
    expect(row.email).toBe(ownerAddress);
    await noticeTo(ownerAddress, 'Your account is locked: choose a new password');
    expect(smtp.messages.filter((mail) => mail.to === theirs && mail.subject === 'Your account is locked: choose a new password')).toEqual([]);
    expect(errorCode(await login(theirs, ownersPassword))).toBe('UNAUTHENTICATED');
  });
});

describe('lockAccount', () => {
  it('refuses a forged or used token and changes nothing', async () => {
    const account = await registerAccount(server);
    const token = await changePasswordNotice(account, 'another long passphrase 1');
    expect(errorField(await lock('A'.repeat(43)))).toBe('token');
    expect(errorField(await lock('short'))).toBe('token');
    expect(await stillSignedIn(account.accessToken)).toBe(true);
    expect((await lock(token)).data?.lockAccount).toBe(true);
    const again = await lock(token);
    expect(errorCode(again)).toBe('BAD_USER_INPUT');
    expect(errorField(again)).toBe('token');
  });

  it('works from any notice of the last 7 days: a newer notice does not void an older link', async () => {
    const account = await registerAccount(server);
    const older = await changePasswordNotice(account, 'another long passphrase 1');
    const renamed = { ...account, password: 'another long passphrase 1' };
    const newer = await changePasswordNotice(renamed, 'and yet another passphrase 2');
    expect(newer).not.toBe(older);
    expect((await lock(older)).data?.lockAccount).toBe(true);
    expect(await stillSignedIn(account.accessToken)).toBe(false);
    const refused = await login(account.user.email, 'and yet another passphrase 2');
    expect(errorCode(refused)).toBe('RATE_LIMITED');
    expect(refused.errors![0].message).toMatch(/reset/i);
  });

  it('expires after 7 days', async () => {
    const account = await registerAccount(server);
    const token = await changePasswordNotice(account, 'another long passphrase 1');
    await server.sql(`update "one_time_tokens" set "expires_at" = now() - interval '1 second' where "user_id" = ? and "purpose" = 'LOCKDOWN'`, [account.user.id]);
    expect(errorField(await lock(token))).toBe('token');
    expect(await stillSignedIn(account.accessToken)).toBe(true);
  });

  it('turns off an MFA enrollment of the last 7 days even when the link was mailed after it, but not an older one', async () => {
    // A hijacker who turns MFA on before moving the address: the owner's links all come after the
    // enrollment (the "turned on" notice's own link included), and must still undo it.
    const owner = await registerAccount(server);
    const ownerAddress = owner.user.email;
    const attacker = (await login(ownerAddress, owner.password)).data!.login;
    const attackerSession = { ...owner, accessToken: attacker.accessToken };
    const hijacked = await enableMfa(server, attackerSession);
    const turnedOn = lockdownTokenOf(await noticeTo(ownerAddress, 'Two-factor sign-in was turned on'));
    const theirs = attackerAddress();
    const code = await hijacked.authenticator.next();
    expect((await server.graphql(REQUEST_EMAIL_CHANGE, { newEmail: theirs, password: owner.password, code }, { token: attacker.accessToken })).data?.requestEmailChange).toBe(true);
    const changeCode = verificationCodeOf(await smtp.waitFor((mail) => mail.to === theirs && mail.subject.startsWith('Confirm your new email address')));
    expect((await server.graphql(CONFIRM_EMAIL_CHANGE, { code: changeCode }, { token: attacker.accessToken })).data?.confirmEmailChange.email).toBe(theirs);

    expect((await lock(turnedOn)).data?.lockAccount).toBe(true);
    const [row] = await server.sql<{ email: string; mfa_enabled_at: Date | null }>('select "email", "mfa_enabled_at" from "users" where "id" = ?', [owner.user.id]);
    expect(row).toEqual({ email: ownerAddress, mfa_enabled_at: null });
    const newPassword = 'the rightful owner is back 42';
    const resetMail = await noticeTo(ownerAddress, 'Your account is locked: choose a new password');
    expect((await server.graphql(RESET_PASSWORD, { input: { token: resetTokenOf(resetMail), newPassword } })).data?.resetPassword).toBe(true);
    const back = await login(ownerAddress, newPassword);
    expect(back.errors).toBeUndefined();
    expect(back.data!.login.accessToken).toEqual(expect.any(String));

    // The owner's own enrollment of more than 7 days ago stays.
    const longTime = await enableMfa(server, await registerAccount(server));
    await server.sql(`update "users" set "mfa_enabled_at" = now() - interval '8 days' where "id" = ?`, [longTime.user.id]);
    const link = await changePasswordNotice(longTime, 'another long passphrase 1', await longTime.authenticator.next());
    expect((await lock(link)).data?.lockAccount).toBe(true);
    const [kept] = await server.sql<{ mfa_enabled_at: Date | null }>('select "mfa_enabled_at" from "users" where "id" = ?', [longTime.user.id]);
    expect(kept.mfa_enabled_at).not.toBeNull();
  });

  /** Moves the account to `address` with the code mailed there, as whoever holds `accessToken`. */
  async function moveTo(accessToken: string, password: string, address: string): Promise<void> {
    await server.graphql(REQUEST_EMAIL_CHANGE, { newEmail: address, password }, { token: accessToken });
    const code = verificationCodeOf(await smtp.waitFor((mail) => mail.to === address && mail.subject.startsWith('Confirm your new email address')));
    expect((await server.graphql(CONFIRM_EMAIL_CHANGE, { code }, { token: accessToken })).data?.confirmEmailChange.email).toBe(address);
  }
  const emailOf = async (userId: string) => (await server.sql<{ email: string }>('select "email" from "users" where "id" = ?', [userId]))[0].email;
  const lockedMailTo = (address: string) => smtp.messages.some((mail) => mail.to === address && mail.subject === 'Your account is locked: choose a new password');

  it("gives the account back to the followed link's address: the hijacker's own link keeps theirs, the owner's restores the owner's", async () => {
    const owner = await registerAccount(server);
    const ownerAddress = owner.user.email;
    const attacker = (await login(ownerAddress, owner.password)).data!.login;
    const theirs = attackerAddress();
    await moveTo(attacker.accessToken, owner.password, theirs);
    const ownersLink = lockdownTokenOf(await noticeTo(ownerAddress, 'Someone asked to change your email address'));
    // The hijacker earns a link at their own address and spends it first.
    const hijackerLink = await changePasswordNotice({ ...owner, user: { ...owner.user, email: theirs }, accessToken: attacker.accessToken }, 'hijacker chose this one 7');
    expect((await lock(hijackerLink, "hijacker's browser")).data?.lockAccount).toBe(true);
    expect(await emailOf(owner.user.id)).toBe(theirs);
    // The owner's address stays theirs: nobody else can register it while the owner's links live.
    expect(errorCode(await server.graphql(REGISTER, { input: newAccountInput({ email: ownerAddress }) }))).toBe('CONFLICT');
    // The owner's link, from an earlier address, overrides: the owner's address comes back, the reset link goes there.
    expect((await lock(ownersLink, "owner's browser")).data?.lockAccount).toBe(true);
    expect(await emailOf(owner.user.id)).toBe(ownerAddress);
    await noticeTo(ownerAddress, 'Your account is locked: choose a new password');
    // The log says who locked with which link: the hijacker with the link at their address, then the
    // owner with the one at theirs, and which address came back.
    const events = (await auditEventsOf(server, adminToken, owner.user.id)).map(({ type, detail }) => ({ type, detail }));
    expect(events).toEqual(
      expect.arrayContaining([
        { type: 'EMAIL_CHANGED', detail: `${ownerAddress} → ${theirs}` },
        { type: 'ACCOUNT_LOCKED', detail: `link mailed to ${theirs}` },
        { type: 'ACCOUNT_LOCKED', detail: `link mailed to ${ownerAddress}` },
        { type: 'EMAIL_RESTORED', detail: `${theirs} → ${ownerAddress}` },
      ]),
    );
    // Each lock records who followed the link: the address and browser of that request.
    const locks = (await auditTrailOf(owner.user.id)).filter((event) => event.type === 'ACCOUNT_LOCKED');
    expect(locks).toEqual(
      expect.arrayContaining([
        { type: 'ACCOUNT_LOCKED', ip: '127.0.0.1', userAgent: "hijacker's browser", detail: `link mailed to ${theirs}` },
        { type: 'ACCOUNT_LOCKED', ip: '127.0.0.1', userAgent: "owner's browser", detail: `link mailed to ${ownerAddress}` },
      ]),
    );
    expect(locks).toHaveLength(2);
  });

  it("forgets the addresses that came after the followed link's: a later lockdown never hands the account to one of them", async () => {
    const owner = await registerAccount(server);
    const ownerAddress = owner.user.email;
    const attacker = (await login(ownerAddress, owner.password)).data!.login;
    const [first, second] = [attackerAddress(), attackerAddress()];
    await moveTo(attacker.accessToken, owner.password, first);
    await moveTo(attacker.accessToken, owner.password, second);
    const atFirst = lockdownTokenOf(await noticeTo(first, 'Your email address was changed'));
    const alsoAtFirst = lockdownTokenOf(await noticeTo(first, 'Someone asked to change your email address'));
    // The hijacker spends a link mailed to their first address: it takes the account to that one.
    expect((await lock(atFirst)).data?.lockAccount).toBe(true);
    expect(await emailOf(owner.user.id)).toBe(first);
    // The owner's link overrides it, and every link of the hijacker's addresses dies with it.
    const ownersLink = lockdownTokenOf(await noticeTo(ownerAddress, 'Your email address was changed'));
    expect((await lock(ownersLink)).data?.lockAccount).toBe(true);
    expect(await emailOf(owner.user.id)).toBe(ownerAddress);
    expect(errorField(await lock(alsoAtFirst))).toBe('token');
    const resetMail = await smtp.waitFor((mail) => mail.to === ownerAddress && mail.subject === 'Your account is locked: choose a new password');
    const newPassword = 'the rightful owner is back 42';
    expect((await server.graphql(RESET_PASSWORD, { input: { token: resetTokenOf(resetMail), newPassword } })).data?.resetPassword).toBe(true);
    // A week on, the owner's older links have left the window; a new lockdown keeps the owner's address.
    await server.sql(`update "one_time_tokens" set "created_at" = now() - interval '8 days' where "user_id" = ? and "purpose" = 'LOCKDOWN' and "target" = ?`, [owner.user.id, ownerAddress]);
    const signedIn = (await login(ownerAddress, newPassword)).data!.login;
    const link = await changePasswordNotice({ ...owner, password: newPassword, accessToken: signedIn.accessToken }, 'and another one for good 7');
    expect((await lock(link)).data?.lockAccount).toBe(true);
    expect(await emailOf(owner.user.id)).toBe(ownerAddress);
  });

  it('gives an owner who moved on purpose, then was hijacked, the address of the link they follow, not an older one', async () => {
    const account = await registerAccount(server);
    const addressA = account.user.email;
    // The owner moves A → B; a hijacker moves B → X; the owner follows the notice that reached B.
    const addressB = attackerAddress().replace('attacker', 'owner');
    await moveTo(account.accessToken, account.password, addressB);
    const hijacker = (await login(addressB, account.password)).data!.login;
    const addressX = attackerAddress();
    await moveTo(hijacker.accessToken, account.password, addressX);
    const atB = lockdownTokenOf(await noticeTo(addressB, 'Your email address was changed'));

    expect((await lock(atB)).data?.lockAccount).toBe(true);
    expect(await emailOf(account.user.id)).toBe(addressB);
    await noticeTo(addressB, 'Your account is locked: choose a new password');
    expect(lockedMailTo(addressA) || lockedMailTo(addressX)).toBe(false);
    // Whoever holds A can still undo the move away from A for its 7 days, as any earlier address can.
    const atA = lockdownTokenOf(await noticeTo(addressA, 'Your email address was changed'));
    expect((await lock(atA)).data?.lockAccount).toBe(true);
    expect(await emailOf(account.user.id)).toBe(addressA);
  });
});

describe("a hijacker's enrollment against the owner's lockdown", () => {
  it('a started enrollment is removed by the lockdown and cannot be confirmed after it', async () => {
    const owner = await registerAccount(server);
    const hijacker = (await login(owner.user.email, owner.password)).data!.login;
    const started = await server.graphql(START_TOTP, { password: owner.password }, { token: hijacker.accessToken });
    const authenticator = new Authenticator(started.data!.startTotpEnrollment.secret);
    const link = await emailChangeNotice(owner);
    expect((await lock(link)).data?.lockAccount).toBe(true);
    const confirmed = await server.graphql(CONFIRM_TOTP, { code: await authenticator.next() }, { token: hijacker.accessToken });
    expect(errorCode(confirmed)).toBe('UNAUTHENTICATED');
    const [row] = await server.sql<{ totp_secret: string | null; mfa_enabled_at: Date | null }>('select "totp_secret", "mfa_enabled_at" from "users" where "id" = ?', [owner.user.id]);
    expect(row).toEqual({ totp_secret: null, mfa_enabled_at: null });
  });

  // The review's race: both requests passed authentication and wait for the account's row; the
  // lockdown gets it first. Held from a connection of the test's own, so it needs a real PostgreSQL.
  it.skipIf(!process.env.DATABASE_URL)('a confirmation already on its way when the lockdown commits changes nothing after it (PostgreSQL)', async () => {
    const owner = await registerAccount(server);
    const hijacker = (await login(owner.user.email, owner.password)).data!.login;
    const started = await server.graphql(START_TOTP, { password: owner.password }, { token: hijacker.accessToken });
    const authenticator = new Authenticator(started.data!.startTotpEnrollment.secret);
    const link = await emailChangeNotice(owner);
    const holder = new pg.Client({ connectionString: server.config.databaseUrl });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query('select 1 from "users" where "id" = $1 for update', [owner.user.id]);
      const waiting = async () => Number((await holder.query(`select count(*) from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()`)).rows[0].count);
      // The lockdown waits for the row within the bound of a statement (1.8 s): everything it waits
      // through is ready beforehand, and the waits are watched closely.
      const code = await authenticator.next();
      const locked = lock(link);
      await waitUntil(async () => (await waiting()) >= 1, 'the lockdown waiting for the account', 10_000, 5);
      const confirmed = server.graphql(CONFIRM_TOTP, { code }, { token: hijacker.accessToken });
      await waitUntil(async () => (await waiting()) >= 2, 'the confirmation waiting for the account', 10_000, 5);
      await holder.query('commit');
      expect((await locked).data?.lockAccount).toBe(true);
      const answer = await confirmed;
      expect(errorCode(answer)).toBe('UNAUTHENTICATED');
      expect(answer.errors?.[0].extensions?.reason).toBe('SESSION_ENDED');
    } finally {
      await holder.end();
    }
    const [row] = await server.sql<{ totp_secret: string | null; mfa_enabled_at: Date | null }>('select "totp_secret", "mfa_enabled_at" from "users" where "id" = ?', [owner.user.id]);
    expect(row).toEqual({ totp_secret: null, mfa_enabled_at: null });
  });
});

describe('security notices carry a lockdown link', () => {
  it('on a password change, MFA turned on and an email change asked for (the other notices are checked where they are sent)', async () => {
    const subjects = ['Your password was changed', 'Two-factor sign-in was turned on', 'Someone asked to change your email address'];
    const account = await registerAccount(server);
    await changePasswordNotice(account, 'another long passphrase 1');
    const renamed = { ...account, password: 'another long passphrase 1' };
    const started = await server.graphql(START_TOTP, { password: renamed.password }, { token: account.accessToken });
    const authenticator = new Authenticator(started.data!.startTotpEnrollment.secret);
    await server.graphql(CONFIRM_TOTP, { code: await authenticator.next() }, { token: account.accessToken });
    await server.graphql(REQUEST_EMAIL_CHANGE, { newEmail: attackerAddress(), password: renamed.password, code: await authenticator.next() }, { token: account.accessToken });
    for (const subject of subjects) {
      const mail = await noticeTo(account.user.email, subject);
      const link = new URL(mail.text.match(/https?:\/\/\S+\/lockdown\?token=\S+/)![0]);
      expect(`${link.origin}${link.pathname}`).toBe(`${server.config.appUrl}/lockdown`);
      expect(mail.html).toContain(`/lockdown?token=${lockdownTokenOf(mail)}`);
    }
    // Every one of the three links lives 7 days (CONTRACT.md), counted from its issue.
    const lifetimes = await tokenLifetimesOf(server, account.user.id, 'LOCKDOWN');
    expect(lifetimes).toHaveLength(subjects.length);
    for (const lifetime of lifetimes) {
      expect(lifetime).toBeGreaterThanOrEqual(7 * 24 * 60 * 60_000 - 2_000);
      expect(lifetime).toBeLessThanOrEqual(7 * 24 * 60 * 60_000 + 2_000);
    }
  });
});

describe('GET /lockdown', () => {
  it('serves the page under a strict CSP and spends nothing, however often it is opened', async () => {
    const account = await registerAccount(server);
    const token = await changePasswordNotice(account, 'another long passphrase 1');
    for (let opened = 0; opened < 3; opened += 1) {
      const page = await server.raw(`/lockdown?token=${token}`, { headers: { accept: 'text/html' } });
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect(page.headers.get('content-security-policy')).toMatch(/default-src 'none'; script-src 'nonce-[^']+'/);
      expect(page.headers.get('referrer-policy')).toBe('no-referrer');
      expect(page.headers.get('cache-control')).toBe('no-store');
      expect(page.text).not.toContain(token);
    }
    expect(await stillSignedIn(account.accessToken)).toBe(true);
    expect((await lock(token)).data?.lockAccount).toBe(true);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHANGE_PASSWORD, fromFreshAddress, LOGIN, registerAccount } from '../support/accounts.js';
import { DISABLE_TOTP, enableMfa, VERIFY_MFA } from '../support/mfa.js';
import { errorCode, startTestServer, type TestServer } from '../support/server.js';

// Production limits, and every request from an address of its own (TRUST_PROXY=1): only the
// per-account limits and the backoff can stop what these attackers do.
let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ RATE_LIMIT_SCALE: '1', TRUST_PROXY: '1' });
});
afterAll(async () => {
  await server?.stop();
});

const login = (identifier: string, password: string, deviceToken?: string) =>
  server.graphql(LOGIN, { input: { identifier, password, deviceToken } }, { headers: fromFreshAddress() });

describe('second-factor guessing', () => {
  it('a thief with a session and the password cannot guess codes at full speed by re-proving the password in between', async () => {
    const account = await enableMfa(server, await registerAccount(server, {}));
    const auth = { token: account.accessToken, headers: fromFreshAddress() };
    const answers: string[] = [];
    // Without a per-account code limit, four wrong codes and a changePassword(P, P) (which used to
    // clear the backoff) could repeat forever: about 3 in a million per guess, at bcrypt speed.
    for (let round = 0; round < 8 && !answers.includes('RATE_LIMITED'); round += 1) {
      for (let guess = 0; guess < 4; guess += 1) {
        const response = await server.graphql(DISABLE_TOTP, { password: account.password, code: String(200_000 + round * 10 + guess) }, { ...auth, headers: fromFreshAddress() });
        answers.push(errorCode(response)!);
      }
      await server.graphql(CHANGE_PASSWORD, { input: { currentPassword: account.password, newPassword: account.password } }, { ...auth, headers: fromFreshAddress() });
    }
    expect(answers).toContain('RATE_LIMITED');
    console.log(`wrong codes before RATE_LIMITED: ${answers.indexOf('RATE_LIMITED')} (of ${answers.length} tries)`);
    expect(answers.indexOf('RATE_LIMITED')).toBeLessThanOrEqual(10);
  });
});

describe('strangers against an MFA account', () => {
  it('cannot keep the owner out: a sign-in from a trusted device passes MFA while strangers hold the account in backoff', async () => {
    const owner = await enableMfa(server, await registerAccount(server, {}));
    // The owner signs in once on this device, which gives the device token.
    const first = await login(owner.user.email, owner.password);
    const firstToken = first.errors![0].extensions!.mfaToken as string;
    const device = (await server.graphql(VERIFY_MFA, { mfaToken: firstToken, code: owner.recoveryCodes[0] }, { headers: fromFreshAddress() })).data!.verifyMfa.deviceToken as string;

    // Strangers push the account into backoff with wrong passwords from many addresses.
    let held = false;
    for (let attempt = 0; attempt < 12 && !held; attempt += 1) held = errorCode(await login(owner.user.email, `wrong password number ${attempt}`)) === 'RATE_LIMITED';
    expect(held).toBe(true);
    expect(errorCode(await login(owner.user.email, owner.password))).toBe('RATE_LIMITED');

    // The owner's device still gets through, second factor included.
    const challenged = await login(owner.user.email, owner.password, device);
    expect(errorCode(challenged)).toBe('MFA_REQUIRED');
    const finished = await server.graphql(VERIFY_MFA, { mfaToken: challenged.errors![0].extensions!.mfaToken, code: owner.recoveryCodes[1], deviceToken: device }, { headers: fromFreshAddress() });
    expect(finished.errors).toBeUndefined();
    expect(finished.data!.verifyMfa.deviceToken).toBe(device);
    // And the strangers' backoff is still in force for everyone else.
    expect(errorCode(await login(owner.user.email, owner.password))).toBe('RATE_LIMITED');
  });
});

describe('a thief who knows the password and kept device tokens from before MFA was on', () => {
  it('gets 10 codes in 15 minutes however many tokens they collected, and no free restart per challenge', async () => {
    const account = await registerAccount(server, {});
    // The thief signed in three times while the account had no second factor: three trusted devices.
    const thiefDevices: string[] = [];
    for (let device = 0; device < 3; device += 1) thiefDevices.push((await login(account.user.email, account.password)).data!.login.deviceToken as string);
    const owner = await enableMfa(server, account);

    // Round after round of a correct password and wrong codes, from each token in turn: a fresh
    // challenge used to start the count over, and each token used to bring a budget of its own.
    const answers: string[] = [];
    for (let round = 0; round < 9 && !answers.includes('RATE_LIMITED'); round += 1) {
      const challenged = await login(owner.user.email, owner.password, thiefDevices[round % thiefDevices.length]);
      if (errorCode(challenged) !== 'MFA_REQUIRED') {
        answers.push(errorCode(challenged)!);
        break;
      }
      for (let guess = 0; guess < 5; guess += 1) {
        const response = await server.graphql(
          VERIFY_MFA,
          { mfaToken: challenged.errors![0].extensions!.mfaToken, code: String(300_000 + round * 10 + guess), deviceToken: thiefDevices[round % thiefDevices.length] },
          { headers: fromFreshAddress() },
        );
        answers.push(errorCode(response)!);
        if (errorCode(response) === 'RATE_LIMITED') break;
      }
    }
    console.log(`thief's devices: ${answers.filter((code) => code === 'BAD_USER_INPUT').length} wrong codes before RATE_LIMITED`);
    expect(answers).toContain('RATE_LIMITED');
    expect(answers.filter((code) => code === 'BAD_USER_INPUT').length).toBeLessThanOrEqual(10);
  });
});

describe('a thief who knows the password and stole a trusted device token', () => {
  // The hours such guessing takes pass here by expiring the device's and the devices' 15-minute and
  // hourly windows between challenges (as the soak test ages rows); the cap under test is not aged.
  const letTheHourPass = () => server.sql("update rate_limits set expire = 0 where key like 'loginPerDevice:%' or key like 'codeAttemptsPerAccount:devices:%'");
  const failedLogins = async (userId: string) => (await server.sql<{ failed_login_count: number }>('select failed_login_count from users where id = ?', [userId]))[0].failed_login_count;

  it('gets at most 100 codes from trusted devices, then pays in the account backoff like a stranger; a sign-in starts over', async () => {
    const owner = await enableMfa(server, await registerAccount(server, {}));
    const challenge = async (deviceToken: string) => {
      const challenged = await login(owner.user.email, owner.password, deviceToken);
      expect(errorCode(challenged)).toBe('MFA_REQUIRED');
      return challenged.errors![0].extensions!.mfaToken as string;
    };
    const first = await challenge(undefined as unknown as string);
    const device = (await server.graphql(VERIFY_MFA, { mfaToken: first, code: owner.recoveryCodes[0] }, { headers: fromFreshAddress() })).data!.verifyMfa.deviceToken as string;
    const guess = async (mfaToken: string, code: string) =>
      errorCode(await server.graphql(VERIFY_MFA, { mfaToken, code, deviceToken: device }, { headers: fromFreshAddress() }));

    // Twenty challenges of five wrong codes, an hour apart: the device pays, the account does not.
    const answers: Array<string | undefined> = [];
    for (let round = 0; round < 20; round += 1) {
      await letTheHourPass();
      const mfaToken = await challenge(device);
      for (let attempt = 0; attempt < 5; attempt += 1) answers.push(await guess(mfaToken, String(400_000 + round * 10 + attempt)));
    }
    expect(answers.filter((code) => code === 'BAD_USER_INPUT')).toHaveLength(100);
    expect(await failedLogins(owner.user.id)).toBe(0);

    // The 101st and later codes from the account's devices count where strangers' do, in the
    // backoff that a reset alone opens after 100 (without the cap, a device token and the password
    // guessed 240 codes a day, every day).
    await letTheHourPass();
    const beyond = await challenge(device);
    for (let attempt = 0; attempt < 3; attempt += 1) expect(await guess(beyond, String(500_000 + attempt))).toBe('BAD_USER_INPUT');
    expect(await failedLogins(owner.user.id)).toBe(3);
    console.log(`trusted device: 100 wrong codes paid by the device, then ${await failedLogins(owner.user.id)} counted in the account backoff`);

    // The owner's next sign-in, on the same device, starts the devices' count over.
    await letTheHourPass();
    const signedIn = await server.graphql(VERIFY_MFA, { mfaToken: await challenge(device), code: owner.recoveryCodes[1], deviceToken: device }, { headers: fromFreshAddress() });
    expect(signedIn.errors).toBeUndefined();
    expect(await failedLogins(owner.user.id)).toBe(0);
    expect(await guess(await challenge(device), '600000')).toBe('BAD_USER_INPUT');
    expect(await failedLogins(owner.user.id)).toBe(0);
  });
});

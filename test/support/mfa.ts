import { setTimeout as sleep } from 'node:timers/promises';
import { Secret, TOTP } from 'otpauth';
import type { SignedInAccount } from './accounts.js';
import type { CapturedMail } from './smtp.js';
import type { TestServer } from './server.js';

export const START_TOTP = 'mutation Start($password: String!) { startTotpEnrollment(password: $password) { secret otpauthUri } }';
export const CONFIRM_TOTP = 'mutation Confirm($code: String!) { confirmTotpEnrollment(code: $code) }';
export const VERIFY_MFA = 'mutation Verify($mfaToken: String!, $code: String!, $deviceToken: String) { verifyMfa(mfaToken: $mfaToken, code: $code, deviceToken: $deviceToken) { accessToken refreshToken deviceToken user { id email mfaEnabled } } }';
export const DISABLE_TOTP = 'mutation Disable($password: String!, $code: String!) { disableTotp(password: $password, code: $code) }';
export const REGENERATE_CODES = 'mutation Regenerate($password: String!, $code: String!) { regenerateRecoveryCodes(password: $password, code: $code) }';
export const DISABLE_USER_MFA = 'mutation AdminDisable($id: ID!) { disableUserMfa(id: $id) { id mfaEnabled } }';
export const REQUEST_EMAIL_CHANGE = 'mutation RequestChange($newEmail: String!, $password: String!, $code: String) { requestEmailChange(newEmail: $newEmail, password: $password, code: $code) }';
export const CONFIRM_EMAIL_CHANGE = 'mutation ConfirmChange($code: String!) { confirmEmailChange(code: $code) { id email emailVerified } }';
export const LOCK_ACCOUNT = 'mutation Lock($token: String!) { lockAccount(token: $token) }';
export const DELETE_ME_WITH_CODE = 'mutation DeleteMe($password: String!, $code: String) { deleteMe(password: $password, code: $code) }';
export const ME_MFA = '{ me { id email emailVerified mfaEnabled } }';

const PERIOD_MS = 30_000;
const stepOf = (time: number) => Math.floor(time / PERIOD_MS);

/**
 * An authenticator app, computed with the library the server uses (but on its own: the server's
 * code is not involved). It remembers the last step it gave out, because the server accepts each
 * step once and never an older one: {@link next} hands out the current step's code, or the next
 * step's (still inside the server's ±1 window), or waits for a step that has not been used.
 */
export class Authenticator {
  private readonly totp: TOTP;
  private lastStep = -1;

  constructor(readonly secret: string) {
    this.totp = new TOTP({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30 });
  }

  /** The code of the step `offset` steps from now (a clock ahead or behind), without remembering it. */
  at(offsetSteps: number, now = Date.now()): string {
    return this.totp.generate({ timestamp: now + offsetSteps * PERIOD_MS });
  }

  /** A code the server has not seen from this authenticator yet. */
  async next(): Promise<string> {
    let now = Date.now();
    const step = Math.max(this.lastStep + 1, stepOf(now));
    while (step > stepOf(now) + 1) {
      await sleep((stepOf(now) + 1) * PERIOD_MS - now + 50);
      now = Date.now();
    }
    this.lastStep = step;
    return this.totp.generate({ timestamp: step * PERIOD_MS + 1 });
  }

  /** Records that the server accepted `step` (or a later one) some other way. */
  used(step: number): void {
    this.lastStep = Math.max(this.lastStep, step);
  }
}

/** An account with MFA on: its authenticator and its recovery codes. */
export interface MfaAccount extends SignedInAccount {
  authenticator: Authenticator;
  recoveryCodes: string[];
}

/** Turns MFA on for a signed-in account through the API. */
export async function enableMfa(server: TestServer, account: SignedInAccount): Promise<MfaAccount> {
  const started = await server.graphql(START_TOTP, { password: account.password }, { token: account.accessToken });
  if (!started.data?.startTotpEnrollment) throw new Error(`startTotpEnrollment failed: ${JSON.stringify(started.errors)}`);
  const authenticator = new Authenticator(started.data.startTotpEnrollment.secret);
  const confirmed = await server.graphql(CONFIRM_TOTP, { code: await authenticator.next() }, { token: account.accessToken });
  if (!confirmed.data?.confirmTotpEnrollment) throw new Error(`confirmTotpEnrollment failed: ${JSON.stringify(confirmed.errors)}`);
  return { ...account, authenticator, recoveryCodes: confirmed.data.confirmTotpEnrollment };
}

/** The token of the "this wasn't me" link in a security notice. */
export function lockdownTokenOf(mail: CapturedMail): string {
  const token = mail.text.match(/\/lockdown\?token=([A-Za-z0-9_-]+)/)?.[1];
  if (!token) throw new Error(`no lockdown link in: ${mail.text}`);
  return token;
}

import type { EntityManager } from '@mikro-orm/postgresql';
import { RateLimitedError } from '../../errors.js';
import { LIMITS, type RateLimits } from '../../rate-limits.js';
import type { User } from '../users/user.entity.js';
import { identifierMatch, type UserService } from '../users/user.service.js';
import type { DeviceOwner, DeviceTokens } from './device-tokens.js';
import { FAILED_LOGINS_BEFORE_RESET, LoginBackoff, type Reservation } from './login-backoff.js';

/** A sign-in attempt the guard let through to the password comparison. */
export interface LoginAttempt {
  /** The device the session will run on: the one of a valid device token, or a new one. */
  deviceId: string;
  /** Whether a valid device token of the account was presented: then the device pays for failures. */
  trusted: boolean;
  /**
   * For a former device (a token from before the last reset or change of the password): the
   * account, whose former devices share a budget besides each device's own.
   */
  formerDeviceOf?: string;
  /** What the per-identifier limit counts: the account named, or the identifier when it names none. */
  identifierKey: string;
  /**
   * For an untrusted attempt on an existing account, the failures the per-identifier limit had
   * counted: it counts this attempt only if it fails. `null` when the attempt was counted before
   * the comparison (trusted devices, unknown identifiers).
   */
  identifierFailures: number | null;
}

/** The key under which an account's former devices share the per-identifier limit. */
const formerDevicesKey = (userId: string) => `former-devices:${userId}`;

/** The account whose own devices share a cap, under the credentials it has (a reset or change starts over). */
export interface OwnDevicesOf {
  id: string;
  credentialsVersion: number;
}
const ownDevicesKey = (account: OwnDevicesOf) => `${account.id}:${account.credentialsVersion}`;
/** The device key of a signed-in device session's re-authentications. */
const sessionKey = (family: string) => `session:${family}`;
const REAUTHENTICATION_WAIT = 'Too many wrong passwords or codes in this session. Try again later.';

/**
 * The guard's answer, with the account the identifier names (`null` when none): go ahead, or a
 * refusal worth recording (the account is waiting).
 */
export type Admission = { user: User | null } & ({ attempt: LoginAttempt } | { refusal: RateLimitedError });

/**
 * Decides who pays for a sign-in attempt, and counts it before the password is compared (so
 * parallel guesses cannot slip past), following OWASP's "device cookies":
 *
 * - A valid device token of the account: the attempt counts against that device only
 *   (`loginPerDevice`). Strangers' failures never touch it, so however long they guess, the
 *   owner's known devices still sign in.
 * - A token from before the last reset or change of the password: that device and a budget all
 *   former devices of the account share (see {@link admitFormer}), so the owner's devices get
 *   back in after a reset however many strangers guess meanwhile.
 * - Anyone else (no token, a forged one, another account's) shares the account's budget: the
 *   account's backoff (at most 100 consecutive failures, NIST SP 800-63B §5.2.2), which counts
 *   every attempt before the comparison, and the per-identifier limit, which for an existing
 *   account counts only failures, after the comparison: the backoff already holds parallel guesses
 *   back (the limit is passed by one attempt at most), and a successful sign-in then writes no
 *   counter at all; the first attempt since the account's last success or reset does not even
 *   read it (a stranger gets one guess past the limit after each reset). An identifier naming no account is counted before, by the per-identifier
 *   limit alone.
 *
 * The per-IP limit applies to everyone before this, in AuthService.
 */
export class LoginGuard {
  constructor(
    private readonly users: UserService,
    private readonly limits: RateLimits,
    readonly backoff: LoginBackoff,
    private readonly devices: DeviceTokens,
  ) {}

  /**
   * Finds the account `identifier` names and counts the attempt against whoever pays for it; throws
   * RATE_LIMITED beyond the per-identifier limit. Without a device token, the account's backoff
   * counts the attempt in the same statement that finds the account (the common sign-in costs one
   * statement less); with one, the account is read first to check the token.
   */
  async admit(em: EntityManager, identifier: string, deviceToken: string | null | undefined): Promise<Admission> {
    const match = identifierMatch(identifier);
    let reservation: Reservation | null;
    if (deviceToken && match) {
      const user = await this.users.findByMatch(em, match);
      const device = user ? this.devices.verify(deviceToken, user) : null;
      if (user && device) {
        const refused = await this.limits.refusal('loginPerDevice', device);
        if (refused) return { user, refusal: new RateLimitedError(refused.retryAfter, 'Too many failed sign-ins on this device. Try again later.') };
        return { user, attempt: { deviceId: device, trusted: true, identifierKey: `account:${user.id}`, identifierFailures: null } };
      }
      const former = user && user.failedLoginCount < FAILED_LOGINS_BEFORE_RESET ? this.devices.verifyFormer(deviceToken, user) : null;
      const admitted = user && former ? await this.admitFormer(user, former) : null;
      if (admitted) return admitted;
      reservation = user ? await this.backoff.reserve(em, LoginBackoff.byId(user.id)) : null;
    } else {
      reservation = match ? await this.backoff.reserve(em, match) : null;
    }
    const user = reservation?.user ?? null;
    // An account's email and username, in any spelling, share one count; an unknown identifier
    // counts as written.
    const identifierKey = user ? `account:${user.id}` : identifier.trim().toLowerCase().slice(0, 254);
    let identifierFailures: number | null = null;
    if (user && user.failedLoginCount === 1) {
      // The backoff counted this attempt as the first since the account's last successful sign-in
      // or reset, so it holds nobody's failures the per-identifier limit would refuse for (the
      // next attempt, from anyone, reads it): the common sign-in skips the read.
      identifierFailures = 0;
    } else if (user) {
      const { counted, refusal } = await this.limits.peek('loginPerIdentifier', identifierKey);
      if (refusal) throw refusal;
      identifierFailures = counted;
    } else {
      await this.limits.consume('loginPerIdentifier', identifierKey);
    }
    const waiting = reservation?.refusal;
    if (waiting) {
      const message = waiting.resetRequired
        ? 'Too many failed sign-ins: reset the password of this account to sign in again.'
        : 'Too many failed sign-ins for this account. Try again later.';
      return { user, refusal: new RateLimitedError(waiting.retryAfterSeconds, message) };
    }
    return { user, attempt: { deviceId: this.devices.newDevice(), trusted: false, identifierKey, identifierFailures } };
  }

  /**
   * A device that signed in before the last reset or change of the password. It pays on its own and,
   * with every other former device of the account, in one shared budget (10 per 15 minutes, 100 a
   * week): a thief who collected tokens under the old password gets that budget once, not once per
   * token, and strangers (who have no token) spend nothing of it. Beyond it, or while the account
   * waits for a reset (a lockdown, or the 100-failure cap), the device signs in like any other
   * client (`null`): never worse off than a stranger, and within NIST's cap.
   */
  private async admitFormer(user: User, deviceId: string): Promise<Admission | null> {
    const refused =
      (await this.limits.refusal('loginPerDevice', deviceId)) ??
      (await this.limits.refusal('loginPerIdentifier', formerDevicesKey(user.id))) ??
      (await this.limits.refusal('formerDevicesPerAccount', user.id));
    if (refused) return null;
    return { user, attempt: { deviceId, trusted: true, formerDeviceOf: user.id, identifierKey: `account:${user.id}`, identifierFailures: null } };
  }

  /** A failed comparison: counts it where the attempt was not counted before. */
  async failed(attempt: LoginAttempt): Promise<void> {
    if (attempt.identifierFailures !== null) await this.limits.count('loginPerIdentifier', attempt.identifierKey);
  }

  /**
   * Whether a successful sign-in clears the account's backoff: an untrusted attempt was counted in
   * it, a trusted one was not. Call {@link forget} after the sign-in commits.
   */
  clearsBackoff(attempt: LoginAttempt): boolean {
    return !attempt.trusted;
  }

  /** After a successful sign-in has committed: forgets the failures counted for whoever paid (if any). */
  async forget(attempt: LoginAttempt): Promise<void> {
    if (attempt.formerDeviceOf) await this.forgetFormerDevices(attempt.formerDeviceOf);
    if (attempt.trusted) await this.forgetDevice(attempt.deviceId);
    else if (attempt.identifierFailures !== 0) await this.limits.reset('loginPerIdentifier', attempt.identifierKey);
  }

  /**
   * Counts a second-factor try of a sign-in from a trusted device (verifyMfa) like a password try
   * from that device, before the code is checked: such a device gets the device's budget of codes
   * and spends nothing of the account's, within the cap of the account's own devices (see
   * {@link admitOwnDevice}). RATE_LIMITED beyond the device's budget; `false` beyond the cap, where
   * the try is the account's like a stranger's (its backoff, and its own cap of 100).
   * {@link forgetOwnDevice} after the sign-in commits.
   */
  admitDeviceCode(deviceId: string, account: OwnDevicesOf): Promise<boolean> {
    return this.admitOwnDevice(deviceId, account, 'Too many failed sign-ins on this device. Try again later.');
  }

  /**
   * Counts a re-authentication of a signed-in device session (the password, and a code where asked
   * for) before it is checked: the session's budget (10 an hour) within the cap of the account's own
   * devices. Strangers' guesses never touch either, so they cannot keep the owner from changing the
   * password; a stolen session gets 10 guesses an hour and 100 in all, then a reset is needed.
   */
  async admitSession(family: string, account: OwnDevicesOf): Promise<void> {
    if (!(await this.admitOwnDevice(sessionKey(family), account, REAUTHENTICATION_WAIT))) {
      throw new RateLimitedError(LIMITS.loginPerDevice.durationSeconds, 'Too many wrong passwords or codes: reset the password of this account to go on.');
    }
  }

  /** Gives back a re-authentication's count: it proved the password and was stopped by a check of the operation. */
  async refundSession(family: string, account: OwnDevicesOf): Promise<void> {
    await this.limits.refund('loginPerDevice', sessionKey(family));
    await this.limits.refund('ownDeviceTriesPerAccount', ownDevicesKey(account));
  }

  /** After a complete re-authentication: the session's and the own devices' counts start over. */
  async forgetSession(family: string, account: OwnDevicesOf): Promise<void> {
    await this.forgetOwnDevice(sessionKey(family), account);
  }

  /** One try of the account's own device `key`: RATE_LIMITED beyond its budget, `false` beyond the own devices' cap. */
  private async admitOwnDevice(key: string, account: OwnDevicesOf, wait: string): Promise<boolean> {
    const refused = await this.limits.refusal('loginPerDevice', key);
    if (refused) throw new RateLimitedError(refused.retryAfter, wait);
    return this.limits.allows('ownDeviceTriesPerAccount', ownDevicesKey(account));
  }

  /** After a success of the account's own device `key` has committed: its count and the own devices' cap start over. */
  async forgetOwnDevice(key: string, account: OwnDevicesOf): Promise<void> {
    await this.forgetDevice(key);
    await this.limits.reset('ownDeviceTriesPerAccount', ownDevicesKey(account));
  }

  /** After a sign-in from a former device has committed: the former devices' shared budget starts over. */
  async forgetFormerDevices(userId: string): Promise<void> {
    await this.limits.reset('loginPerIdentifier', formerDevicesKey(userId));
    await this.limits.reset('formerDevicesPerAccount', userId);
  }

  /** After a sign-in from a trusted device has committed: forgets that device's failures. */
  async forgetDevice(deviceId: string): Promise<void> {
    await this.limits.reset('loginPerDevice', deviceId);
  }

  /** After a sign-in with a second factor has committed: the tries of the account's own devices start over. */
  async forgetOwnDevices(account: OwnDevicesOf): Promise<void> {
    await this.limits.reset('ownDeviceTriesPerAccount', ownDevicesKey(account));
  }

  /**
   * The device of a token `account` issued, under its current credentials or its former ones;
   * `null` for anything else (resetPassword remembers it as the device that reset the password).
   */
  recognisedDevice(account: DeviceOwner, deviceToken: string): string | null {
    return this.devices.verify(deviceToken, account) ?? this.devices.verifyFormer(deviceToken, account);
  }

  /** The device of a valid device token of `account`, or a new device (a sign-in finished by verifyMfa). */
  deviceFor(account: DeviceOwner, deviceToken: string | null | undefined): string {
    return (deviceToken ? this.devices.verify(deviceToken, account) : null) ?? this.devices.newDevice();
  }

  /** A new device, for a sign-in that proved itself without a login (registration). */
  newDevice(): string {
    return this.devices.newDevice();
  }

  /** The device token the client keeps for `deviceId`, bound to the account's current credentials. */
  deviceToken(account: DeviceOwner, deviceId: string): string {
    return this.devices.issue(account, deviceId);
  }
}

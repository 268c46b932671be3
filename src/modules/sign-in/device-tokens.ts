import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import type { User } from '../users/user.entity.js';
import { isCanonicalBase64url } from '../../encoding.js';

/** `<device id (a UUID)>.<base64url HMAC-SHA256>`, nothing more, nothing less. */
const DEVICE_TOKEN = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.([A-Za-z0-9_-]{43})$/;

/** How many changes of the credentials back a former device is still recognised. */
const FORMER_VERSIONS = 5;

/** What a device token is bound to, and the device that reset the password (see User.resetDevice), if known. */
export type DeviceOwner = Pick<User, 'id' | 'credentialsVersion'> & Partial<Pick<User, 'resetDevice'>>;

/**
 * Device tokens ("device cookies", OWASP Authentication Cheat Sheet): a signed statement that a
 * device has signed in to an account before. Sign-in answers one on success; the client keeps it
 * and sends it back with later sign-ins. Failed sign-ins that present a valid token for the account
 * count against that device only; everyone else shares the account's budget. Strangers who exhaust
 * that budget therefore cannot keep the owner's own devices out.
 *
 * Stateless: the token is the device id and an HMAC binding it to the account and to the version
 * of its credentials, keyed with a server key. Nothing is stored until a device fails, and a token
 * of one account is worthless for another. A password reset or change (or a lockdown) disowns every
 * token issued before it: such a *former* device no longer pays on its own, since whoever collected
 * tokens while they knew the old password must not get a budget per token to guess the new one. It
 * is still recognised (see LoginGuard): all former devices of an account share one budget, apart
 * from strangers', so strangers cannot keep the owner's devices out after a reset either. The one
 * device that presented its token with the reset itself stays current (User.resetDevice): a thief
 * holding former tokens who spends that shared budget cannot keep it out.
 */
export class DeviceTokens {
  constructor(private readonly key: Uint8Array) {}

  /** A new device id, for a sign-in that presented no valid token. */
  newDevice(): string {
    return randomUUID();
  }

  /** The token of `deviceId` for the account, as its credentials are now. */
  issue(account: DeviceOwner, deviceId: string): string {
    return `${deviceId}.${this.mac(account, deviceId).toString('base64url')}`;
  }

  /**
   * The device id of a token issued for the account's current credentials, or of the device that
   * reset them (its token from before the reset); `null` for anything else.
   */
  verify(token: string, account: DeviceOwner): string | null {
    const current = this.verifyAt(token, account, account.credentialsVersion);
    if (current || !account.resetDevice?.startsWith(`${account.credentialsVersion}:`)) return current;
    const former = this.verifyFormer(token, account);
    return former && account.resetDevice === `${account.credentialsVersion}:${former}` ? former : null;
  }

  /**
   * The device id of a token the account issued under one of its last {@link FORMER_VERSIONS}
   * credentials (before a reset or change of the password, or a lockdown); `null` for anything
   * else, a current token included.
   */
  verifyFormer(token: string, account: DeviceOwner): string | null {
    for (let version = account.credentialsVersion - 1; version >= Math.max(0, account.credentialsVersion - FORMER_VERSIONS); version -= 1) {
      const deviceId = this.verifyAt(token, account, version);
      if (deviceId) return deviceId;
    }
    return null;
  }

  private verifyAt(token: string, account: DeviceOwner, credentialsVersion: number): string | null {
    const match = DEVICE_TOKEN.exec(token);
    if (!match) return null;
    const [, deviceId, mac] = match;
    // No second spelling of a valid token is accepted (see isCanonicalBase64url).
    if (!isCanonicalBase64url(mac)) return null;
    return timingSafeEqual(Buffer.from(mac, 'base64url'), this.mac({ id: account.id, credentialsVersion }, deviceId)) ? deviceId : null;
  }

  private mac(account: DeviceOwner, deviceId: string): Buffer {
    return createHmac('sha256', this.key).update(`device\0${account.id}\0${account.credentialsVersion}\0${deviceId}`).digest();
  }
}

import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { isCanonicalBase64url } from './tokens.js';

/** `<device id (a UUID)>.<base64url HMAC-SHA256>`, nothing more, nothing less. */
const DEVICE_TOKEN = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.([A-Za-z0-9_-]{43})$/;

/**
 * Device tokens ("device cookies", OWASP Authentication Cheat Sheet): a signed statement that a
 * device has signed in to an account before. Sign-in answers one on success; the client keeps it
 * and sends it back with later sign-ins. Failed sign-ins that present a valid token for the account
 * count against that device only; everyone else shares the account's budget. Strangers who exhaust
 * that budget therefore cannot keep the owner's own devices out.
 *
 * Stateless: the token is the device id and an HMAC binding it to the account, keyed with a server
 * key, so nothing is stored until a device fails, and a token of one account is worthless for another.
 */
export class DeviceTokens {
  constructor(private readonly key: Uint8Array) {}

  /** A new device id, for a sign-in that presented no valid token. */
  newDevice(): string {
    return randomUUID();
  }

  /** The token of `deviceId` for the account `userId`. */
  issue(userId: string, deviceId: string): string {
    return `${deviceId}.${this.mac(userId, deviceId).toString('base64url')}`;
  }

  /** The device id of a token issued for `userId`; `null` for anything else (malformed, forged, another account's). */
  verify(token: string, userId: string): string | null {
    const match = DEVICE_TOKEN.exec(token);
    if (!match) return null;
    const [, deviceId, mac] = match;
    // No second spelling of a valid token is accepted (see isCanonicalBase64url).
    if (!isCanonicalBase64url(mac)) return null;
    return timingSafeEqual(Buffer.from(mac, 'base64url'), this.mac(userId, deviceId)) ? deviceId : null;
  }

  private mac(userId: string, deviceId: string): Buffer {
    return createHmac('sha256', this.key).update(`device\0${userId}\0${deviceId}`).digest();
  }
}

import { hkdfSync } from 'node:crypto';
import type { Config } from './config/config.js';

/** Keys derived from the server's secret, one per purpose, so no key ever serves two uses. */
export interface Keys {
  /** Keys the HMAC pre-hash of passwords: a stolen database alone cannot be cracked offline. */
  readonly passwordPepper: Buffer;
  /** Keys the HMAC of reset tokens and verification codes: a stolen database reveals no usable code. */
  readonly oneTimeTokens: Buffer;
  /** AES-256-GCM key for queued emails, which carry tokens until they are sent. */
  readonly mailOutbox: Buffer;
  /** Keys the HMAC that binds a device token to its account. */
  readonly deviceTokens: Buffer;
  /** AES-256-GCM key for TOTP secrets, which the server must read back to check codes. */
  readonly totpSecrets: Buffer;
  /** Keys the HMAC of MFA recovery codes. */
  readonly recoveryCodes: Buffer;
  /** AES-256-GCM key for webhook signing secrets, which the server must read back to sign. */
  readonly webhookSecrets: Buffer;
  /** Keys the HMAC that derives a rotated refresh token from the one it replaces. */
  readonly refreshTokens: Buffer;
}

function derive(secret: string, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'graphql-user-server', purpose, 32));
}

/**
 * Derives every key from `HMAC_SECRET` (or, when unset, from `JWT_SECRET`) with HKDF-SHA256 and a
 * distinct label per purpose.
 */
export function deriveKeys(config: Pick<Config, 'hmacSecret' | 'jwtSecret'>): Keys {
  const secret = config.hmacSecret ?? config.jwtSecret;
  return Object.freeze({
    passwordPepper: derive(secret, 'password-pepper'),
    oneTimeTokens: derive(secret, 'one-time-tokens'),
    mailOutbox: derive(secret, 'mail-outbox'),
    deviceTokens: derive(secret, 'device-tokens'),
    totpSecrets: derive(secret, 'totp-secrets'),
    recoveryCodes: derive(secret, 'recovery-codes'),
    webhookSecrets: derive(secret, 'webhook-secrets'),
    refreshTokens: derive(secret, 'refresh-tokens'),
  });
}

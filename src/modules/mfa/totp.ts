import { Secret, TOTP } from 'otpauth';
import type { SecretBox } from '../../secret-box.js';

/** RFC 6238 as every authenticator app reads it: SHA-1, 6 digits, 30-second steps. */
const PERIOD_SECONDS = 30;
const TOTP_SETTINGS = { algorithm: 'SHA1', digits: 6, period: PERIOD_SECONDS } as const;
/** Steps accepted either side of the current one, for clocks that drift and codes typed slowly. */
const WINDOW = 1;
/** 160-bit secrets, as RFC 4226 recommends for HMAC-SHA-1. */
const SECRET_BYTES = 20;

/** A new authenticator secret: what the user sees once, and what is stored. */
export interface NewTotpSecret {
  /** Base32, for apps that cannot read the URI. */
  secret: string;
  /** `otpauth://totp/…` for a QR code. */
  otpauthUri: string;
  /** The secret sealed with the server key, for the users table. */
  sealed: string;
}

/**
 * TOTP codes (through `otpauth`), and the sealing of their secrets: the server must read a secret
 * back to check a code, so it is stored encrypted with a server key, never hashed.
 */
export class TotpAuthenticator {
  constructor(
    private readonly box: SecretBox,
    /** Shown by authenticator apps beside the account: the host of APP_URL. */
    private readonly issuer: string,
  ) {}

  /** A fresh secret for `account` (its email address labels the entry in the app). */
  create(account: string): NewTotpSecret {
    const secret = new Secret({ size: SECRET_BYTES });
    const totp = new TOTP({ issuer: this.issuer, label: account, secret, ...TOTP_SETTINGS });
    return { secret: secret.base32, otpauthUri: totp.toString(), sealed: this.box.seal(secret.base32) };
  }

  /**
   * The time step `code` belongs to when it is right for the sealed secret within ±1 step of now;
   * `null` otherwise. The caller accepts a step at most once (replay protection).
   */
  matchingStep(sealed: string, code: string, now = Date.now()): number | null {
    if (!/^\d{6}$/.test(code)) return null;
    const totp = new TOTP({ secret: Secret.fromBase32(this.box.open(sealed)), ...TOTP_SETTINGS });
    const delta = totp.validate({ token: code, timestamp: now, window: WINDOW });
    return delta === null ? null : Math.floor(now / 1000 / PERIOD_SECONDS) + delta;
  }
}

import { createHash, randomBytes, webcrypto } from 'node:crypto';
import { errors, jwtVerify, SignJWT } from 'jose';
import { isCanonicalBase64url } from '../../encoding.js';

/** Access tokens live 15 minutes (CONTRACT.md). */
export const ACCESS_TOKEN_TTL_SECONDS = 15 * 60;
/** Refresh tokens live 30 days and are single use. */
export const REFRESH_TOKEN_TTL_MS = 30 * 24 * 60 * 60 * 1000;

/** RFC 9068 media type; checking it stops other JWTs signed with the same key from passing as access tokens. */
const ACCESS_TOKEN_TYPE = 'at+jwt';
const ALGORITHM = 'HS256';

/** A freshly minted refresh token and the only form of it that is stored. */
export interface RefreshTokenPair {
  token: string;
  hash: string;
}

/** 256 random bits, URL-safe; stored only as a SHA-256 hash (unguessable, so no salt or slow hash needed). */
export function createRefreshToken(): RefreshTokenPair {
  const token = randomBytes(32).toString('base64url');
  return { token, hash: hashRefreshToken(token) };
}

/** The lookup key of a refresh token. */
export function hashRefreshToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** What a valid access token asserts. */
export interface AccessTokenClaims {
  userId: string;
  sessionId: string;
}

/**
 * Signs and verifies access tokens: HS256 only, with issuer, audience, expiry and `typ` all
 * required, so `alg: none`, RS/HS confusion, tokens of other services and edited claims fail.
 */
export class AccessTokens {
  // A WebCrypto key imported once: jose turns raw bytes or a KeyObject into a CryptoKey on every
  // sign and verify otherwise, which costs as much as the HMAC itself.
  private readonly key: Promise<webcrypto.CryptoKey>;

  constructor(
    secret: string,
    private readonly issuer: string,
    private readonly audience = issuer,
  ) {
    this.key = webcrypto.subtle.importKey('raw', Buffer.from(secret, 'utf8'), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
  }

  /** Issues a token for one session row. */
  async sign(claims: AccessTokenClaims, now = new Date()): Promise<{ token: string; expiresAt: Date }> {
    const issuedAt = Math.floor(now.getTime() / 1000);
    const expiresAt = new Date((issuedAt + ACCESS_TOKEN_TTL_SECONDS) * 1000);
    const token = await new SignJWT({ sid: claims.sessionId })
      .setProtectedHeader({ alg: ALGORITHM, typ: ACCESS_TOKEN_TYPE })
      .setSubject(claims.userId)
      .setIssuer(this.issuer)
      .setAudience(this.audience)
      .setIssuedAt(issuedAt)
      .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
      .sign(await this.key);
    return { token, expiresAt };
  }

  /** The claims of a valid token, or `null` for anything else (malformed, forged, expired, foreign). */
  async verify(token: string): Promise<AccessTokenClaims | null> {
    // Decoders ignore `=` padding and the spare bits of a last base64url character, so one signed
    // token has several spellings. Only the one this server wrote is accepted.
    if (!token.split('.').every(isCanonicalBase64url)) return null;
    try {
      const { payload } = await jwtVerify(token, await this.key, {
        algorithms: [ALGORITHM],
        issuer: this.issuer,
        audience: this.audience,
        typ: ACCESS_TOKEN_TYPE,
        requiredClaims: ['exp', 'iat', 'sub', 'sid'],
      });
      if (typeof payload.sub !== 'string' || typeof payload.sid !== 'string') return null;
      return { userId: payload.sub, sessionId: payload.sid };
    } catch (error) {
      if (error instanceof errors.JOSEError) return null;
      throw error;
    }
  }
}

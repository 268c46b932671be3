import { createHash, randomBytes, randomUUID, webcrypto } from 'node:crypto';
import { errors, jwtVerify, SignJWT } from 'jose';
import { isCanonicalBase64url } from '../../encoding.js';
import { UnauthenticatedReason } from '../../errors.js';

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
  /** The device session (see Session.family) it was issued to; rotation does not change it. */
  sessionId: string;
  /**
   * Signed before access tokens named the device session (it has no `jti`): its `sid` names one of
   * the session's rows. Such tokens are gone once ACCESS_TOKEN_TTL has passed after the upgrade.
   */
  namesRow: boolean;
}

/** Why a presented access token was not accepted, as far as the token alone tells. */
export type AccessTokenFailure = UnauthenticatedReason.TOKEN_INVALID | UnauthenticatedReason.TOKEN_EXPIRED;

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
    private readonly ttlSeconds: number,
    private readonly audience = issuer,
  ) {
    this.key = webcrypto.subtle.importKey('raw', Buffer.from(secret, 'utf8'), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
  }

  /** Issues a token for one device session. */
  async sign(claims: Omit<AccessTokenClaims, 'namesRow'>, now = new Date()): Promise<{ token: string; expiresAt: Date }> {
    const issuedAt = Math.floor(now.getTime() / 1000);
    const expiresAt = new Date((issuedAt + this.ttlSeconds) * 1000);
    const token = await new SignJWT({ sid: claims.sessionId })
      .setProtectedHeader({ alg: ALGORITHM, typ: ACCESS_TOKEN_TYPE })
      .setSubject(claims.userId)
      .setIssuer(this.issuer)
      .setAudience(this.audience)
      .setIssuedAt(issuedAt)
      // RFC 9068 asks for it; it also keeps two tokens of one device session issued in the same second apart.
      .setJti(randomUUID())
      .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
      .sign(await this.key);
    return { token, expiresAt };
  }

  /**
   * The claims of a valid token, or why it is not one: TOKEN_EXPIRED only for a token this server
   * signed, for this audience, whose lifetime is over; TOKEN_INVALID for anything else (malformed,
   * forged, foreign). The signature is checked before any claim, so "expired" tells nothing to a forger.
   */
  async verify(token: string): Promise<AccessTokenClaims | AccessTokenFailure> {
    // Decoders ignore `=` padding and the spare bits of a last base64url character, so one signed
    // token has several spellings. Only the one this server wrote is accepted.
    if (!token.split('.').every(isCanonicalBase64url)) return UnauthenticatedReason.TOKEN_INVALID;
    try {
      const { payload } = await jwtVerify(token, await this.key, {
        algorithms: [ALGORITHM],
        issuer: this.issuer,
        audience: this.audience,
        typ: ACCESS_TOKEN_TYPE,
        requiredClaims: ['exp', 'iat', 'sub', 'sid'],
      });
      if (typeof payload.sub !== 'string' || typeof payload.sid !== 'string') return UnauthenticatedReason.TOKEN_INVALID;
      return { userId: payload.sub, sessionId: payload.sid, namesRow: payload.jti === undefined };
    } catch (error) {
      // jose checks the signature, then typ, issuer and audience, and the times last.
      if (error instanceof errors.JWTExpired) return UnauthenticatedReason.TOKEN_EXPIRED;
      if (error instanceof errors.JOSEError) return UnauthenticatedReason.TOKEN_INVALID;
      throw error;
    }
  }
}

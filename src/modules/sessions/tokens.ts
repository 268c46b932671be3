import { createHash, createHmac, createPublicKey, type KeyObject, randomBytes, randomUUID, webcrypto } from 'node:crypto';
import { calculateJwkThumbprint, errors, exportJWK, importPKCS8, importSPKI, type JSONWebKeySet, type JWK, jwtVerify, type JWTHeaderParameters, SignJWT } from 'jose';
import type { JwtSigning } from '../../config/signing-keys.js';
import { isCanonicalBase64url } from '../../encoding.js';
import { UnauthenticatedReason } from '../../errors.js';

/** RFC 9068 media type; checking it stops other JWTs signed with the same key from passing as access tokens. */
const ACCESS_TOKEN_TYPE = 'at+jwt';

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

/**
 * The refresh token that replaces `token` at rotation: an HMAC of it under a server key, so every
 * presentation of one token within the reuse interval is answered with the same successor (one
 * chain per device session, never a fork), and nobody without the key can compute it.
 */
export function successorRefreshToken(key: Uint8Array, token: string): RefreshTokenPair {
  const successor = createHmac('sha256', key).update(`successor\0${token}`, 'utf8').digest('base64url');
  return { token: successor, hash: hashRefreshToken(successor) };
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

/** A key that verifies, under the algorithm it belongs to. */
interface VerifyingKey {
  alg: 'HS256' | 'EdDSA';
  key: webcrypto.CryptoKey;
}

/** A public Ed25519 key as the JWKS shows it, with its RFC 7638 thumbprint as `kid`. */
async function publicJwk(key: KeyObject): Promise<{ jwk: JWK; key: webcrypto.CryptoKey }> {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  const imported = await importSPKI(publicKey.export({ type: 'spki', format: 'pem' }).toString(), 'EdDSA', { extractable: true });
  const jwk = await exportJWK(imported);
  return { key: imported, jwk: { ...jwk, kid: await calculateJwkThumbprint(jwk), alg: 'EdDSA', use: 'sig' } };
}

/**
 * Signs and verifies access tokens, with issuer, audience, expiry and `typ` all required, so
 * `alg: none`, algorithm confusion, tokens of other services and edited claims fail.
 *
 * - HS256 (the default): signed and verified with `JWT_SECRET`; only this server can check them.
 * - EdDSA (Ed25519): signed with `JWT_PRIVATE_KEY`, the header naming the key (`kid`, its RFC 7638
 *   thumbprint); any service verifies them with the public keys of {@link jwks}
 *   (`/.well-known/jwks.json`).
 *
 * `JWT_VERIFY_KEYS` (public Ed25519 keys) verify as well and, with EdDSA, stay in the JWKS: a key
 * rotated out keeps its tokens valid until they expire, so a rotation signs nobody out.
 */
export class AccessTokens {
  private constructor(
    private readonly signer: VerifyingKey & { kid?: string; sign: webcrypto.CryptoKey },
    /** The keys that verify, by `kid` (the HS256 key has none: it is the one without a `kid`). */
    private readonly verifiers: ReadonlyMap<string, VerifyingKey>,
    private readonly keySet: JSONWebKeySet,
    private readonly issuer: string,
    private readonly ttlSeconds: number,
    private readonly audience: string,
  ) {}

  /**
   * Imports every key once as a WebCrypto key: jose turns raw bytes or a KeyObject into a
   * CryptoKey on every sign and verify otherwise, which costs as much as the signature itself.
   */
  static async create(signing: JwtSigning, secret: string, issuer: string, ttlSeconds: number, audience = issuer): Promise<AccessTokens> {
    const verifiers = new Map<string, VerifyingKey>();
    const keys: JWK[] = [];
    const publish = async (key: KeyObject): Promise<{ kid: string; key: webcrypto.CryptoKey }> => {
      const { jwk, key: imported } = await publicJwk(key);
      const kid = jwk.kid!;
      if (!verifiers.has(kid)) keys.push(jwk);
      verifiers.set(kid, { alg: 'EdDSA', key: imported });
      return { kid, key: imported };
    };
    let signer: VerifyingKey & { kid?: string; sign: webcrypto.CryptoKey };
    if (signing.algorithm === 'EdDSA') {
      const { kid, key } = await publish(signing.privateKey);
      const sign = await importPKCS8(signing.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 'EdDSA');
      signer = { alg: 'EdDSA', key, kid, sign };
    } else {
      const key = await webcrypto.subtle.importKey('raw', Buffer.from(secret, 'utf8'), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
      signer = { alg: 'HS256', key, sign: key };
      verifiers.set('', signer);
    }
    for (const key of signing.verifyKeys) await publish(key);
    // With HS256 the key set stays empty (CONTRACT.md): no other service can verify those tokens anyway.
    return new AccessTokens(signer, verifiers, { keys: signing.algorithm === 'EdDSA' ? keys : [] }, issuer, ttlSeconds, audience);
  }

  /** The public keys that verify access tokens (`/.well-known/jwks.json`); empty with HS256 alone. */
  jwks(): JSONWebKeySet {
    return this.keySet;
  }

  /** Issues a token for one device session. */
  async sign(claims: Omit<AccessTokenClaims, 'namesRow'>, now = new Date()): Promise<{ token: string; expiresAt: Date }> {
    const issuedAt = Math.floor(now.getTime() / 1000);
    const expiresAt = new Date((issuedAt + this.ttlSeconds) * 1000);
    const { alg, kid } = this.signer;
    const token = await new SignJWT({ sid: claims.sessionId })
      .setProtectedHeader(kid ? { alg, typ: ACCESS_TOKEN_TYPE, kid } : { alg, typ: ACCESS_TOKEN_TYPE })
      .setSubject(claims.userId)
      .setIssuer(this.issuer)
      .setAudience(this.audience)
      .setIssuedAt(issuedAt)
      // RFC 9068 asks for it; it also keeps two tokens of one device session issued in the same second apart.
      .setJti(randomUUID())
      .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
      .sign(this.signer.sign);
    return { token, expiresAt };
  }

  /**
   * The key for a token's header: the one its `kid` names (none: the HS256 key), and only under that
   * key's own algorithm, so a token cannot pick a key and an algorithm that do not belong together.
   */
  private readonly keyFor = (header: JWTHeaderParameters): webcrypto.CryptoKey => {
    const verifying = this.verifiers.get(header.kid ?? '');
    if (!verifying || verifying.alg !== header.alg) throw new errors.JWSSignatureVerificationFailed();
    return verifying.key;
  };

  /**
   * The claims of a valid token, or why it is not one: TOKEN_EXPIRED only for a token this server
   * signed, for this audience, whose lifetime is over; TOKEN_INVALID for anything else (malformed,
   * forged, foreign, or signed by a key that no longer verifies). The signature is checked before
   * any claim, so "expired" tells nothing to a forger.
   */
  async verify(token: string): Promise<AccessTokenClaims | AccessTokenFailure> {
    // Decoders ignore `=` padding and the spare bits of a last base64url character, so one signed
    // token has several spellings. Only the one this server wrote is accepted.
    if (!token.split('.').every(isCanonicalBase64url)) return UnauthenticatedReason.TOKEN_INVALID;
    try {
      const { payload } = await jwtVerify(token, this.keyFor, {
        algorithms: ['HS256', 'EdDSA'],
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

import { createHmac, randomBytes, randomInt } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { User } from '../users/user.entity.js';
import { OneTimeToken, OneTimeTokenPurpose } from './one-time-token.entity.js';

/** Reset links are valid for one hour (CONTRACT.md). */
export const RESET_TOKEN_TTL_MS = 60 * 60 * 1000;
/** Verification codes are valid for 15 minutes and allow five tries (CONTRACT.md). */
export const VERIFICATION_CODE_TTL_MS = 15 * 60 * 1000;
export const VERIFICATION_CODE_MAX_ATTEMPTS = 5;
/** At most one email of a kind per account per minute; extra requests are dropped silently. */
export const EMAIL_THROTTLE_MS = 60_000;

/** 32 random bytes in base64url: 43 characters. */
const RESET_TOKEN = /^[A-Za-z0-9_-]{43}$/;
const VERIFICATION_CODE = /^\d{6}$/;

/** Outcome of one verification-code attempt. */
export type CodeCheck = 'matched' | 'wrong' | 'none';

/**
 * The one owner of reset tokens and verification codes: issuing (which voids the previous token of
 * the same purpose), keyed hashing, and atomic consumption.
 *
 * Codes have only a million values, so their hash is keyed (HMAC-SHA256 with a server key) and bound
 * to the account: a stolen table cannot be brute-forced offline, and equal codes of two accounts
 * never share a hash.
 */
export class OneTimeTokenService {
  constructor(private readonly key: Uint8Array) {}

  private hash(purpose: OneTimeTokenPurpose, value: string, userId = ''): string {
    return createHmac('sha256', this.key).update(`${purpose}\0${userId}\0${value}`).digest('hex');
  }

  /** Deletes the user's unused tokens of `purpose`: a newer request voids older ones. */
  private async voidOlder(em: EntityManager, userId: string, purpose: OneTimeTokenPurpose): Promise<void> {
    await em.nativeDelete(OneTimeToken, { user: userId, purpose, usedAt: null });
  }

  /**
   * Whether the user got a token of `purpose` less than {@link EMAIL_THROTTLE_MS} ago (at most one
   * email of a kind per account per minute). Callers hold a lock on the user row, so this decision
   * and the issue that follows cannot interleave with another request's.
   */
  async issuedRecently(em: EntityManager, userId: string, purpose: OneTimeTokenPurpose): Promise<boolean> {
    const newest = await em.findOne(OneTimeToken, { user: userId, purpose }, { orderBy: { createdAt: 'desc' }, fields: ['createdAt'] });
    return newest !== null && Date.now() - newest.createdAt.getTime() < EMAIL_THROTTLE_MS;
  }

  /** Issues a reset token (256 random bits, URL-safe), voiding older ones; returns it in clear, once. */
  async issueResetToken(em: EntityManager, user: User): Promise<string> {
    await this.voidOlder(em, user.id, OneTimeTokenPurpose.PASSWORD_RESET);
    const token = randomBytes(32).toString('base64url');
    em.create(OneTimeToken, {
      user,
      purpose: OneTimeTokenPurpose.PASSWORD_RESET,
      tokenHash: this.hash(OneTimeTokenPurpose.PASSWORD_RESET, token),
      expiresAt: new Date(Date.now() + RESET_TOKEN_TTL_MS),
    });
    return token;
  }

  /** The id of the account a live reset token belongs to, without consuming it; `null` otherwise. */
  async resetTokenOwner(em: EntityManager, token: string): Promise<string | null> {
    if (!RESET_TOKEN.test(token)) return null;
    const live = await em.findOne(
      OneTimeToken,
      { tokenHash: this.hash(OneTimeTokenPurpose.PASSWORD_RESET, token), purpose: OneTimeTokenPurpose.PASSWORD_RESET, usedAt: null, expiresAt: { $gt: new Date() } },
      { fields: ['user'] },
    );
    return live ? live.user.id : null;
  }

  /**
   * Consumes a reset token in one conditional UPDATE; of any number of concurrent callers exactly one
   * gets the account id, the others `null`.
   */
  async consumeResetToken(em: EntityManager, token: string): Promise<string | null> {
    if (!RESET_TOKEN.test(token)) return null;
    const now = new Date();
    const [consumed] = await em
      .createQueryBuilder(OneTimeToken)
      .update({ usedAt: now })
      .where({ tokenHash: this.hash(OneTimeTokenPurpose.PASSWORD_RESET, token), purpose: OneTimeTokenPurpose.PASSWORD_RESET, usedAt: null, expiresAt: { $gt: now } })
      .returning(['user'])
      .execute<Array<{ user: string }>>('all');
    return consumed?.user ?? null;
  }

  /** Issues a 6-digit verification code, voiding older ones; returns it in clear, once. */
  async issueVerificationCode(em: EntityManager, user: User): Promise<string> {
    await this.voidOlder(em, user.id, OneTimeTokenPurpose.EMAIL_VERIFICATION);
    const code = randomInt(0, 1_000_000).toString().padStart(6, '0');
    em.create(OneTimeToken, {
      user,
      purpose: OneTimeTokenPurpose.EMAIL_VERIFICATION,
      tokenHash: this.hash(OneTimeTokenPurpose.EMAIL_VERIFICATION, code, user.id),
      expiresAt: new Date(Date.now() + VERIFICATION_CODE_TTL_MS),
    });
    return code;
  }

  /**
   * One try at the user's live verification code, as a single UPDATE that counts the try and
   * consumes the code when it matches: parallel guesses are serialized on the row, so five tries
   * means five, and a used, expired or exhausted code answers `none`.
   */
  async checkVerificationCode(em: EntityManager, userId: string, code: string): Promise<CodeCheck> {
    const guess = VERIFICATION_CODE.test(code) ? this.hash(OneTimeTokenPurpose.EMAIL_VERIFICATION, code, userId) : '';
    const rows = await em.getConnection().execute<Array<{ matched: boolean }>>(
      `update "one_time_tokens"
          set "attempts" = "attempts" + 1,
              "used_at" = case when "token_hash" = ? then now() else "used_at" end
        where "user_id" = ? and "purpose" = ? and "used_at" is null and "expires_at" > now() and "attempts" < ?
        returning ("token_hash" = ?) as "matched"`,
      [guess, userId, OneTimeTokenPurpose.EMAIL_VERIFICATION, VERIFICATION_CODE_MAX_ATTEMPTS, guess],
      'all',
      em.getTransactionContext(),
    );
    if (rows.length === 0) return 'none';
    return rows[0].matched ? 'matched' : 'wrong';
  }
}

import { createHmac, randomBytes, randomInt } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { User } from '../users/user.entity.js';
import { OneTimeToken, OneTimeTokenPurpose } from './one-time-token.entity.js';

/** At most one email of a kind per account per minute; extra requests are dropped silently. */
export const EMAIL_THROTTLE_MS = 60_000;

/**
 * The two shapes a one-time secret takes:
 * - `link`: 256 random bits in base64url (43 characters), carried in a link; found by its hash
 *   alone, since the link names no account.
 * - `code`: 6 digits, typed by a person; only a million values, so it is checked against one
 *   account's live code, with a budget of tries, and its hash is bound to that account.
 */
type TokenForm = 'link' | 'code';

/** What each purpose is: its form, lifetime and the tries it allows. */
export interface TokenKind {
  form: TokenForm;
  ttlMs: number;
  /**
   * Tries a token survives: wrong guesses of a code ({@link OneTimeTokenService.attempt}), or
   * presentations of a link that carries a second secret, such as an MFA challenge
   * ({@link OneTimeTokenService.tryLink}).
   */
  maxAttempts?: number;
  /** Issuing one leaves the user's older live ones alone (lockdown links: every notice's link works; MFA challenges). */
  keepsOlder?: boolean;
}

/** Every purpose in one place (CONTRACT.md gives the lifetimes): a new purpose is a line here. */
export const TOKEN_KINDS: Readonly<Record<OneTimeTokenPurpose, TokenKind>> = {
  [OneTimeTokenPurpose.PASSWORD_RESET]: { form: 'link', ttlMs: 60 * 60 * 1000 },
  [OneTimeTokenPurpose.EMAIL_VERIFICATION]: { form: 'code', ttlMs: 15 * 60 * 1000, maxAttempts: 5 },
  [OneTimeTokenPurpose.EMAIL_CHANGE]: { form: 'code', ttlMs: 15 * 60 * 1000, maxAttempts: 5 },
  // Every sign-in's challenge stands on its own: a second sign-in (another device, or a thief who
  // knows the password) must not void the one the owner is finishing.
  [OneTimeTokenPurpose.MFA_CHALLENGE]: { form: 'link', ttlMs: 5 * 60 * 1000, maxAttempts: 5, keepsOlder: true },
  [OneTimeTokenPurpose.LOCKDOWN]: { form: 'link', ttlMs: 7 * 24 * 60 * 60 * 1000, keepsOlder: true },
};

const SHAPES: Record<TokenForm, RegExp> = { link: /^[A-Za-z0-9_-]{43}$/, code: /^\d{6}$/ };

/** A link as it was issued: whose, for what, and when. */
export interface IssuedLink {
  userId: string;
  target: string | null;
  issuedAt: Date;
}

/** A code that matched, with what it was issued for (see {@link OneTimeTokenService.issue}). */
export interface MatchedCode {
  target: string | null;
}

/**
 * The one store of single-use secrets sent to a user (reset links, verification and email-change
 * codes, MFA challenges, lockdown links): issuing
 * (which voids the user's previous unused token of the same purpose), keyed hashing, the email
 * throttle, and atomic single-use consumption — for every purpose, described by {@link TOKEN_KINDS}.
 *
 * Only a keyed hash is stored (HMAC-SHA256 with a server key): a stolen table gives up no link,
 * and no code can be brute-forced offline. A code's hash is also bound to its account, so equal
 * codes of two accounts never share a hash.
 */
export class OneTimeTokenService {
  constructor(private readonly key: Uint8Array) {}

  /**
   * Issues a secret of `purpose` for `user` in `em`'s unit of work, voiding their older unused one
   * (unless the kind keeps older ones); returns it in clear, once (for the email or the client).
   * `target` is what the token is for beyond its purpose (an email change's new address), given
   * back when the code matches.
   */
  async issue(em: EntityManager, user: User, purpose: OneTimeTokenPurpose, target: string | null = null): Promise<string> {
    const kind = TOKEN_KINDS[purpose];
    if (!kind.keepsOlder) await this.voidAll(em, user.id, [purpose]);
    const secret = kind.form === 'link' ? randomBytes(32).toString('base64url') : randomInt(0, 1_000_000).toString().padStart(6, '0');
    em.create(OneTimeToken, { user, purpose, target, tokenHash: this.hash(purpose, secret, user.id), expiresAt: new Date(Date.now() + kind.ttlMs) });
    return secret;
  }

  /** Voids every unused token of `purposes` the user holds (a lockdown, a new password). */
  async voidAll(em: EntityManager, userId: string, purposes: OneTimeTokenPurpose[]): Promise<void> {
    await em.nativeDelete(OneTimeToken, { user: userId, purpose: { $in: purposes }, usedAt: null });
  }

  /** Forgets every token of `purpose` the user holds, used or not: neither they nor their record remain. */
  async forgetAll(em: EntityManager, userId: string, purpose: OneTimeTokenPurpose): Promise<void> {
    await em.nativeDelete(OneTimeToken, { user: userId, purpose });
  }

  /**
   * Forgets every token of `purpose` the user holds, used or not, that was issued for a target first
   * seen after `target` (and any without a target): neither they nor the record that they were
   * issued remain, while the tokens of `target` and of the targets before it stay.
   */
  async forgetTargetsAfter(em: EntityManager, userId: string, purpose: OneTimeTokenPurpose, target: string): Promise<void> {
    await em.getConnection().execute(
      `delete from "one_time_tokens"
        where "user_id" = ? and "purpose" = ?
          and ("target" is null or "target" in (
            select "target" from "one_time_tokens" where "user_id" = ? and "purpose" = ? and "target" is not null
             group by "target"
            having min("created_at") > (select min("created_at") from "one_time_tokens" where "user_id" = ? and "purpose" = ? and "target" = ?)))`,
      [userId, purpose, userId, purpose, userId, purpose, target],
      'run',
      em.getTransactionContext(),
    );
  }

  /**
   * Whether a user other than `exceptUserId` holds a live token of `purpose` issued for `target`
   * (a lockdown link mailed to an address keeps that address its owner's for the link's 7 days).
   */
  async isHeldByAnother(em: EntityManager, purpose: OneTimeTokenPurpose, target: string, exceptUserId: string | null): Promise<boolean> {
    const held = await em.getConnection().execute<unknown[]>(
      `select 1 from "one_time_tokens"
        where "target" = ? and "purpose" = ? and "used_at" is null and "expires_at" > now() and "user_id" is distinct from ?::uuid
        limit 1`,
      [target, purpose, exceptUserId],
      'all',
      em.getTransactionContext(),
    );
    return held.length > 0;
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

  /** The id of the account a live link of `purpose` belongs to, without consuming it; `null` otherwise. */
  async ownerOf(em: EntityManager, purpose: OneTimeTokenPurpose, link: string): Promise<string | null> {
    const tokenHash = this.linkHash(purpose, link);
    if (!tokenHash) return null;
    const live = await em.findOne(OneTimeToken, { tokenHash, purpose, usedAt: null, expiresAt: { $gt: new Date() } }, { fields: ['user'] });
    return live ? live.user.id : null;
  }

  /**
   * Consumes a link of `purpose` in one conditional UPDATE; of any number of concurrent callers
   * exactly one gets the link, the others `null`.
   */
  async consume(em: EntityManager, purpose: OneTimeTokenPurpose, link: string): Promise<IssuedLink | null> {
    const tokenHash = this.linkHash(purpose, link);
    if (!tokenHash) return null;
    const [consumed] = await em.getConnection().execute<LinkRow[]>(
      `update "one_time_tokens" set "used_at" = now()
        where "token_hash" = ? and "purpose" = ? and "used_at" is null and "expires_at" > now()
        returning "user_id", "target", "created_at"`,
      [tokenHash, purpose],
      'all',
      em.getTransactionContext(),
    );
    return issuedLink(consumed);
  }


  /**
   * Counts one presentation of a link of `purpose` that carries a second secret checked by the
   * caller (an MFA challenge and its code): the link while it is live and has tries left, `null`
   * otherwise. One conditional UPDATE, so parallel presentations cannot exceed the
   * budget. The caller {@link consume}s the link once the second secret is right.
   */
  async tryLink(em: EntityManager, purpose: OneTimeTokenPurpose, link: string): Promise<IssuedLink | null> {
    const tokenHash = this.linkHash(purpose, link);
    if (!tokenHash) return null;
    const [counted] = await em.getConnection().execute<LinkRow[]>(
      `update "one_time_tokens" set "attempts" = "attempts" + 1
        where "token_hash" = ? and "purpose" = ? and "used_at" is null and "expires_at" > now() and "attempts" < ?
        returning "user_id", "target", "created_at"`,
      [tokenHash, purpose, this.maxAttempts(purpose)],
      'all',
      em.getTransactionContext(),
    );
    return issuedLink(counted);
  }

  /**
   * One try at the user's live code of `purpose`, as a single UPDATE that counts the try and
   * consumes the code when it matches: parallel guesses are serialized on the row, so five tries
   * means five. The match (with the token's target), or `null` for a wrong code and for a used,
   * expired or exhausted one alike.
   */
  async attempt(em: EntityManager, purpose: OneTimeTokenPurpose, userId: string, code: string): Promise<MatchedCode | null> {
    if (TOKEN_KINDS[purpose].form !== 'code') throw new Error(`${purpose} is not a code`);
    const guess = SHAPES.code.test(code) ? this.hash(purpose, code, userId) : '';
    const [row] = await em.getConnection().execute<Array<{ matched: boolean; target: string | null }>>(
      `update "one_time_tokens"
          set "attempts" = "attempts" + 1,
              "used_at" = case when "token_hash" = ? then now() else "used_at" end
        where "user_id" = ? and "purpose" = ? and "used_at" is null and "expires_at" > now() and "attempts" < ?
        returning ("token_hash" = ?) as "matched", "target"`,
      [guess, userId, purpose, this.maxAttempts(purpose), guess],
      'all',
      em.getTransactionContext(),
    );
    return row?.matched ? { target: row.target } : null;
  }

  private maxAttempts(purpose: OneTimeTokenPurpose): number {
    const tries = TOKEN_KINDS[purpose].maxAttempts;
    if (tries === undefined) throw new Error(`${purpose} allows no tries`);
    return tries;
  }

  /** The stored hash of a link of `purpose`, or `null` when it does not have the shape of one. */
  private linkHash(purpose: OneTimeTokenPurpose, link: string): string | null {
    if (TOKEN_KINDS[purpose].form !== 'link') throw new Error(`${purpose} is not a link`);
    return SHAPES.link.test(link) ? this.hash(purpose, link) : null;
  }

  /** Links are found by hash alone (the link names no account); codes are bound to theirs. */
  private hash(purpose: OneTimeTokenPurpose, secret: string, userId = ''): string {
    const boundTo = TOKEN_KINDS[purpose].form === 'code' ? userId : '';
    return createHmac('sha256', this.key).update(`${purpose}\0${boundTo}\0${secret}`).digest('hex');
  }
}

type LinkRow = { user_id: string; target: string | null; created_at: Date | string };

function issuedLink(row: LinkRow | undefined): IssuedLink | null {
  return row ? { userId: row.user_id, target: row.target, issuedAt: new Date(row.created_at) } : null;
}

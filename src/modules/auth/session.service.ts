import type { EntityManager } from '@mikro-orm/postgresql';
import { isUuid } from '../../db/base.entity.js';
import { pooledQuery } from '../../db/pooled-query.js';
import type { LockedAccount } from '../users/account-lock.js';
import { User } from '../users/user.entity.js';
import { type UserView, userView } from '../users/user.view.js';
import { type RequestMeta, storedUserAgent } from './request-meta.js';
import { Session, SessionEndReason } from './session.entity.js';
import { createRefreshToken, hashRefreshToken, REFRESH_TOKEN_TTL_MS } from './tokens.js';

/** A session row together with the refresh token that opens it (shown to the client once). */
export interface IssuedSession {
  session: Session;
  refreshToken: string;
}

/** A live session row, as {@link SessionService.findLive} reads it for a request's viewer. */
export interface LiveSession {
  /** The row, and its device session (see {@link Session.family}). */
  session: { id: string; family: string };
  user: UserView;
  /** The user's stored password hash, for operations that ask for the current password. */
  passwordHash: string;
  /** The version of the user's credentials when the request began (see User.credentialsVersion). */
  credentialsVersion: number;
}

/** What {@link SessionService.rotate} found instead of a live token: an old one, presented again. */
export interface ReuseDetected {
  reusedByUserId: string;
}

/**
 * Owns device sessions and refresh-token rotation. Every change to a user's sessions takes a
 * {@link LockedAccount}: the user's row is locked first, so rotations, sign-ins and the ending of
 * sessions of one user happen one after the other, never interleaved (see account-lock.ts).
 */
export class SessionService {
  /** Starts a new device session (a new family) on the device `deviceId`, for a user who just proved who they are. */
  start(account: LockedAccount, meta: RequestMeta, deviceId: string): IssuedSession {
    const { token, hash } = createRefreshToken();
    const session = account.em.create(Session, {
      user: account.user,
      refreshTokenHash: hash,
      family: '',
      deviceId,
      userAgent: storedUserAgent(meta),
      ip: meta.ip,
      lastUsedAt: new Date(),
      expiresAt: new Date(Date.now() + REFRESH_TOKEN_TTL_MS),
    });
    session.family = session.id;
    return { session, refreshToken: token };
  }

  /**
   * The account a refresh token belongs to, read without a lock: the caller locks that account and
   * then calls {@link rotate}. `null` for a token that was never issued.
   */
  async ownerOf(em: EntityManager, refreshToken: string): Promise<string | null> {
    const row = await em.findOne(Session, { refreshTokenHash: hashRefreshToken(refreshToken) }, { fields: ['user'] });
    return row ? row.user.id : null;
  }

  /**
   * Exchanges a refresh token of the locked account for the next one of its family. The presented
   * row is ended by one conditional UPDATE; if that finds nothing, an already-rotated token means
   * the token leaked, and the whole family is ended. Anything else is just an invalid token
   * (`null`). It does not throw, so the caller's transaction still commits the ending of a reused
   * family.
   */
  async rotate(account: LockedAccount, refreshToken: string, meta: RequestMeta): Promise<IssuedSession | ReuseDetected | null> {
    const { em, user } = account;
    const hash = hashRefreshToken(refreshToken);
    const now = new Date();
    const [rotated] = await em
      .createQueryBuilder(Session)
      .update({ revokedAt: now, revokedReason: SessionEndReason.ROTATED })
      .where({ refreshTokenHash: hash, user: user.id, revokedAt: null, expiresAt: { $gt: now } })
      .returning(['id', 'family', 'deviceId', 'createdAt'])
      .execute<Array<{ family: string; deviceId: string | null; createdAt: Date }>>('all');
    if (!rotated) {
      const previous = await em.findOne(Session, { refreshTokenHash: hash, user: user.id }, { fields: ['family', 'revokedReason'] });
      if (previous?.revokedReason !== SessionEndReason.ROTATED) return null;
      await this.endFamily(account, previous.family, SessionEndReason.REUSE_DETECTED);
      return { reusedByUserId: user.id };
    }
    if (!user.active) return null;
    // Rows from before device tokens have no device id; their family stands in, stable from now on.
    const next = this.start(account, meta, rotated.deviceId ?? rotated.family);
    next.session.family = rotated.family;
    // The device has been signed in since the family began; rotation does not change that.
    next.session.createdAt = new Date(rotated.createdAt);
    return next;
  }

  /** Ends every live row of one of the account's device sessions. Returns whether anything was ended. */
  async endFamily(account: LockedAccount, family: string, reason: SessionEndReason): Promise<boolean> {
    if (!isUuid(family)) return false;
    const ended = await account.em.nativeUpdate(
      Session,
      { family, user: account.user.id, revokedAt: null },
      { revokedAt: new Date(), revokedReason: reason },
    );
    return ended > 0;
  }

  /** Ends every live session of the account, except the device session `keepFamily` when given. */
  async endAllOf(account: LockedAccount, reason: SessionEndReason, keepFamily?: string): Promise<void> {
    await account.em.nativeUpdate(
      Session,
      { user: account.user.id, revokedAt: null, ...(keepFamily ? { family: { $ne: keepFamily } } : {}) },
      { revokedAt: new Date(), revokedReason: reason },
    );
  }

  /** The live session rows of a user, newest first: one per signed-in device. */
  listActive(em: EntityManager, userId: string): Promise<Session[]> {
    return em.find(
      Session,
      { user: userId, revokedAt: null, expiresAt: { $gt: new Date() } },
      { orderBy: { createdAt: 'desc', id: 'asc' } },
    );
  }

  /**
   * The live row an access token names, with its user, in one query; `null` when the row was ended,
   * expired, or belongs to someone else, or when the user is inactive or gone.
   */
  async findLive(em: EntityManager, sessionId: string, userId: string): Promise<LiveSession | null> {
    if (!isUuid(sessionId) || !isUuid(userId)) return null;
    // This runs on every authenticated request, so it is one SQL statement on a pooled connection
    // rather than the query builder, and its row becomes a plain view rather than managed entities:
    // building the join, running it through the ORM and hydrating the entities cost several times
    // the query itself (see BENCHMARKS.md).
    const [row] = await pooledQuery<Record<string, unknown>>(
      em,
      `select "u".*, "s"."family" as "session_family"
         from "sessions" as "s" join "users" as "u" on "u"."id" = "s"."user_id"
        where "s"."id" = $1 and "s"."user_id" = $2 and "u"."active" and "s"."revoked_at" is null and "s"."expires_at" > now()`,
      [sessionId, userId],
    );
    if (!row) return null;
    const user = em.getDriver().mapResult(row, em.getMetadata().get(User.name)) as unknown as User;
    return {
      session: { id: sessionId, family: row.session_family as string },
      user: userView(user),
      passwordHash: user.passwordHash,
      credentialsVersion: user.credentialsVersion,
    };
  }
}

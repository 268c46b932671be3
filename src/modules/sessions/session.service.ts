import type { EntityManager } from '@mikro-orm/postgresql';
import { isUuid } from '../../db/base.entity.js';
import { pooledQuery } from '../../db/pooled-query.js';
import { UnauthenticatedError, UnauthenticatedReason } from '../../errors.js';
import { type LockedAccount, lockAccount } from '../users/account-lock.js';
import { User } from '../users/user.entity.js';
import { type UserView, userView } from '../users/user.view.js';
import type { AuditRow } from '../audit/audit.service.js';
import { type RequestMeta, storedUserAgent } from './request-meta.js';
import { type SignInGate, shuttingDown } from './sign-in-gate.js';
import { Session, SessionEndReason } from './session.entity.js';
import { createRefreshToken, hashRefreshToken, type RefreshTokenPair, successorRefreshToken } from './tokens.js';

/** A session row together with the refresh token that opens it (shown to the client once). */
export interface IssuedSession {
  session: Session;
  refreshToken: string;
}

/** A live device session, as {@link SessionService.findLive} reads it for a request's viewer. */
export interface LiveSession {
  /** The device session (see {@link Session.family}), which access tokens name. */
  session: { family: string };
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

/** A password sign-in about to commit (see {@link SessionService.startSignIn}). */
export interface PasswordSignIn {
  /** The account as read before the password comparison, managed by the request's unit of work. */
  user: User;
  /** The device the session runs on. */
  deviceId: string;
  /** Whether the sign-in clears the account's brute-force backoff (see LoginGuard). */
  clearsBackoff: boolean;
  /** A stronger hash of the same password, stored when the row still has the hash that was verified. */
  upgradedHash: string | null;
  /** The security event recorded with it (see AuditService.row). */
  event: AuditRow;
}

/** How long refresh tokens live, and how long a rotated one may still be presented (seconds). */
export interface SessionLifetimes {
  refreshTokenSeconds: number;
  refreshReuseIntervalSeconds: number;
}

/**
 * Owns device sessions and refresh-token rotation. Every change to a user's sessions takes a
 * {@link LockedAccount}: the user's row is locked first, so rotations, sign-ins and the ending of
 * sessions of one user happen one after the other, never interleaved (see account-lock.ts).
 */
export class SessionService {
  constructor(
    private readonly lifetimes: SessionLifetimes,
    private readonly gate: SignInGate,
    /** Derives each rotated refresh token from the one it replaces (see successorRefreshToken). */
    private readonly refreshTokenKey: Uint8Array,
  ) {}

  /** Starts a new device session (a new family) on the device `deviceId`, for a user who just proved who they are. */
  start(account: LockedAccount, meta: RequestMeta, deviceId: string, refreshToken: RefreshTokenPair = createRefreshToken()): IssuedSession {
    // The callers commit right after (registration's flush, rotation's transaction).
    this.gate.pass();
    const issued = this.draft(account.user, meta, deviceId, refreshToken);
    account.em.persist(issued.session);
    return issued;
  }

  /**
   * Commits a password sign-in in one statement, which is one round trip and one transaction: the
   * user row is updated (last sign-in, backoff, upgraded hash), the device session and the security
   * event are inserted. Sign-in is the busiest write there is, and the same work as a locked
   * transaction (BEGIN, SELECT … FOR UPDATE, three writes, COMMIT) cost PostgreSQL about twice the
   * CPU (BENCHMARKS.md, "Database cost per login").
   *
   * It keeps the rule of account-lock.ts: the UPDATE takes the user row's lock before any session
   * row exists, and its condition is evaluated again on the row's latest version after a wait. A
   * reset, change or deactivation that committed since the password was compared makes the user
   * row fail `credentials_version`/`active`, so nothing is written and the answer is `null`; so does
   * an MFA enrollment that committed meanwhile (that sign-in needs a code now).
   */
  async startSignIn(em: EntityManager, signIn: PasswordSignIn, meta: RequestMeta): Promise<IssuedSession | null> {
    this.gate.pass();
    const { user, event } = signIn;
    const issued = this.draft(user, meta, signIn.deviceId);
    const { session } = issued;
    const now = session.createdAt;
    // $1 is the moment of the sign-in: the user's last sign-in, the session's start and first use, the event.
    const [row] = await pooledQuery<Record<string, unknown>>(
      em,
      `with "signed_in" as (
         update "users"
            set "last_login_at" = $1::timestamptz, "updated_at" = $1::timestamptz,
                "failed_login_count" = case when $2::boolean then 0 else "failed_login_count" end,
                "login_blocked_until" = case when $2::boolean then null else "login_blocked_until" end,
                "password_hash" = case when "password_hash" = $3 then coalesce($4::varchar, "password_hash") else "password_hash" end
          where "id" = $5 and "active" and "credentials_version" = $6 and "mfa_enabled_at" is null
          returning *),
       "session" as (
         insert into "sessions" ("id", "created_at", "user_id", "refresh_token_hash", "family", "device_id", "user_agent", "ip", "last_used_at", "expires_at")
         select $7::uuid, $1::timestamptz, "id", $8, $9::uuid, $10::uuid, $11, $12, $1::timestamptz, $13::timestamptz from "signed_in"),
       "event" as (
         insert into "audit_events" ("id", "created_at", "type", "user_id", "actor_id", "ip", "user_agent")
         select $14::uuid, $1::timestamptz, $15, $16::uuid, $17::uuid, $18, $19 from "signed_in")
       select * from "signed_in"`,
      [
        now, signIn.clearsBackoff, user.passwordHash, signIn.upgradedHash, user.id, user.credentialsVersion,
        session.id, session.refreshTokenHash, session.family, session.deviceId, session.userAgent, session.ip, session.expiresAt,
        event.id, event.type, event.userId, event.actorId, event.ip, event.userAgent,
      ],
    );
    if (!row) return null;
    // The request's unit of work already holds this user: it now reads as written.
    session.user = em.map(User, row);
    return issued;
  }

  /** A new device session's first row, not yet stored. */
  private draft(user: User, meta: RequestMeta, deviceId: string, { token, hash }: RefreshTokenPair = createRefreshToken()): IssuedSession {
    const session = new Session();
    session.user = user;
    session.refreshTokenHash = hash;
    session.family = session.id;
    session.deviceId = deviceId;
    session.userAgent = storedUserAgent(meta);
    session.ip = meta.ip;
    session.lastUsedAt = session.createdAt;
    session.expiresAt = new Date(session.createdAt.getTime() + this.lifetimes.refreshTokenSeconds * 1000);
    return { session, refreshToken: token };
  }

  /**
   * After a new device session has committed: when shutdown cut the request meanwhile (its write
   * waited past the drain limit), its answer reaches no client, so the session is ended again and
   * SERVICE_UNAVAILABLE answered, and no device session is left that nobody holds. A rotation is
   * answered as usual, in case its connection is still open: it belongs to a device session its
   * device holds anyway, and that device's token gets the same successor (see successorRefreshToken)
   * from another instance within the reuse interval.
   */
  async withdrawIfCut(em: EntityManager, issued: IssuedSession): Promise<void> {
    const { session } = issued;
    if (!this.gate.isClosed || session.family !== session.id) return;
    await em.nativeUpdate(Session, { family: session.family, revokedAt: null }, { revokedAt: new Date(), revokedReason: SessionEndReason.REVOKED });
    throw shuttingDown();
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
   * Exchanges a refresh token of the locked account for the next one of its family, which is
   * derived from it (see successorRefreshToken). The presented row is ended by one conditional
   * UPDATE. If that finds nothing, the token was already rotated: within the reuse interval of that
   * rotation (two tabs, a reload, a retried request) it gets the same refresh token as the first
   * presentation did — or the one that replaced it since — with a new access token, so a device
   * session stays one chain and a thief replaying a token cannot fork a chain of their own; later it
   * means the token leaked, and the whole family is ended. Anything else is just an invalid token
   * (`null`). It does not throw, so the caller's transaction still commits the ending of a reused family.
   */
  async rotate(account: LockedAccount, refreshToken: string, meta: RequestMeta): Promise<IssuedSession | ReuseDetected | null> {
    const { em, user } = account;
    const hash = hashRefreshToken(refreshToken);
    const now = new Date();
    const [rotated] = await em
      .createQueryBuilder(Session)
      .update({ revokedAt: now, revokedReason: SessionEndReason.ROTATED })
      .where({ refreshTokenHash: hash, user: user.id, revokedAt: null, expiresAt: { $gt: now } })
      .returning(['family', 'deviceId', 'createdAt'])
      .execute<Array<Pick<Session, 'family' | 'deviceId' | 'createdAt'>>>('all');
    if (rotated) return user.active ? this.successor(account, rotated, meta, successorRefreshToken(this.refreshTokenKey, refreshToken)) : null;
    const previous = await em.findOne(Session, { refreshTokenHash: hash, user: user.id }, { fields: ['family', 'deviceId', 'createdAt', 'revokedAt', 'revokedReason'] });
    if (previous?.revokedReason !== SessionEndReason.ROTATED) return null;
    const graceEnds = previous.revokedAt!.getTime() + this.lifetimes.refreshReuseIntervalSeconds * 1000;
    if (now.getTime() < graceEnds) {
      // Only while the family lives: a logout, reset or revocation since the rotation still wins.
      return user.active ? this.liveSuccessor(account, refreshToken, previous, meta) : null;
    }
    await this.endFamily(account, previous.family, SessionEndReason.REUSE_DETECTED);
    return { reusedByUserId: user.id };
  }

  /**
   * The live end of the chain of refresh tokens derived from `refreshToken` (each rotation of the
   * device session since it was presented first), as issued again; `null` when the chain ends in
   * a row that was not rotated (the family ended). A rotation from before successors were derived
   * has no derived row: that presentation gets a new row in the family, as it did then.
   */
  private async liveSuccessor(account: LockedAccount, refreshToken: string, previous: Pick<Session, 'family' | 'deviceId' | 'createdAt'>, meta: RequestMeta): Promise<IssuedSession | null> {
    const { em, user } = account;
    let token = refreshToken;
    // A device session rotates at most a few times within one reuse interval; the bound only guards the loop.
    for (let hop = 0; hop < 16; hop += 1) {
      const next = successorRefreshToken(this.refreshTokenKey, token);
      const row = await em.findOne(Session, { refreshTokenHash: next.hash, user: user.id });
      if (!row) return hop === 0 && (await this.isLive(account, previous.family)) ? this.successor(account, previous, meta) : null;
      if (row.revokedAt === null) return row.expiresAt > new Date() ? { session: row, refreshToken: next.token } : null;
      if (row.revokedReason !== SessionEndReason.ROTATED) return null;
      token = next.token;
    }
    return null;
  }

  /** Whether the account's device session `family` still has a live row. */
  isLive(account: LockedAccount, family: string): Promise<boolean> {
    return isLiveFamily(account, family);
  }

  /** A new row (refresh token) in the family of `predecessor`, on the same device. */
  private successor(account: LockedAccount, predecessor: Pick<Session, 'family' | 'deviceId' | 'createdAt'>, meta: RequestMeta, refreshToken?: RefreshTokenPair): IssuedSession {
    // Rows from before device tokens have no device id; their family stands in, stable from now on.
    const next = this.start(account, meta, predecessor.deviceId ?? predecessor.family, refreshToken);
    next.session.family = predecessor.family;
    // The device has been signed in since the family began; rotation does not change that.
    next.session.createdAt = new Date(predecessor.createdAt);
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

  /**
   * The live device sessions of a user, newest first: one per signed-in device. (A family had
   * several live rows when a refresh token presented again within the reuse interval got a refresh
   * token of its own; rows from then may still be live.)
   */
  async listActive(em: EntityManager, userId: string): Promise<Session[]> {
    const rows = await em.find(
      Session,
      { user: userId, revokedAt: null, expiresAt: { $gt: new Date() } },
      { orderBy: { createdAt: 'desc', family: 'asc', expiresAt: 'desc' } },
    );
    const seen = new Set<string>();
    return rows.filter((row) => !seen.has(row.family) && seen.add(row.family));
  }

  /** The family of one of the user's session rows, live or not; `null` when there is no such row. */
  async familyOfRow(em: EntityManager, rowId: string, userId: string): Promise<string | null> {
    if (!isUuid(rowId) || !isUuid(userId)) return null;
    const row = await em.fork().findOne(Session, { id: rowId, user: userId }, { fields: ['family'] });
    return row?.family ?? null;
  }

  /**
   * The live device session an access token names, with its user, in one query; `null` when the
   * session ended or expired, belongs to someone else, or its user is inactive or gone. Rotation
   * keeps the family, so every access token of the device works until it expires.
   */
  async findLive(em: EntityManager, family: string, userId: string): Promise<LiveSession | null> {
    if (!isUuid(family) || !isUuid(userId)) return null;
    // This runs on every authenticated request, so it is one SQL statement on a pooled connection
    // rather than the query builder, and its row becomes a plain view rather than managed entities:
    // building the join, running it through the ORM and hydrating the entities cost several times
    // the query itself (see BENCHMARKS.md). The partial index sessions_family_live_idx holds only
    // live rows, so the rotated rows of a long-lived device are never scanned.
    const [row] = await pooledQuery<Record<string, unknown>>(
      em,
      `select "u".* from "sessions" as "s" join "users" as "u" on "u"."id" = "s"."user_id"
        where "s"."family" = $1 and "s"."revoked_at" is null and "s"."user_id" = $2 and "u"."active" and "s"."expires_at" > now()
        limit 1`,
      [family, userId],
    );
    if (!row) return null;
    const user = em.getDriver().mapResult(row, em.getMetadata().get(User.name)) as unknown as User;
    return {
      session: { family },
      user: userView(user),
      passwordHash: user.passwordHash,
      credentialsVersion: user.credentialsVersion,
    };
  }
}

/** Whether the locked account's device session `family` still has a live row. */
async function isLiveFamily(account: LockedAccount, family: string): Promise<boolean> {
  const live = await account.em.count(Session, { family, user: account.user.id, revokedAt: null, expiresAt: { $gt: new Date() } });
  return live > 0;
}

/**
 * Locks the account of a signed-in caller in the transaction of `tx` and checks, under that lock,
 * that the caller's device session is still live; SESSION_ENDED otherwise (the account deleted, or
 * the session ended by a lockdown, logoutAll or revocation that committed while this request was on
 * its way: the ending wins, and a hijacker's request in flight changes nothing after it).
 */
export async function lockLiveViewer(tx: EntityManager, viewer: LiveSession): Promise<LockedAccount> {
  const account = await lockAccount(tx, viewer.user.id);
  if (!account || !(await isLiveFamily(account, viewer.session.family))) throw UnauthenticatedError.because(UnauthenticatedReason.SESSION_ENDED);
  return account;
}

/** Runs `work` in a transaction holding the account of a signed-in caller whose session is still live (see {@link lockLiveViewer}). */
export function withLiveViewer<T>(em: EntityManager, viewer: LiveSession, work: (account: LockedAccount) => Promise<T>): Promise<T> {
  return em.transactional(async (tx) => work(await lockLiveViewer(tx, viewer)));
}

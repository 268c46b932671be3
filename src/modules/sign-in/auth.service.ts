import { type EntityManager, ForeignKeyConstraintViolationException } from '@mikro-orm/postgresql';
import { BadUserInputError, MfaRequiredError, RateLimitedError, UnauthenticatedError, UnauthenticatedReason } from '../../errors.js';
import type { RateLimits } from '../../rate-limits.js';
import type { AuditService } from '../audit/audit.service.js';
import { AuditEventType } from '../audit/audit-event.entity.js';
import { type LockedAccount, newAccount, withLockedAccount } from '../users/account-lock.js';
import { User } from '../users/user.entity.js';
import { flushTranslatingConflicts, type NewUserInput, type UserService } from '../users/user.service.js';
import type { LoginAttempt, LoginGuard } from './login-guard.js';
import { LoginBackoff } from './login-backoff.js';
import type { SecondFactor } from '../mfa/second-factor.js';
import { OneTimeTokenPurpose } from '../one-time-tokens/one-time-token.entity.js';
import type { OneTimeTokenService } from '../one-time-tokens/one-time-token.service.js';
import type { PasswordHasher } from '../passwords/password.js';
import { normalizePassword, PASSWORD_LIMITS } from '../passwords/password-policy.js';
import type { RequestMeta } from '../sessions/request-meta.js';
import { type Session, SessionEndReason } from '../sessions/session.entity.js';
import type { IssuedSession, LiveSession, SessionService } from '../sessions/session.service.js';
import type { AccessTokens } from '../sessions/tokens.js';
import type { VerificationService } from '../verification/verification.service.js';

/** What a successful sign-in hands to the client. */
export interface SignedIn {
  accessToken: string;
  accessTokenExpiresAt: Date;
  refreshToken: string;
  refreshTokenExpiresAt: Date;
  /** Stable for this user on this device; sent back with later sign-ins (see {@link LoginGuard}). */
  deviceToken: string;
  user: User;
}

/** What a sign-in presents. */
export interface LoginRequest {
  identifier: string;
  password: string;
  /** The device token of an earlier sign-in on this device, if any. */
  deviceToken?: string | null;
}

/**
 * The signed-in caller of a request: the live session row its access token names, and its user as
 * read at the start of the request (a {@link UserView}: services that change the account update the
 * row and re-read it).
 */
export type Viewer = LiveSession;

/**
 * One message for unknown account, wrong password and inactive account, so the answer never
 * tells an attacker which of the three it was.
 */
export const INVALID_CREDENTIALS = 'Invalid email, username or password.';
/** What an MFA challenge is bound to (kept as its target). */
interface MfaChallenge {
  credentialsVersion: number;
  /** The device of the valid device token the sign-in presented, if any. */
  trustedDevice: string | null;
  /** Whether that token was a former device's (see LoginGuard.admitFormer). */
  formerDevice?: boolean;
}

const INVALID_MFA = 'The code is incorrect, or this sign-in has expired. Sign in again if it keeps failing.';
const INVALID_REFRESH_TOKEN = 'The refresh token is invalid or has expired. Sign in again.';
const REFRESH_TOKEN_MAX_LENGTH = 128;

/** What AuthService needs. */
export interface AuthDependencies {
  users: UserService;
  sessions: SessionService;
  passwords: PasswordHasher;
  accessTokens: AccessTokens;
  verification: VerificationService;
  audit: AuditService;
  limits: RateLimits;
  guard: LoginGuard;
  tokens: OneTimeTokenService;
  secondFactor: SecondFactor;
}

/** Registration, sign-in, token refresh and sign-out. */
export class AuthService {
  constructor(private readonly deps: AuthDependencies) {}

  /**
   * Opens a USER account, queues its verification code and signs it in: account, code, email and
   * session are written in one flush (one transaction).
   */
  async register(em: EntityManager, input: Omit<NewUserInput, 'role' | 'active'>, meta: RequestMeta): Promise<SignedIn> {
    await this.deps.limits.consume('registerPerIp', meta.ip);
    const user = await this.deps.users.build(em, { ...input, role: undefined, active: undefined });
    this.deps.audit.record(em, AuditEventType.USER_CREATED, { userId: user.id, actorId: user.id }, meta);
    await this.deps.verification.queueCode(em, user);
    const issued = this.deps.sessions.start(newAccount(em, user), meta, this.deps.guard.newDevice());
    await flushTranslatingConflicts(em);
    return this.signIn(em, issued);
  }

  /**
   * Checks an email-or-username and password. Exactly one bcrypt comparison happens whatever the
   * outcome (a dummy hash stands in for unknown accounts) and every failure has the same message.
   * Who pays for a failure — the presented device, or the account's shared budget — is the
   * {@link LoginGuard}'s decision.
   */
  async login(em: EntityManager, input: LoginRequest, meta: RequestMeta): Promise<SignedIn> {
    const { identifier, password } = input;
    // No stored password is longer; refusing early keeps bcrypt from hashing megabytes for nothing.
    if (password.length > PASSWORD_LIMITS.maxLength * 4) throw new BadUserInputError('Password is too long.', 'password');
    await this.deps.limits.consume('loginPerIp', meta.ip);
    const admission = await this.deps.guard.admit(em, identifier, input.deviceToken);
    const { user } = admission;
    if ('refusal' in admission) {
      this.deps.audit.record(em, AuditEventType.LOGIN_FAILED, { userId: user?.id }, meta);
      await em.flush();
      throw admission.refusal;
    }
    const { attempt } = admission;
    const matches = user ? await this.deps.passwords.verify(password, user.passwordHash) : await this.deps.passwords.verifyNothing(password);
    if (!user || !matches || !user.active) {
      await this.deps.guard.failed(attempt);
      this.deps.audit.record(em, AuditEventType.LOGIN_FAILED, { userId: user?.id }, meta);
      await em.flush();
      throw new UnauthenticatedError(INVALID_CREDENTIALS);
    }
    // An imported plain-bcrypt hash or an old cost is upgraded now, while the password is at hand.
    const upgradedHash = this.deps.passwords.needsRehash(user.passwordHash) ? await this.deps.passwords.hash(normalizePassword(password)) : null;
    if (user.mfaEnabledAt) return this.challenge(em, user, attempt, upgradedHash, meta);
    // Committed only if the account is still active with the credentials that were just checked: a
    // reset, change or deactivation that committed meanwhile wins, and this sign-in must not outlive it.
    const issued = await this.deps.sessions.startSignIn(
      em,
      {
        user,
        deviceId: attempt.deviceId,
        clearsBackoff: this.deps.guard.clearsBackoff(attempt),
        upgradedHash,
        event: this.deps.audit.row(AuditEventType.LOGIN_SUCCEEDED, { userId: user.id, actorId: user.id }, meta),
      },
      meta,
    );
    if (!issued) throw new UnauthenticatedError(INVALID_CREDENTIALS);
    await this.deps.guard.forget(attempt);
    return this.signIn(em, issued);
  }

  /**
   * The right password of an account with MFA on: no session yet, but an MFA challenge (its token
   * goes to the client in MFA_REQUIRED). The challenge remembers the credentials it was earned with
   * (a reset or change since voids it) and the device, when a valid device token was presented: such
   * a sign-in stays out of the account's backoff at verifyMfa too, its codes paying against that
   * device, so strangers' failures never keep the owner's devices out. Either way the attempt stays
   * counted until a code succeeds, so knowing the password buys no free guesses.
   */
  private async challenge(em: EntityManager, user: User, attempt: LoginAttempt, upgradedHash: string | null, meta: RequestMeta): Promise<never> {
    const bound: MfaChallenge = { credentialsVersion: user.credentialsVersion, trustedDevice: attempt.trusted ? attempt.deviceId : null, formerDevice: attempt.formerDeviceOf !== undefined };
    const mfaToken = await this.deps.tokens.issue(em, user, OneTimeTokenPurpose.MFA_CHALLENGE, JSON.stringify(bound));
    if (upgradedHash) await em.nativeUpdate(User, { id: user.id, passwordHash: user.passwordHash }, { passwordHash: upgradedHash });
    this.deps.audit.record(em, AuditEventType.MFA_CHALLENGED, { userId: user.id }, meta);
    try {
      await em.flush();
    } catch (error) {
      // The account was deleted since its password was checked: as for any account that is gone.
      if (error instanceof ForeignKeyConstraintViolationException) throw new UnauthenticatedError(INVALID_CREDENTIALS);
      throw error;
    }
    throw new MfaRequiredError(mfaToken);
  }

  /**
   * Finishes a sign-in that answered MFA_REQUIRED: a TOTP code (each time step once) or a recovery
   * code (once). Each try counts against the challenge (5) and, for a sign-in from a trusted device,
   * that device's budget (up to a cap its account's devices share), otherwise the per-account code
   * limit and the account's backoff; a wrong code and a dead challenge answer alike, with no tokens.
   */
  async verifyMfa(em: EntityManager, mfaToken: string, code: string, deviceToken: string | null | undefined, meta: RequestMeta): Promise<SignedIn> {
    const challenge = await this.deps.tokens.tryLink(em, OneTimeTokenPurpose.MFA_CHALLENGE, mfaToken);
    if (!challenge) throw new BadUserInputError(INVALID_MFA, 'code');
    const { userId } = challenge;
    const bound = JSON.parse(challenge.target ?? '{}') as MfaChallenge;
    // A trusted device pays for its codes on its own until the trusted devices' cap; beyond it the
    // try is the account's, as a stranger's would be.
    const ownDevices = { id: userId, credentialsVersion: bound.credentialsVersion };
    const device = bound.trustedDevice && (await this.deps.guard.admitDeviceCode(bound.trustedDevice, ownDevices)) ? bound.trustedDevice : null;
    if (!device) {
      const waiting = (await this.deps.guard.backoff.reserve(em, LoginBackoff.byId(userId)))?.refusal;
      if (waiting) throw new RateLimitedError(waiting.retryAfterSeconds, 'Too many failed sign-ins for this account. Try again later.');
    }
    // The codes of sign-ins from the account's devices share a budget of their own, apart from the
    // one strangers' sign-ins spend: strangers' guesses cost the owner's devices nothing, and one
    // who collected many device tokens gets no more codes than one who has a single token.
    if (!(await this.deps.secondFactor.check(em, userId, code, meta, device ? `devices:${userId}` : userId))) throw new BadUserInputError(INVALID_MFA, 'code');
    const issued = await withLockedAccount(em, userId, async (account) => {
      const { user } = account;
      // Spent here, under the account's lock: of two requests with one challenge, one signs in.
      if ((await this.deps.tokens.consume(account.em, OneTimeTokenPurpose.MFA_CHALLENGE, mfaToken))?.userId !== user.id) return null;
      // A reset or change of the password since the challenge, deactivation, MFA turned off: no sign-in.
      if (!user.active || !user.mfaEnabledAt || user.credentialsVersion !== bound.credentialsVersion) return null;
      // Written by statement, not through the entity: the code check above updated the row behind
      // the unit of work's back (the accepted TOTP step), and a flush must not write it back.
      const now = new Date();
      const clearsBackoff = device ? {} : { failedLoginCount: 0, loginBlockedUntil: null };
      await account.em.nativeUpdate(User, { id: user.id }, { lastLoginAt: now, updatedAt: now, ...clearsBackoff });
      this.deps.audit.record(account.em, AuditEventType.LOGIN_SUCCEEDED, { userId: user.id, actorId: user.id }, meta);
      return this.deps.sessions.start(account, meta, bound.trustedDevice ?? this.deps.guard.deviceFor(user, deviceToken));
    });
    if (!issued) throw new BadUserInputError(INVALID_MFA, 'code');
    if (bound.trustedDevice) await this.deps.guard.forgetDevice(bound.trustedDevice);
    await this.deps.guard.forgetOwnDevices(ownDevices);
    if (bound.formerDevice) await this.deps.guard.forgetFormerDevices(userId);
    return this.signIn(em, issued);
  }

  /**
   * Rotates a refresh token; presented again after the reuse interval it ends its whole device
   * session (see {@link SessionService.rotate}).
   */
  async refresh(em: EntityManager, refreshToken: string, meta: RequestMeta): Promise<SignedIn> {
    if (refreshToken.length === 0 || refreshToken.length > REFRESH_TOKEN_MAX_LENGTH) {
      throw new UnauthenticatedError(INVALID_REFRESH_TOKEN);
    }
    const owner = await this.deps.sessions.ownerOf(em, refreshToken);
    const outcome = owner
      ? await withLockedAccount(em, owner, async (account) => {
          const rotated = await this.deps.sessions.rotate(account, refreshToken, meta);
          if (rotated && 'reusedByUserId' in rotated) {
            this.deps.audit.record(account.em, AuditEventType.REFRESH_REUSE_DETECTED, { userId: rotated.reusedByUserId }, meta);
          }
          return rotated;
        })
      : null;
    if (!outcome || 'reusedByUserId' in outcome) throw new UnauthenticatedError(INVALID_REFRESH_TOKEN);
    return this.signIn(em, outcome);
  }

  /** Ends the caller's device session; its access and refresh tokens stop working at once. */
  async logout(em: EntityManager, viewer: Viewer, meta: RequestMeta): Promise<boolean> {
    await this.asViewer(em, viewer, meta, AuditEventType.LOGOUT, (account) => this.deps.sessions.endFamily(account, viewer.session.family, SessionEndReason.LOGOUT));
    return true;
  }

  /** Ends every session of the caller, on every device. */
  async logoutAll(em: EntityManager, viewer: Viewer, meta: RequestMeta): Promise<boolean> {
    await this.asViewer(em, viewer, meta, AuditEventType.LOGOUT, async (account) => {
      await this.deps.sessions.endAllOf(account, SessionEndReason.LOGOUT_ALL);
      return true;
    });
    return true;
  }

  /** Ends one of the caller's device sessions by id; `false` when there is no such live session of theirs. */
  async revokeSession(em: EntityManager, viewer: Viewer, sessionId: string, meta: RequestMeta): Promise<boolean> {
    const ended = await this.asViewer(em, viewer, meta, AuditEventType.SESSION_REVOKED, (account) =>
      this.deps.sessions.endFamily(account, sessionId, SessionEndReason.REVOKED),
    );
    return ended === true;
  }

  /** Runs `end` with the caller's account locked, and records `type` when it ended something. */
  private asViewer(em: EntityManager, viewer: Viewer, meta: RequestMeta, type: AuditEventType, end: (account: LockedAccount) => Promise<boolean>): Promise<boolean | null> {
    return withLockedAccount(em, viewer.user.id, async (account) => {
      const ended = await end(account);
      if (ended) this.deps.audit.record(account.em, type, { userId: viewer.user.id, actorId: viewer.user.id }, meta);
      return ended;
    });
  }

  /** The caller's live device sessions. */
  listSessions(em: EntityManager, viewer: Viewer): Promise<Session[]> {
    return this.deps.sessions.listActive(em, viewer.user.id);
  }

  /**
   * The viewer an access token stands for, or why there is none: the token alone decides
   * TOKEN_INVALID and TOKEN_EXPIRED; a genuine, current token whose device session ended, or whose
   * user is inactive or deleted, is SESSION_ENDED. Role and status come from the database, never the token.
   */
  async authenticate(em: EntityManager, accessToken: string): Promise<Viewer | UnauthenticatedReason> {
    const claims = await this.deps.accessTokens.verify(accessToken);
    if (typeof claims === 'string') return claims;
    const live = await this.deps.sessions.findLive(em, claims.sessionId, claims.userId);
    if (live || !claims.namesRow) return live ?? UnauthenticatedReason.SESSION_ENDED;
    // A token signed before access tokens named the device session names one of its rows: follow
    // it to its family. (Such tokens are all expired ACCESS_TOKEN_TTL after the upgrade.)
    const family = await this.deps.sessions.familyOfRow(em, claims.sessionId, claims.userId);
    const upgraded = family && family !== claims.sessionId ? await this.deps.sessions.findLive(em, family, claims.userId) : null;
    return upgraded ?? UnauthenticatedReason.SESSION_ENDED;
  }

  /** Issues the access token for a session that has been written. */
  private async signIn(em: EntityManager, issued: IssuedSession): Promise<SignedIn> {
    await this.deps.sessions.withdrawIfCut(em, issued);
    const { session } = issued;
    const { token, expiresAt } = await this.deps.accessTokens.sign({ userId: session.user.id, sessionId: session.family });
    return {
      accessToken: token,
      accessTokenExpiresAt: expiresAt,
      refreshToken: issued.refreshToken,
      refreshTokenExpiresAt: session.expiresAt,
      deviceToken: this.deps.guard.deviceToken(session.user, session.deviceId ?? session.family),
      user: session.user,
    };
  }
}

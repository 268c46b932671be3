import type { EntityManager } from '@mikro-orm/postgresql';
import { decodeJwt } from 'jose';
import type { RefreshTokenCookie } from '../http/refresh-cookie.js';
import type { Logger } from '../logger.js';
import type { Viewer } from '../modules/sign-in/auth.service.js';
import type { RequestMeta } from '../modules/sessions/request-meta.js';
import type { Services } from '../services.js';
import { UnauthenticatedError, UnauthenticatedReason } from '../errors.js';

/** What every resolver gets: one EntityManager fork and one viewer lookup per request. */
export interface AppContext {
  requestId: string;
  /** A fresh fork for this request only (made on first use); never shared between requests. */
  readonly em: EntityManager;
  meta: RequestMeta;
  /** The refresh-token cookie of browser clients that ask for it (see refresh-cookie.ts). */
  readonly refreshCookie: RefreshTokenCookie;
  /** The signed-in caller, or `null`. Set once, before any resolver runs. */
  viewer: Viewer | null;
  /** Why `viewer` is `null`: what an operation that needs a signed-in caller answers in `extensions.reason`. */
  readonly unauthenticated: UnauthenticatedReason | null;
  /**
   * The account of a token this server signed that no longer works (TOKEN_EXPIRED, SESSION_ENDED),
   * or `null`: whose dashboard it was, so that production can tell an admin why (see visibility.ts).
   */
  readonly formerViewerId: string | null;
  services: Services;
  /** Logger bound to this request's id (made on first use). */
  readonly logger: Logger;
}

/**
 * A JWS in compact form: three base64url parts, unpadded (RFC 7515 §7.1). Anything else, `=`
 * padding included, is not one of our access tokens, whatever a lenient decoder would make of it.
 */
const COMPACT_JWS = /^Bearer[ \t]+([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)[ \t]*$/i;

/** The bearer token of an `Authorization` header, or `null` when there is none or it is malformed. */
export function bearerToken(header: string | undefined): string | null {
  const match = header?.match(COMPACT_JWS);
  return match ? match[1] : null;
}

/** Options of {@link buildContext}: the request's transport facts and the process-wide parts. */
export interface ContextInput {
  requestId: string;
  authorization: string | undefined;
  meta: RequestMeta;
  refreshCookie: RefreshTokenCookie;
  /** The ORM's root EntityManager: forked for the request, never used for entities itself. */
  rootEm: EntityManager;
  services: Services;
  /** The process logger; the context's logger is its child bound to `requestId`. */
  logger: Logger;
}

/**
 * Builds a request's context: verifies the access token (if any) and loads its session and user in
 * one query. A bad token is not an error here: operations that need a viewer refuse with
 * UNAUTHENTICATED, and public ones (login, refreshToken) still work for a client holding a stale token.
 * The EntityManager fork and the request logger are made on first use: most requests (`me`) need neither.
 */
export async function buildContext(input: ContextInput): Promise<AppContext> {
  // `Bearer ` with nothing after it is what clients send when they hold no token.
  if (!input.authorization || /^(Bearer)?[ \t]*$/i.test(input.authorization)) return new RequestContext(input, UnauthenticatedReason.TOKEN_MISSING);
  const token = bearerToken(input.authorization);
  if (!token) return new RequestContext(input, UnauthenticatedReason.TOKEN_INVALID);
  // The viewer lookup is one read through the connection; it needs no unit of work.
  return new RequestContext(input, await input.services.auth.authenticate(input.rootEm, token), token);
}

/**
 * The subject of a token `authenticate` found genuine but expired or ended (it checks the signature
 * before anything else, so the unverified decoding here reads a payload this server wrote).
 */
function formerViewerOf(reason: UnauthenticatedReason, token: string | undefined): string | null {
  if (!token || (reason !== UnauthenticatedReason.TOKEN_EXPIRED && reason !== UnauthenticatedReason.SESSION_ENDED)) return null;
  const subject = decodeJwt(token).sub;
  return typeof subject === 'string' ? subject : null;
}

/**
 * A request's context. The lazy parts are accessors on the prototype, not on the object: Apollo
 * copies the context's own properties before executing, which would call own getters right away.
 */
class RequestContext implements AppContext {
  readonly requestId: string;
  readonly meta: RequestMeta;
  readonly refreshCookie: RefreshTokenCookie;
  readonly services: Services;
  private readonly rootEm: EntityManager;
  private readonly rootLogger: Logger;
  private forked?: EntityManager;
  private child?: Logger;

  readonly viewer: Viewer | null;
  readonly unauthenticated: UnauthenticatedReason | null;
  readonly formerViewerId: string | null;

  constructor(input: ContextInput, outcome: Viewer | UnauthenticatedReason, token?: string) {
    [this.viewer, this.unauthenticated] = typeof outcome === 'string' ? [null, outcome] : [outcome, null];
    this.formerViewerId = typeof outcome === 'string' ? formerViewerOf(outcome, token) : null;
    this.requestId = input.requestId;
    this.meta = input.meta;
    this.refreshCookie = input.refreshCookie;
    this.services = input.services;
    this.rootEm = input.rootEm;
    this.rootLogger = input.logger;
  }

  get em(): EntityManager {
    return (this.forked ??= this.rootEm.fork());
  }

  get logger(): Logger {
    return (this.child ??= this.rootLogger.child({ requestId: this.requestId }));
  }
}

/** The viewer of a request that `@Authorized` has already let through. */
export function requireViewer(context: AppContext): Viewer {
  if (!context.viewer) throw UnauthenticatedError.because(context.unauthenticated ?? UnauthenticatedReason.TOKEN_MISSING);
  return context.viewer;
}

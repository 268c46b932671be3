import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse, serialize } from 'cookie';
import { ForbiddenError } from '../errors.js';

/** The request header by which a browser client asks for its refresh token as a cookie. */
export const REFRESH_TRANSPORT_HEADER = 'refresh-token-transport';
/** The cookie that carries the refresh token in that mode. */
export const REFRESH_COOKIE = 'refresh_token';

/** What a request's token-issuing operations need to know about the refresh-token cookie. */
export interface RefreshTokenCookie {
  /**
   * Whether this request asked for the cookie (`Refresh-Token-Transport: cookie`). Throws FORBIDDEN
   * when it did from a browser origin that may not use credentials (not in CORS_ORIGINS).
   */
  wanted(): boolean;
  /** The refresh token the cookie holds, when the request asked for the cookie and sent one. */
  presented(): string | null;
  /** Sets the cookie to `token` until `expiresAt`. */
  issue(token: string, expiresAt: Date): void;
  /** Tells the browser to drop the cookie. */
  clear(): void;
}

/** Where the cookie is sent, and which browser origins may use it. */
export interface RefreshCookieOptions {
  /** The GraphQL path: the only path the browser sends the cookie to. */
  path: string;
  /** CORS_ORIGINS; `undefined` allows only requests from this server's own origin. */
  corsOrigins: readonly string[] | undefined;
}

/**
 * The opt-in browser mode for refresh tokens: `HttpOnly` (script never sees the token), `Secure`,
 * `SameSite=Strict` (no cross-site request carries it) and limited to the GraphQL path. The mode is
 * chosen per request by a header that is not CORS-safelisted, so a cross-origin page can only use
 * it after a preflight, which only CORS_ORIGINS pass; the origin is checked here again as well.
 */
export function refreshTokenCookie(req: IncomingMessage, res: ServerResponse, options: RefreshCookieOptions): RefreshTokenCookie {
  const asked = String(req.headers[REFRESH_TRANSPORT_HEADER] ?? '').trim().toLowerCase() === 'cookie';
  const set = (value: string, maxAge: number) =>
    res.appendHeader('set-cookie', serialize(REFRESH_COOKIE, value, { httpOnly: true, secure: true, sameSite: 'strict', path: options.path, maxAge }));
  return {
    wanted() {
      if (asked && !originMayUseCredentials(req, options.corsOrigins)) {
        throw new ForbiddenError('The refresh-token cookie is only for this server\'s own origin and the origins in CORS_ORIGINS.');
      }
      return asked;
    },
    presented() {
      if (!this.wanted()) return null;
      return parse(req.headers.cookie ?? '')[REFRESH_COOKIE] || null;
    },
    issue(token, expiresAt) {
      set(token, Math.max(0, Math.floor((expiresAt.getTime() - Date.now()) / 1000)));
    },
    clear() {
      set('', 0);
    },
  };
}

/** A request with no `Origin` (not a cross-origin browser request), from our own host, or from CORS_ORIGINS. */
function originMayUseCredentials(req: IncomingMessage, corsOrigins: readonly string[] | undefined): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  if (corsOrigins?.includes(origin)) return true;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

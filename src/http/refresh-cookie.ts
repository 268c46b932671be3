import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse, serialize } from 'cookie';
import { ForbiddenError } from '../errors.js';

/** The request header by which a browser client asks for its refresh token as a cookie. */
export const REFRESH_TRANSPORT_HEADER = 'refresh-token-transport';
/**
 * The cookie that carries the refresh token in that mode. The `__Host-` prefix makes browsers refuse
 * it unless it is `Secure`, has no `Domain` and has `Path=/`: another subdomain of the site can then
 * neither set nor shadow it (a planted cookie would sign the victim into the planter's account).
 */
export const REFRESH_COOKIE = '__Host-refresh_token';

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
  /** CORS_ORIGINS; `undefined` allows only requests from this server's own origin. */
  corsOrigins: readonly string[] | undefined;
}

/**
 * The opt-in browser mode for refresh tokens: `HttpOnly` (script never sees the token), `Secure`,
 * `SameSite=Strict` (no cross-site request carries it), host-only (see {@link REFRESH_COOKIE}); only
 * the token operations of the GraphQL endpoint read or write it. The mode is
 * chosen per request by a header that is not CORS-safelisted, so a cross-origin page can only use
 * it after a preflight, which only CORS_ORIGINS pass; the origin is checked here again as well.
 */
export function refreshTokenCookie(req: IncomingMessage, res: ServerResponse, options: RefreshCookieOptions): RefreshTokenCookie {
  const asked = String(req.headers[REFRESH_TRANSPORT_HEADER] ?? '').trim().toLowerCase() === 'cookie';
  const set = (value: string, maxAge: number) =>
    res.appendHeader('set-cookie', serialize(REFRESH_COOKIE, value, { httpOnly: true, secure: true, sameSite: 'strict', path: '/', maxAge }));
  return {
    wanted() {
      if (asked && !originMayUseCredentials(req, options.corsOrigins)) {
        throw new ForbiddenError('The refresh-token cookie is only for this server\'s own origin and the origins in CORS_ORIGINS.');
      }
      return asked;
    },
    presented() {
      if (!this.wanted()) return null;
      const header = req.headers.cookie ?? '';
      // Two cookies of that name mean one was planted (the prefix makes that hard, but not every
      // browser enforces it): trust neither.
      const named = header.split(';').filter((pair) => pair.trim().startsWith(`${REFRESH_COOKIE}=`));
      if (named.length !== 1) return null;
      return parse(header)[REFRESH_COOKIE] || null;
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

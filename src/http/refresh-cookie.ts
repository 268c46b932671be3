import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse, serialize } from 'cookie';
import { ForbiddenError } from '../errors.js';

/** The request header by which a browser client asks for its refresh token as a cookie. */
export const REFRESH_TRANSPORT_HEADER = 'refresh-token-transport';
/**
 * The cookie that carries the refresh token in that mode, sent by the browser to the GraphQL endpoint
 * only ({@link REFRESH_COOKIE_PATH}), never with pages, assets or other backends on the same host.
 * The `__Secure-` prefix makes browsers refuse it unless it is `Secure`. Unlike `__Host-` (which would
 * force `Path=/`), it does not stop an HTTPS page on a sibling subdomain from setting one for the
 * parent domain (cookie tossing: signing the victim into the attacker's account). So it only counts
 * together with {@link REFRESH_BINDING_COOKIE}, which a sibling cannot set, holding its hash; and two
 * cookies of that name in one request are told apart by it.
 */
export const REFRESH_COOKIE = '__Secure-refresh_token';
/**
 * A `__Host-` cookie (host-only, `Path=/`: no other host can set or shadow it) holding the SHA-256 of
 * the refresh token, not the token: a {@link REFRESH_COOKIE} without its matching binding is ignored.
 * It travels with every request to the host, but is worthless without the token itself.
 */
export const REFRESH_BINDING_COOKIE = '__Host-refresh_binding';
/** The path GraphQL is served at (app.ts routes it): the only path the browser sends the cookie to. */
export const REFRESH_COOKIE_PATH = '/graphql';
/**
 * The cookie of earlier versions (`Path=/`, sent with every request to the host). Still read when
 * {@link REFRESH_COOKIE} is absent, so no browser is signed out by the change, and expired whenever
 * the cookie is set or cleared for a request that carried it.
 */
export const LEGACY_REFRESH_COOKIE = '__Host-refresh_token';

/** What a request's token-issuing operations need to know about the refresh-token cookie. */
export interface RefreshTokenCookie {
  /**
   * Whether this request asked for the cookie (`Refresh-Token-Transport: cookie`). Throws FORBIDDEN
   * when it did from a browser origin that may not use credentials (not in CORS_ORIGINS).
   */
  wanted(): boolean;
  /**
   * The refresh token the cookie holds, when the request asked for the cookie and sent one that its
   * binding cookie matches (others of that name were planted, and are ignored). Without
   * {@link REFRESH_COOKIE}, a single {@link LEGACY_REFRESH_COOKIE} is read instead.
   */
  presented(): string | null;
  /** Sets the cookie to `token` until `expiresAt` (and expires a legacy cookie the request carried). */
  issue(token: string, expiresAt: Date): void;
  /** Tells the browser to drop the cookie (and a legacy cookie the request carried). */
  clear(): void;
}

/** Where the cookie is sent, and which browser origins may use it. */
export interface RefreshCookieOptions {
  /** CORS_ORIGINS; `undefined` allows only requests from this server's own origin. */
  corsOrigins: readonly string[] | undefined;
  /** The path of the GraphQL endpoint, the cookie's `Path` (default {@link REFRESH_COOKIE_PATH}). */
  path?: string;
}

/**
 * The opt-in browser mode for refresh tokens: `HttpOnly` (script never sees the token), `Secure`,
 * `SameSite=Strict` (no cross-site request carries it), host-only (no `Domain`) and limited to the
 * GraphQL endpoint's path (see {@link REFRESH_COOKIE}); only the token operations of the GraphQL
 * endpoint read or write it. The mode is chosen per request by a header that is not CORS-safelisted,
 * so a cross-origin page can only use it after a preflight, which only CORS_ORIGINS pass; the origin
 * is checked here again as well.
 */
export function refreshTokenCookie(req: IncomingMessage, res: ServerResponse, options: RefreshCookieOptions): RefreshTokenCookie {
  const asked = String(req.headers[REFRESH_TRANSPORT_HEADER] ?? '').trim().toLowerCase() === 'cookie';
  const header = req.headers.cookie ?? '';
  const path = options.path ?? REFRESH_COOKIE_PATH;
  // Answers to browsers that still hold the old Path=/ cookie expire it (once), so it stops
  // travelling with every request to the host; the others' answers stay as small as they were.
  // Looked for only when a cookie is set: most requests never set one.
  let legacyExpired = false;
  const set = (value: string, maxAge: number) => {
    res.appendHeader('set-cookie', serialize(REFRESH_COOKIE, value, { httpOnly: true, secure: true, sameSite: 'strict', path, maxAge }));
    res.appendHeader('set-cookie', serialize(REFRESH_BINDING_COOKIE, value && bindingOf(value), { httpOnly: true, secure: true, sameSite: 'strict', path: '/', maxAge }));
    if (!legacyExpired && valuesOf(header, LEGACY_REFRESH_COOKIE).length > 0) {
      res.appendHeader('set-cookie', serialize(LEGACY_REFRESH_COOKIE, '', { httpOnly: true, secure: true, sameSite: 'strict', path: '/', maxAge: 0 }));
      legacyExpired = true;
    }
  };
  return {
    wanted() {
      if (asked && !originMayUseCredentials(req, options.corsOrigins)) {
        throw new ForbiddenError('The refresh-token cookie is only for this server\'s own origin and the origins in CORS_ORIGINS.');
      }
      return asked;
    },
    presented() {
      if (!this.wanted()) return null;
      // A sibling subdomain can plant a __Secure- cookie of this name for the parent domain, beside
      // ours or alone, but not a __Host- one: ours is the token cookie the one binding cookie matches,
      // and a planted one is ignored (it neither signs the victim in elsewhere nor, sent beside ours
      // on every request, signs them out). No fall back to the legacy cookie either.
      const current = valuesOf(header, REFRESH_COOKIE);
      if (current.length > 0) {
        const bindings = valuesOf(header, REFRESH_BINDING_COOKIE);
        if (bindings.length !== 1) return null;
        return current.find((token) => token !== '' && matches(bindings[0], bindingOf(token))) ?? null;
      }
      const legacy = valuesOf(header, LEGACY_REFRESH_COOKIE);
      return legacy.length === 1 ? legacy[0] || null : null;
    },
    issue(token, expiresAt) {
      set(token, Math.max(0, Math.floor((expiresAt.getTime() - Date.now()) / 1000)));
    },
    clear() {
      set('', 0);
    },
  };
}

/** The value of {@link REFRESH_BINDING_COOKIE} for a refresh token. */
function bindingOf(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

function matches(presented: string, expected: string): boolean {
  const a = Buffer.from(presented);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Every value a `Cookie` header gives cookie `name`, in order (decoded as the `cookie` package does). */
function valuesOf(header: string, name: string): string[] {
  return header
    .split(';')
    .map((pair) => pair.trim())
    .filter((pair) => pair.startsWith(`${name}=`))
    .map((pair) => parse(pair)[name] ?? '');
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

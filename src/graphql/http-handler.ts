import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ApolloServer, BaseContext, HTTPGraphQLRequest } from '@apollo/server';
import { HeaderMap } from '@apollo/server';
import Negotiator from 'negotiator';
import { ErrorCode } from '../errors.js';
import type { RequestTarget } from '../http/request-target.js';
import { MAX_NESTING, nestsTooDeeply } from './limits.js';

/** Request bodies above this size are refused with 413 without being read further. */
export const MAX_BODY_BYTES = 100 * 1024;

class BodyTooLargeError extends Error {}

/** The client went away (or was cut off by a timeout) before its body arrived: nobody to answer. */
class ClientGoneError extends Error {}

/** Reads a request body up to `limit` bytes; stops reading and rejects beyond it. */
function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      reject(new BodyTooLargeError());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.pause();
        reject(new BodyTooLargeError());
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    // A request cut off mid-body (the client left, or the request timeout) emits 'error' ("aborted").
    req.on('error', () => reject(new ClientGoneError()));
  });
}

/** Sends a GraphQL-shaped error response produced outside of Apollo (body too large, bad JSON). */
function sendTransportError(res: ServerResponse, status: number, message: string): void {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  if (status === 413) res.setHeader('connection', 'close');
  res.end(JSON.stringify({ errors: [{ message, extensions: { code: ErrorCode.BAD_USER_INPUT } }] }));
}

/** Content types a browser may send cross-site without a CORS preflight (Fetch standard). */
const SIMPLE_CONTENT_TYPES = new Set(['application/x-www-form-urlencoded', 'multipart/form-data', 'text/plain']);

/**
 * Headers that prove a request was not a plain cross-site form or link: a browser sends any of them
 * only after a CORS preflight. `x-requested-with` is the generic one; the other two are what Apollo
 * Client and Sandbox send, accepted for them.
 */
const PREFLIGHT_HEADERS = ['x-requested-with', 'apollo-require-preflight', 'x-apollo-operation-name'];

/**
 * CSRF prevention (the check Apollo Server would make, answered in our words): a request a browser
 * could send cross-site without a preflight — no content type or a "simple" one, and none of
 * {@link PREFLIGHT_HEADERS} — is refused before its body is read: it may come from any web page the
 * victim's browser shows, with the browser's cookies and network position.
 */
function mayBeCrossSiteForgery(req: IncomingMessage): boolean {
  const contentType = req.headers['content-type'];
  if (contentType !== undefined && !SIMPLE_CONTENT_TYPES.has(contentType.split(';')[0].trim().toLowerCase())) return false;
  return !PREFLIGHT_HEADERS.some((name) => {
    const value = req.headers[name];
    return typeof value === 'string' ? value.length > 0 : Array.isArray(value) && value.some((entry) => entry.length > 0);
  });
}

/**
 * Serves Apollo on Node's own HTTP server: the method, CSRF prevention, bounded body reading, JSON
 * parsing, and the hand-off to `executeHTTPGraphQLRequest` (which applies the GET-mutation refusal
 * and batching rules). Refusals made here name no server product.
 */
export function createGraphQLHandler<TContext extends BaseContext>(
  apollo: ApolloServer<TContext>,
  options: { landingPage: boolean },
): (req: IncomingMessage, res: ServerResponse, target: RequestTarget, context: () => Promise<TContext>) => Promise<void> {
  return async (req, res, target, context) => {
    // Answers carry accounts and tokens: no cache may keep any of them, refusals included. (Apollo's
    // cache-control plugin, which would also say so, is disabled: it wraps every field resolver to
    // collect hints we never give.)
    res.setHeader('cache-control', 'no-store');
    if (req.method !== 'GET' && req.method !== 'POST') {
      res.setHeader('allow', 'GET, POST');
      sendTransportError(res, 405, 'Only GET and POST requests are served here.');
      return;
    }
    // A browser opening the endpoint (Sandbox, outside production) sends a plain GET: with no
    // `query` in it nothing can run, so it needs no CSRF check.
    const opensLandingPage = options.landingPage && req.method === 'GET' && /text\/html/i.test(req.headers.accept ?? '') && !new URLSearchParams(target.search).has('query');
    if (!opensLandingPage && mayBeCrossSiteForgery(req)) {
      sendTransportError(res, 400, 'Refused as a possible cross-site request forgery: send `Content-Type: application/json`, or a non-empty `X-Requested-With` header.');
      return;
    }
    let body: unknown;
    const isJson = /^application\/(graphql-response\+)?json\b/i.test(req.headers['content-type'] ?? '');
    if (req.method === 'POST') {
      let text: string;
      try {
        text = await readBody(req, MAX_BODY_BYTES);
      } catch (error) {
        if (error instanceof ClientGoneError) return;
        if (!(error instanceof BodyTooLargeError)) throw error;
        sendTransportError(res, 413, `Request body is larger than ${MAX_BODY_BYTES} bytes.`);
        return;
      }
      if (isJson) {
        try {
          body = JSON.parse(text);
        } catch {
          sendTransportError(res, 400, 'Request body is not valid JSON.');
          return;
        }
      } else {
        body = text;
      }
    }
    // The parser recurses per nesting level: refuse absurd nesting before it overflows the stack.
    const query = req.method === 'POST' ? (body as { query?: unknown } | undefined)?.query : new URLSearchParams(target.search).get('query');
    if (typeof query === 'string' && nestsTooDeeply(query)) {
      sendTransportError(res, 400, `The document nests brackets more than ${MAX_NESTING} levels deep.`);
      return;
    }
    // Apollo Server checks Accept only after it has executed the operation: a mutation (a logout, a
    // rotated refresh token) would run and its answer be lost to a 406. Refused before, as it would be.
    if (!opensLandingPage && !acceptsJson(req.headers.accept)) {
      sendTransportError(res, 406, 'Send `Accept: application/json` or `application/graphql-response+json` (or no Accept header).');
      return;
    }
    const headers = new HeaderMap();
    for (const [key, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers.set(key, Array.isArray(value) ? value.join(', ') : value);
    }
    const request: HTTPGraphQLRequest = { method: (req.method ?? 'GET').toUpperCase(), headers, search: target.search, body };
    const response = await apollo.executeHTTPGraphQLRequest({ httpGraphQLRequest: request, context });
    for (const [key, value] of response.headers) res.setHeader(key, value);
    res.statusCode = response.status ?? 200;
    if (response.body.kind === 'complete') {
      res.end(response.body.string);
      return;
    }
    for await (const chunk of response.body.asyncIterator) res.write(chunk);
    res.end();
  };
}

/**
 * Whether an answer Apollo Server can give (`application/json` or `application/graphql-response+json`)
 * is acceptable: no Accept header, or one that admits either, decided by the same negotiator.
 */
function acceptsJson(accept: string | undefined): boolean {
  if (!accept) return true;
  return new Negotiator({ headers: { accept } }).mediaType(['application/json', 'application/graphql-response+json']) !== undefined;
}

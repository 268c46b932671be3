import type { ApolloServerPlugin, GraphQLRequestListener } from '@apollo/server';
import { unwrapResolverError } from '@apollo/server/errors';
import { HeaderMap } from '@apollo/server';
import { GraphQLEnumType, GraphQLError, type GraphQLFormattedError } from 'graphql';
import { isDatabaseUnavailable, OUTAGE_RETRY_AFTER_SECONDS, type OutageLog } from '../db/outage.js';
import { AppError, ErrorCode, UnauthenticatedReason } from '../errors.js';
import type { AppContext } from './context.js';

/**
 * Codes Apollo gives to requests the client got wrong (syntax, validation, variable coercion,
 * missing body, CSRF guard). Clients only ever see the contract's codes, so all become BAD_USER_INPUT.
 */
const CLIENT_REQUEST_CODES = new Set([
  'GRAPHQL_PARSE_FAILED',
  'GRAPHQL_VALIDATION_FAILED',
  'BAD_USER_INPUT',
  'BAD_REQUEST',
  'PERSISTED_QUERY_NOT_FOUND',
  'PERSISTED_QUERY_NOT_SUPPORTED',
  'OPERATION_RESOLUTION_FAILURE',
]);

/**
 * The client errors whose messages describe the document against the schema: unknown fields,
 * arguments, types and enum values (with "did you mean"), missing selections, and variables whose
 * values do not fit their types (echoing the values). In production they all read
 * {@link INVALID_OPERATION}, so error messages cannot be used to map the schema.
 */
const SCHEMA_DESCRIBING_CODES = new Set(['GRAPHQL_VALIDATION_FAILED', 'BAD_USER_INPUT', 'OPERATION_RESOLUTION_FAILURE']);

const INTERNAL_MESSAGE = 'Internal server error.';
const UNAVAILABLE_MESSAGE = 'The service is temporarily unavailable. Try again shortly.';

/** The answer to a request that needed the database while it could not be reached. */
function unavailable(where: Pick<GraphQLFormattedError, 'locations' | 'path'>): GraphQLFormattedError {
  return { message: UNAVAILABLE_MESSAGE, ...where, extensions: { code: ErrorCode.SERVICE_UNAVAILABLE, retryAfter: OUTAGE_RETRY_AFTER_SECONDS } };
}

/**
 * The error a request's context creation throws when the viewer lookup found the database
 * unreachable: Apollo answers it with its `http` status and headers.
 */
export function contextUnavailableError(cause: unknown): GraphQLError {
  return new GraphQLError(UNAVAILABLE_MESSAGE, {
    originalError: cause instanceof Error ? cause : undefined,
    extensions: {
      code: ErrorCode.SERVICE_UNAVAILABLE,
      http: { status: 503, headers: new HeaderMap([['retry-after', String(OUTAGE_RETRY_AFTER_SECONDS)]]) },
    },
  });
}
/** The one production answer to a document or variables that do not fit the schema. */
export const INVALID_OPERATION = 'The request is not a valid operation for this API.';
/** The production answer to a document that asks for `__schema` or `__type`. */
export const INTROSPECTION_DISABLED = 'Introspection is disabled.';

/**
 * Whether an error is, or was caused by, a stack overflow: a resource failure of the server, never
 * something the client got wrong, whatever stage it happened in (it once surfaced as a parse error).
 */
export function isRecursionError(error: unknown): boolean {
  for (let cause = error, hops = 0; cause && hops < 10; hops += 1) {
    if (cause instanceof RangeError || (cause instanceof Error && cause.message === 'Maximum call stack size exceeded')) return true;
    cause = (cause as { originalError?: unknown }).originalError;
  }
  return false;
}

/** Whether an error is one we did not expect: a bug, a failing query, a library throwing. (An unreachable database is expected.) */
function isUnexpected(formatted: Pick<GraphQLFormattedError, 'extensions'>, original: unknown): boolean {
  if (original instanceof AppError || isDatabaseUnavailable(original)) return false;
  if (isRecursionError(original)) return true;
  const code = formatted.extensions?.code;
  return !(typeof code === 'string' && CLIENT_REQUEST_CODES.has(code));
}

/** Options of {@link createErrorFormatter}. */
export interface ErrorFormatOptions {
  /** Production: client errors about the schema say nothing about it (see {@link SCHEMA_DESCRIBING_CODES}). */
  hideSchema: boolean;
}

/**
 * The one error formatter. Expected errors keep their message and get their contract code;
 * everything else is masked as INTERNAL_SERVER_ERROR with a bland message (details go to the log,
 * see {@link errorLoggingPlugin}). Stack traces are never sent. With `hideSchema`, errors that
 * describe the document against the schema become one generic message without locations.
 */
export function createErrorFormatter(options: ErrorFormatOptions): (formatted: GraphQLFormattedError, error: unknown) => GraphQLFormattedError {
  return (formatted, error) => {
    const original = unwrapResolverError(error);
    const where = { locations: formatted.locations, path: formatted.path };
    if (original instanceof AppError) {
      return { message: original.message, ...where, extensions: { code: original.code, ...original.extensions } };
    }
    if (isDatabaseUnavailable(original)) return unavailable(where);
    if (isUnexpected(formatted, original)) {
      return { message: INTERNAL_MESSAGE, ...where, extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR } };
    }
    const code = String(formatted.extensions?.code);
    if (options.hideSchema && SCHEMA_DESCRIBING_CODES.has(code)) {
      // Apollo's own refusal names the product and how to turn introspection on.
      const message = /introspection/i.test(formatted.message) && /__schema|__type/.test(formatted.message) ? INTROSPECTION_DISABLED : INVALID_OPERATION;
      return { message, extensions: { code: ErrorCode.BAD_USER_INPUT } };
    }
    return { message: formatted.message, ...where, extensions: { code: ErrorCode.BAD_USER_INPUT } };
  };
}

/**
 * Logs every unexpected error once, with the request id the client got in `x-request-id`. Requests
 * refused because the database is unreachable are counted in `outages` (one line per interval, not
 * per request) and answered with HTTP 503 and `Retry-After`, as is any other SERVICE_UNAVAILABLE.
 */
export function errorLoggingPlugin(outages: OutageLog): ApolloServerPlugin<AppContext> {
  // One listener for all requests (it keeps nothing per request): no allocation on the hot path.
  const listener: GraphQLRequestListener<AppContext> = {
    async didEncounterErrors({ errors, contextValue, operationName }) {
      for (const error of errors) {
        const original = unwrapResolverError(error);
        if (!outages.record(original) && isUnexpected(error, original)) contextValue.logger.error({ err: original, path: error.path, operationName }, 'unexpected error in GraphQL request');
      }
    },
    async willSendResponse({ response }) {
      if (response.body.kind !== 'single' || !response.body.singleResult.errors) return;
      const unavailable = response.body.singleResult.errors.find((error) => error.extensions?.code === ErrorCode.SERVICE_UNAVAILABLE);
      if (!unavailable) return;
      response.http.status = 503;
      response.http.headers.set('retry-after', String(unavailable.extensions?.retryAfter ?? OUTAGE_RETRY_AFTER_SECONDS));
    },
  };
  const started = Promise.resolve(listener);
  return { requestDidStart: () => started };
}

const ERROR_CODE_DESCRIPTIONS: Record<ErrorCode, string> = {
  UNAUTHENTICATED:
    'No, bad, expired or revoked access token; or wrong credentials at login. On an operation that needs a signed-in caller, `extensions.reason` (an `UnauthenticatedReason`) says what to do: TOKEN_EXPIRED → refresh and retry; SESSION_ENDED → sign in again; TOKEN_INVALID → refresh once (a new signing key leaves refresh tokens working), else sign in again; TOKEN_MISSING → send the token. `login` and `refreshToken` failures carry no reason.',
  FORBIDDEN: 'Signed in, but the role or ownership does not allow the operation. (In production an admin-only field answers anyone but an admin as if it did not exist: BAD_USER_INPUT.)',
  BAD_USER_INPUT: 'Invalid input (`extensions.field` names the field), or an invalid, expired or used token or code.',
  CONFLICT: 'The email address or username is already taken.',
  NOT_FOUND: 'An admin operation names a user that does not exist.',
  RATE_LIMITED: 'Too many attempts; `extensions.retryAfter` gives the seconds to wait.',
  MFA_REQUIRED: 'login/verifyMfa: the password was right and a second factor is needed: send a TOTP or recovery code with `extensions.mfaToken` (valid 5 minutes, 5 wrong codes) to `verifyMfa`.',
  SERVICE_UNAVAILABLE: 'The database (or another part the request needs) is down, or the instance is shutting down: HTTP 503; retry after `extensions.retryAfter` seconds.',
  INTERNAL_SERVER_ERROR: 'Anything unexpected; the message says nothing about the cause.',
};

const REASON_DESCRIPTIONS: Record<UnauthenticatedReason, string> = {
  TOKEN_MISSING: 'No `Authorization: Bearer` access token was sent.',
  TOKEN_INVALID: 'The access token is malformed, forged, or of another issuer, audience or signing key: refresh once (the refresh token outlives a key change), else sign in again.',
  TOKEN_EXPIRED: 'The access token outlived ACCESS_TOKEN_TTL: refresh it, then retry the operation.',
  SESSION_ENDED: 'The device session ended (logout, revocation, password reset or change, deactivation, deletion): sign in again.',
};

/** `UnauthenticatedReason`: the values of `extensions.reason` on UNAUTHENTICATED, for generated clients. */
export const UnauthenticatedReasonType = new GraphQLEnumType({
  name: 'UnauthenticatedReason',
  description: 'Every value `extensions.reason` of an UNAUTHENTICATED error can take.',
  values: Object.fromEntries(
    Object.values(UnauthenticatedReason).map((reason) => [reason, { value: reason, description: REASON_DESCRIPTIONS[reason] }]),
  ),
});

/**
 * `ErrorCode` as a schema type, so generated clients get the closed set of `extensions.code`
 * values. No field returns it; it is added to the schema by `buildAppSchema`.
 */
export const ErrorCodeType = new GraphQLEnumType({
  name: 'ErrorCode',
  description: 'Every value `extensions.code` of an error can take.',
  values: Object.fromEntries(
    Object.values(ErrorCode).map((code) => [code, { value: code, description: ERROR_CODE_DESCRIPTIONS[code] }]),
  ),
});

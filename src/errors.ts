/**
 * The closed set of error codes clients see in `extensions.code` (CONTRACT.md "Errors").
 * Services throw the {@link AppError} subclasses below; the GraphQL layer turns them into
 * responses and masks everything else as INTERNAL_SERVER_ERROR.
 */
export enum ErrorCode {
  UNAUTHENTICATED = 'UNAUTHENTICATED',
  FORBIDDEN = 'FORBIDDEN',
  BAD_USER_INPUT = 'BAD_USER_INPUT',
  CONFLICT = 'CONFLICT',
  NOT_FOUND = 'NOT_FOUND',
  RATE_LIMITED = 'RATE_LIMITED',
  MFA_REQUIRED = 'MFA_REQUIRED',
  SERVICE_UNAVAILABLE = 'SERVICE_UNAVAILABLE',
  INTERNAL_SERVER_ERROR = 'INTERNAL_SERVER_ERROR',
}

/** An expected failure whose message is safe to show to the client. */
export abstract class AppError extends Error {
  abstract readonly code: ErrorCode;

  /** Extra `extensions` entries beside `code` (e.g. `field`, `retryAfter`). */
  get extensions(): Record<string, unknown> {
    return {};
  }
}

/**
 * Why an operation that needs a signed-in caller refused (`extensions.reason`, CONTRACT.md), so a
 * client knows whether to refresh and retry or to sign in again.
 */
export enum UnauthenticatedReason {
  /** No `Authorization: Bearer` header. */
  TOKEN_MISSING = 'TOKEN_MISSING',
  /** Malformed, forged, or of another issuer or audience. */
  TOKEN_INVALID = 'TOKEN_INVALID',
  /** A genuine access token past its lifetime: refresh, then retry. */
  TOKEN_EXPIRED = 'TOKEN_EXPIRED',
  /** The token's device session ended (logout, revocation, reset, deactivation, deletion): sign in again. */
  SESSION_ENDED = 'SESSION_ENDED',
}

const REASON_MESSAGES: Record<UnauthenticatedReason, string> = {
  TOKEN_MISSING: 'Not signed in: send an access token as `Authorization: Bearer <accessToken>`.',
  TOKEN_INVALID: 'The access token is not valid. Sign in again.',
  TOKEN_EXPIRED: 'The access token has expired. Refresh it and retry.',
  SESSION_ENDED: 'This session has ended. Sign in again.',
};

/**
 * No, bad, expired or revoked credentials. With a `reason` (a signed-in caller was needed) the
 * message and `extensions.reason` say which; without one (login, refresh) it says nothing more.
 */
export class UnauthenticatedError extends AppError {
  readonly code = ErrorCode.UNAUTHENTICATED;
  constructor(
    message = 'Not signed in, or the access token is no longer valid.',
    readonly reason?: UnauthenticatedReason,
  ) {
    super(message);
  }
  /** The refusal of an operation that needs a signed-in caller, for `reason`. */
  static because(reason: UnauthenticatedReason): UnauthenticatedError {
    return new UnauthenticatedError(REASON_MESSAGES[reason], reason);
  }
  override get extensions(): Record<string, unknown> {
    return this.reason ? { reason: this.reason } : {};
  }
}

/** Signed in, but the role or ownership does not allow it. */
export class ForbiddenError extends AppError {
  readonly code = ErrorCode.FORBIDDEN;
  constructor(message = 'You are not allowed to do this.') {
    super(message);
  }
}

/** A failure tied to one input field, named in `extensions.field` when known. */
abstract class FieldError extends AppError {
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
  override get extensions(): Record<string, unknown> {
    return this.field === undefined ? {} : { field: this.field };
  }
}

/** Invalid input; `field` names the input field when there is one. */
export class BadUserInputError extends FieldError {
  readonly code = ErrorCode.BAD_USER_INPUT;
}

/** An email or username already taken. */
export class ConflictError extends FieldError {
  readonly code = ErrorCode.CONFLICT;
}

/** An admin operation names a record that does not exist. */
export class NotFoundError extends AppError {
  readonly code = ErrorCode.NOT_FOUND;
}

/**
 * `login` with the right password for an account with MFA on: no tokens yet; the client sends a
 * code with `extensions.mfaToken` to `verifyMfa`.
 */
export class MfaRequiredError extends AppError {
  readonly code = ErrorCode.MFA_REQUIRED;
  constructor(readonly mfaToken: string) {
    super('Enter a code from your authenticator app (or a recovery code) to finish signing in.');
  }
  override get extensions(): Record<string, unknown> {
    return { mfaToken: this.mfaToken };
  }
}

/** A refusal the client should retry after `retryAfter` whole seconds (`extensions.retryAfter`). */
abstract class RetryLaterError extends AppError {
  constructor(
    readonly retryAfter: number,
    message: string,
  ) {
    super(message);
  }
  override get extensions(): Record<string, unknown> {
    return { retryAfter: this.retryAfter };
  }
}

/** Too many attempts. */
export class RateLimitedError extends RetryLaterError {
  readonly code = ErrorCode.RATE_LIMITED;
  constructor(retryAfter: number, message = 'Too many attempts. Try again later.') {
    super(retryAfter, message);
  }
}

/** A part the request needs is not available right now (the instance is shutting down): HTTP 503. */
export class ServiceUnavailableError extends RetryLaterError {
  readonly code = ErrorCode.SERVICE_UNAVAILABLE;
  constructor(retryAfter: number, message = 'The service is temporarily unavailable. Try again shortly.') {
    super(retryAfter, message);
  }
}

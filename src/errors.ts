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

/** No, bad, expired or revoked credentials. */
export class UnauthenticatedError extends AppError {
  readonly code = ErrorCode.UNAUTHENTICATED;
  constructor(message = 'Not signed in, or the access token is no longer valid.') {
    super(message);
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

/** Too many attempts; `retryAfter` is in whole seconds. */
export class RateLimitedError extends AppError {
  readonly code = ErrorCode.RATE_LIMITED;
  constructor(
    readonly retryAfter: number,
    message = 'Too many attempts. Try again later.',
  ) {
    super(message);
  }
  override get extensions(): Record<string, unknown> {
    return { retryAfter: this.retryAfter };
  }
}

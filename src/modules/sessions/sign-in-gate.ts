import { ServiceUnavailableError } from '../../errors.js';

/**
 * Closes when shutdown cuts the requests still running at its drain limit: from then on no session
 * is issued, since its tokens would reach no client. Every session starts through
 * {@link SessionService} (sign-in, registration, rotation), which passes here right before the
 * write that commits it; a request refused here answers SERVICE_UNAVAILABLE, to be retried on
 * another instance.
 */
export class SignInGate {
  private closed = false;

  /** Refuses to issue a session once shutdown has cut the requests in flight. */
  pass(): void {
    if (this.closed) throw shuttingDown();
  }

  /** Whether shutdown has cut the requests in flight (a session written since reaches no client). */
  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    this.closed = true;
  }
}

/** SERVICE_UNAVAILABLE: retry on another instance. */
export function shuttingDown(): ServiceUnavailableError {
  return new ServiceUnavailableError(1, 'This instance is shutting down. Try again.');
}

import { UniqueConstraintViolationException } from '@mikro-orm/core';

/**
 * The name of the unique index a write violated, or `undefined` when `error` is something else.
 * Uniqueness is decided by the index, never by a check-then-insert: this is how a losing racer
 * learns which value was taken.
 */
export function violatedUniqueConstraint(error: unknown): string | undefined {
  if (!(error instanceof UniqueConstraintViolationException)) return undefined;
  const { constraint } = error as UniqueConstraintViolationException & { constraint?: unknown };
  return typeof constraint === 'string' ? constraint : '';
}

import type { GraphQLFieldConfig, GraphQLFieldResolver } from 'graphql';
import { BadUserInputError } from '../errors.js';

/** C0 and C1 control characters and DEL: never part of a name, identifier, token, code or search. */
const CONTROL_CHARACTER = /\p{Cc}/u;
/** In a `u` regular expression a surrogate pair is one code point; only unpaired halves match. */
const UNPAIRED_SURROGATE = /\p{Cs}/u;

/**
 * Fields that are only ever hashed or compared, never stored as given or sent to SQL: a password
 * imported from another system may hold a tab, and a policy refusal of a new one says why
 * (password-policy.ts). Unpaired surrogates are refused even there, since UTF-8 cannot carry them
 * and two different strings would hash alike.
 */
const CONTROLS_ALLOWED = new Set(['password', 'currentPassword', 'newPassword']);

/**
 * Refuses a string argument anywhere in `args` (nested inputs and lists included) that holds a
 * control character or an unpaired surrogate, with BAD_USER_INPUT naming the innermost field.
 */
export function checkArguments(args: Record<string, unknown>): void {
  for (const [name, value] of Object.entries(args)) checkValue(name, value);
}

function checkValue(field: string, value: unknown): void {
  if (typeof value === 'string') {
    if (UNPAIRED_SURROGATE.test(value)) throw new BadUserInputError('Text must be valid Unicode (it holds an unpaired surrogate).', field);
    // Whitespace around a value (a pasted line break) is trimmed by every field that keeps text.
    if (!CONTROLS_ALLOWED.has(field) && CONTROL_CHARACTER.test(value.trim())) {
      throw new BadUserInputError('Text must not contain control characters (such as NUL, tab or line breaks).', field);
    }
    return;
  }
  if (Array.isArray(value)) {
    for (const item of value) checkValue(field, item);
    return;
  }
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    for (const [name, nested] of Object.entries(value)) checkValue(name, nested);
  }
}

/**
 * The one input boundary: every root field that takes arguments checks them before its resolver
 * runs, so no string with a NUL or another control character, and no broken Unicode, reaches a
 * service, a rate-limit key or SQL (PostgreSQL refuses NUL in text with an error that used to
 * surface as INTERNAL_SERVER_ERROR). Field-specific rules (names, emails, usernames) stay with the
 * fields, in the services. Fields without arguments (`me`, the hot path) are left untouched.
 */
export function guardArguments<TSource, TContext>(field: GraphQLFieldConfig<TSource, TContext>): GraphQLFieldConfig<TSource, TContext> {
  if (!field.args || Object.keys(field.args).length === 0 || !field.resolve) return field;
  const resolve: GraphQLFieldResolver<TSource, TContext> = field.resolve;
  return {
    ...field,
    resolve(source, args, context, info) {
      checkArguments(args);
      return resolve(source, args, context, info);
    },
  };
}

import { isEmail } from 'class-validator';
import { BadUserInputError } from '../../errors.js';
import { USER_LIMITS } from './user.entity.js';

// Printable ASCII only: look-alike characters (full-width letters, dotless ı, Cyrillic а) and
// control characters (CR/LF header injection, NUL) never reach the database.
const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;
const USERNAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;
const CONTROL_CHARACTERS = /\p{Cc}/u;

/**
 * Trims, lower-cases and validates an email address. Internationalised addresses are refused for
 * now: their look-alikes make account confusion easy, and SMTP delivery to them is not guaranteed.
 */
export function normalizeEmail(raw: string, field = 'email'): string {
  const email = raw.trim();
  if (email.length === 0) throw new BadUserInputError('Email address is required.', field);
  if (email.length > USER_LIMITS.emailLength) {
    throw new BadUserInputError(`Email address must be at most ${USER_LIMITS.emailLength} characters.`, field);
  }
  if (!PRINTABLE_ASCII.test(email) || !isEmail(email, { allow_utf8_local_part: false, require_tld: true, allow_ip_domain: false, allow_display_name: false })) {
    throw new BadUserInputError('Email address is not valid.', field);
  }
  return email.toLowerCase();
}

/**
 * Validates a username: 3–32 ASCII letters, digits, `.`, `_` or `-`, starting and ending with a
 * letter or digit. Never containing `@` keeps login identifiers unambiguous.
 */
export function normalizeUsername(raw: string, field = 'username'): string {
  const username = raw.trim();
  if (username.length < USER_LIMITS.usernameMinLength || username.length > USER_LIMITS.usernameLength) {
    throw new BadUserInputError(
      `Username must be ${USER_LIMITS.usernameMinLength} to ${USER_LIMITS.usernameLength} characters.`,
      field,
    );
  }
  if (!USERNAME.test(username)) {
    throw new BadUserInputError(
      'Username may contain only letters, digits, ".", "_" and "-", and must start and end with a letter or digit.',
      field,
    );
  }
  return username;
}

/**
 * Normalizes an optional personal name: trimmed, NFC, empty becomes `null`; control characters
 * are refused. `undefined` (not sent) stays `undefined` so updates can tell "unchanged" from "cleared".
 */
export function normalizeName(raw: string | null | undefined, field: string): string | null | undefined {
  if (raw === undefined || raw === null) return raw;
  const name = raw.normalize('NFC').trim();
  if (name.length === 0) return null;
  if (name.length > USER_LIMITS.nameLength) {
    throw new BadUserInputError(`Name must be at most ${USER_LIMITS.nameLength} characters.`, field);
  }
  if (CONTROL_CHARACTERS.test(name)) throw new BadUserInputError('Name contains control characters.', field);
  return name;
}

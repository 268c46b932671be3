import { dictionary } from '@zxcvbn-ts/language-common';
import { BadUserInputError } from '../../errors.js';

/** Password length bounds (CONTRACT.md), counted in Unicode code points after NFKC normalization. */
export const PASSWORD_LIMITS = { minLength: 12, maxLength: 256 } as const;

/** The shortest email local part or username that a password may not contain. */
const MIN_OWNER_PART_LENGTH = 3;

const CONTROL_CHARACTERS = /\p{Cc}/u;
/** Digits, punctuation and spaces at either end of a password. */
const EDGE_PADDING = /^[\d\W_]+|[\d\W_]+$/gu;
/** Shorter listed words ("abc", "qwe") are too common inside good passphrases to refuse. */
const MIN_COMMON_CORE_LENGTH = 6;

/**
 * NFKC makes a password typed on one keyboard match the same password typed on another
 * (full-width digits, composed accents), as NIST SP 800-63B §5.1.1.2 recommends.
 */
export function normalizePassword(password: string): string {
  return password.normalize('NFKC');
}

/** Whose password it is: the (normalized) email and username it may not contain. */
export interface PasswordOwner {
  email?: string | null;
  username?: string | null;
}

/**
 * Checks a new password against the policy (register, reset, change, admin create) and returns its
 * normalized form. Length, characters, a blocklist of common passwords and the owner's own email
 * and username; no composition rules (NIST SP 800-63B §5.1.1.2). Each refusal names its rule.
 */
export function checkNewPassword(password: string, owner: PasswordOwner, field = 'password'): string {
  const normalized = normalizePassword(password);
  const length = [...normalized].length;
  if (length < PASSWORD_LIMITS.minLength) {
    throw new BadUserInputError(`Password must be at least ${PASSWORD_LIMITS.minLength} characters.`, field);
  }
  if (length > PASSWORD_LIMITS.maxLength) {
    throw new BadUserInputError(`Password must be at most ${PASSWORD_LIMITS.maxLength} characters.`, field);
  }
  if (CONTROL_CHARACTERS.test(normalized)) {
    throw new BadUserInputError('Password must not contain control characters (such as NUL, tab or line breaks).', field);
  }
  const lower = normalized.toLowerCase();
  if (commonPasswords().has(lower)) {
    throw new BadUserInputError('Password is on a list of commonly used passwords; choose another.', field);
  }
  // "monkey123456", "!!iloveyou2024": a listed password padded with digits or symbols to reach the
  // length is guessed just as fast (NIST SP 800-63B §5.1.1.2 lists such context-free variations).
  const core = lower.replace(EDGE_PADDING, '');
  if (core !== lower && [...core].length >= MIN_COMMON_CORE_LENGTH && commonPasswords().has(core)) {
    throw new BadUserInputError('Password is a commonly used password with digits or symbols added; choose another.', field);
  }
  const username = owner.username?.toLowerCase();
  if (username && username.length >= MIN_OWNER_PART_LENGTH && lower.includes(username)) {
    throw new BadUserInputError('Password must not contain your username.', field);
  }
  const email = owner.email?.toLowerCase();
  const localPart = email ? email.slice(0, Math.max(email.lastIndexOf('@'), 0)) : '';
  if (localPart.length >= MIN_OWNER_PART_LENGTH && lower.includes(localPart)) {
    throw new BadUserInputError('Password must not contain the part of your email address before the "@".', field);
  }
  return normalized;
}

let commonPasswordSet: Set<string> | undefined;

/**
 * The common-passwords list of zxcvbn-ts (`passwords-common`, about 49 000 entries), normalized and
 * lower-cased. Whole entries of 12+ characters are refused as they are; shorter ones are refused
 * when padded to length. Built on first use and kept.
 */
export function commonPasswords(): ReadonlySet<string> {
  commonPasswordSet ??= new Set(dictionary['passwords-common'].map((entry) => normalizePassword(entry).toLowerCase()));
  return commonPasswordSet;
}

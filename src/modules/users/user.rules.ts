import { domainToASCII, domainToUnicode } from 'node:url';
import { isEmail } from 'class-validator';
import { BadUserInputError } from '../../errors.js';
import { USER_LIMITS } from './user.entity.js';

/**
 * The local part of an address: an RFC 5322 dot-atom in printable ASCII. No quoted strings
 * (`"victim.fz"@example.test` would be a second account for the mailbox of victim.fz@…), no
 * comments, no look-alike letters (full-width, dotless ı, Cyrillic а).
 */
const LOCAL_PART = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
const LOCAL_PART_MAX_LENGTH = 64;
const USERNAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;
/**
 * Controls, whitespace and invisible characters: IDNA mapping would silently drop a line break or
 * a zero-width space inside a domain, so an address could be typed in ways nobody can see.
 */
const NOT_IN_A_DOMAIN = /[\s\p{Cc}\p{Default_Ignorable_Code_Point}]/u;
/** Controls, and line and paragraph separators. */
const NOT_IN_A_NAME = /[\p{Cc}\p{Zl}\p{Zp}]/u;
/** Bidirectional overrides and isolates (U+202A–U+202E, U+2066–U+2069, LRM, RLM, ALM): they reorder how text around a name is shown. */
const BIDI_CONTROL = /\p{Bidi_Control}/u;
/**
 * Characters that render as nothing. Joiners and variation selectors are the exception: ZWNJ and
 * ZWJ belong to Persian, Indic and emoji spellings, variation selectors to emoji, so they may stand
 * where they do that (see {@link hasHiddenCharacter}).
 */
const INVISIBLE = /\p{Default_Ignorable_Code_Point}/u;
const JOINER = /^[\u200C\u200D]$/u;
/**
 * Format characters that are not default-ignorable (interlinear annotation U+FFF9–FFFB, Arabic
 * number signs U+0600–0605…), noncharacters (U+FFFF…), and the Braille blank U+2800: none belongs in a
 * name, and each can make one look empty or like another. Joiners are {@link hasHiddenCharacter}'s.
 */
const FORMAT_OR_BLANK = /[\p{Cf}\p{Noncharacter_Code_Point}\u2800]/u;
/** A combining mark with nothing before it to combine with. */
const LEADING_MARK = /^\p{M}/u;
const VARIATION_SELECTOR = /^[\uFE00-\uFE0F\u{E0100}-\u{E01EF}]$/u;

/**
 * Whether a name holds an invisible character other than a variation selector right after a
 * character it modifies, or a joiner between two such characters (`👨‍👩‍👧`, `❤️‍🔥`, `می‌خواهم`).
 */
function hasHiddenCharacter(characters: readonly string[]): boolean {
  const shows = (character: string | undefined) => character !== undefined && (!INVISIBLE.test(character) || VARIATION_SELECTOR.test(character));
  return characters.some((character, index) => {
    if (!INVISIBLE.test(character)) return false;
    if (VARIATION_SELECTOR.test(character)) return !shows(characters[index - 1]) || VARIATION_SELECTOR.test(characters[index - 1]);
    if (JOINER.test(character)) return !shows(characters[index - 1]) || !shows(characters[index + 1]);
    return true;
  });
}

/**
 * Trims, lower-cases and validates an email address: an ASCII dot-atom local part, and a domain
 * in either spelling of an internationalised name. `müller.example` and its punycode
 * `xn--mller-kva.example` are one address, stored in the ASCII form DNS and SMTP use, so a
 * look-alike domain shows as what it is (`xn--…`) and cannot pass for another.
 */
export function normalizeEmail(raw: string, field = 'email'): string {
  const email = raw.trim();
  if (email.length === 0) throw new BadUserInputError('Email address is required.', field);
  const invalid = () => new BadUserInputError('Email address is not valid.', field);
  if ([...email].length > USER_LIMITS.emailLength) {
    throw new BadUserInputError(`Email address must be at most ${USER_LIMITS.emailLength} characters.`, field);
  }
  const at = email.lastIndexOf('@');
  const local = email.slice(0, Math.max(at, 0));
  const domainAsTyped = email.slice(at + 1);
  if (at <= 0 || local.length > LOCAL_PART_MAX_LENGTH || !LOCAL_PART.test(local) || NOT_IN_A_DOMAIN.test(domainAsTyped)) throw invalid();
  // '' for a domain that is not a valid (internationalised) host name, including bad punycode.
  const domain = domainToASCII(domainAsTyped);
  if (!domain || domainToASCII(domainToUnicode(domain)) !== domain) throw invalid();
  const normalized = `${local}@${domain}`.toLowerCase();
  if (normalized.length > USER_LIMITS.emailLength) {
    throw new BadUserInputError(`Email address must be at most ${USER_LIMITS.emailLength} characters.`, field);
  }
  if (!isEmail(normalized, { allow_utf8_local_part: false, require_tld: true, allow_ip_domain: false, allow_display_name: false })) throw invalid();
  return normalized;
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
 * Normalizes an optional personal name: trimmed, NFC, empty becomes `null`, at most 100 characters
 * counted as code points (an emoji is one). Refused: control characters and line separators,
 * bidirectional overrides, invisible characters (zero-width space, word joiner, BOM, Hangul
 * fillers, other format characters, the Braille blank, noncharacters) and a leading combining mark,
 * all of which make one name look like another, or like none. `undefined` (not sent) stays
 * `undefined` so updates can tell "unchanged" from "cleared".
 */
export function normalizeName(raw: string | null | undefined, field: string): string | null | undefined {
  if (raw === undefined || raw === null) return raw;
  const name = raw.normalize('NFC').trim();
  if (name.length === 0) return null;
  const characters = [...name];
  if (characters.length > USER_LIMITS.nameLength) {
    throw new BadUserInputError(`Name must be at most ${USER_LIMITS.nameLength} characters.`, field);
  }
  if (NOT_IN_A_NAME.test(name)) throw new BadUserInputError('Name contains control characters.', field);
  if (BIDI_CONTROL.test(name)) throw new BadUserInputError('Name contains characters that change the direction of text.', field);
  if (hasHiddenCharacter(characters) || characters.some((character) => FORMAT_OR_BLANK.test(character) && !JOINER.test(character))) {
    throw new BadUserInputError('Name contains invisible characters.', field);
  }
  if (LEADING_MARK.test(name)) throw new BadUserInputError('Name must not start with a combining mark.', field);
  return name;
}

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
 * Characters that render as nothing (zero-width space and joiners, word joiner, BOM, soft hyphen,
 * Hangul fillers, variation selectors, tags…). Only joiners and variation selectors are ever allowed,
 * and only where a script or an emoji uses them (see {@link hiddenCharacterAt}): anywhere else they
 * are invisible, and `Ad\u200Dmin` or `Admin\uFE0F` shows as `Admin`.
 */
const INVISIBLE = /\p{Default_Ignorable_Code_Point}/u;
const ZWNJ = '\u200C';
const ZWJ = '\u200D';
const JOINER = /^[\u200C\u200D]$/u;
/**
 * Format characters that are not default-ignorable (interlinear annotation U+FFF9–FFFB, Arabic
 * number signs U+0600–0605…), noncharacters (U+FFFF…), and the Braille blank U+2800: none belongs in a
 * name, and each can make one look empty or like another. Joiners are {@link hiddenCharacterAt}'s.
 */
const FORMAT_OR_BLANK = /[\p{Cf}\p{Noncharacter_Code_Point}\u2800]/u;
/** A combining mark with nothing before it to combine with. */
const LEADING_MARK = /^\p{M}/u;

/**
 * Scripts whose spelling needs ZWNJ and ZWJ: the cursive joining scripts (Persian `حسن‌زاده`) and
 * the Brahmic scripts of South Asia, where they choose between a conjunct, a half form and a
 * visible virama (`क्‍ष`, `क्‌ष`, Sinhala `ශ්‍රී`). A joiner is allowed only between two letters or
 * marks of one of them.
 */
const JOINING_SCRIPTS = [
  /\p{scx=Arabic}/u,
  /\p{scx=Syriac}/u,
  /\p{scx=Nko}/u,
  /\p{scx=Mongolian}/u,
  /\p{scx=Devanagari}/u,
  /\p{scx=Bengali}/u,
  /\p{scx=Gurmukhi}/u,
  /\p{scx=Gujarati}/u,
  /\p{scx=Oriya}/u,
  /\p{scx=Tamil}/u,
  /\p{scx=Telugu}/u,
  /\p{scx=Kannada}/u,
  /\p{scx=Malayalam}/u,
  /\p{scx=Sinhala}/u,
];
const LETTER_OR_MARK = /^[\p{L}\p{M}]$/u;
const LETTER = /^\p{L}$/u;
const MARK = /^\p{M}$/u;
/** Malayalam virama: `ന്‍` (virama + ZWJ) is the older spelling of the chillu `ൻ`, which ends a word. */
const MALAYALAM_VIRAMA = '\u0D4D';
const WORD_END = /^[\s\p{P}]$/u;

/** Emoji and their components, outside ASCII (`#`, `*` and the digits are emoji too). */
const EMOJI = /^[\p{Extended_Pictographic}\p{Emoji}\p{Emoji_Component}]$/u;
const ASCII = /^[\0-\x7F]$/u;
const EMOJI_COMPONENT = /^\p{Emoji_Component}$/u;
/** Text (U+FE0E) and emoji (U+FE0F) presentation selectors. */
const PRESENTATION_SELECTOR = /^[\uFE0E\uFE0F]$/u;
const KEYCAP_BASE = /^[0-9#*]$/u;
const KEYCAP = '\u20E3';
/** Ideographic variation selectors, and U+FE00–FE02 of the standardized variants of CJK ideographs. */
const IDEOGRAPHIC_VARIATION_SELECTOR = /^[\uFE00-\uFE02\u{E0100}-\u{E01EF}]$/u;
const IDEOGRAPH = /^\p{Unified_Ideograph}$/u;

/** At most this many nonspacing or enclosing marks on one character (Unicode TR #39, 5.4). */
const MAX_MARKS_ON_ONE_CHARACTER = 4;
const NONSPACING_MARK = /^[\p{Mn}\p{Me}]$/u;

function isEmoji(character: string | undefined): boolean {
  return character !== undefined && EMOJI.test(character) && !ASCII.test(character) && !INVISIBLE.test(character);
}

/** The character a joiner at `index` follows, read past an emoji presentation selector (`❤️‍🔥`). */
function emojiBefore(characters: readonly string[], index: number): string | undefined {
  const previous = characters[index - 1];
  return previous === '\uFE0F' ? characters[index - 2] : previous;
}

/**
 * Whether the joiner at `index` stands between two letters or marks of one joining script, the one
 * before it attached to a letter of that script (not `A\u064B\u200D…`).
 */
function joinsScript(characters: readonly string[], index: number): boolean {
  const previous = characters[index - 1];
  const next = characters[index + 1];
  if (previous === undefined || !LETTER_OR_MARK.test(previous)) return false;
  let base = index - 1;
  while (base >= 0 && (MARK.test(characters[base]) || JOINER.test(characters[base]))) base -= 1;
  const letter = characters[base];
  if (letter === undefined || !LETTER.test(letter)) return false;
  return JOINING_SCRIPTS.some((script) => {
    if (!script.test(previous) || !script.test(letter)) return false;
    if (next !== undefined && LETTER_OR_MARK.test(next)) return script.test(next);
    // A Malayalam chillu spelled with ZWJ ends a word.
    return characters[index] === ZWJ && previous === MALAYALAM_VIRAMA && (next === undefined || WORD_END.test(next));
  });
}

/**
 * Whether the character at `index` is invisible where it stands. Allowed: ZWJ inside an emoji
 * sequence (`👩‍💻`, `🏳️‍🌈`); ZWNJ and ZWJ between letters of a script that spells with them
 * (`می‌خواهم`, `क्‍ष`); an emoji presentation selector right after an emoji (`❤️`) or in a keycap
 * (`1️⃣`); an ideographic variation selector right after a CJK ideograph (`辻` + U+E0100). Everything else
 * default-ignorable is refused.
 */
function hiddenCharacterAt(characters: readonly string[], index: number): boolean {
  const character = characters[index];
  if (!INVISIBLE.test(character)) return false;
  const previous = characters[index - 1];
  const next = characters[index + 1];
  if (character === ZWJ && isEmoji(emojiBefore(characters, index)) && isEmoji(next)) return false;
  if (character === ZWJ || character === ZWNJ) return !joinsScript(characters, index);
  if (PRESENTATION_SELECTOR.test(character)) {
    if (previous !== undefined && isEmoji(previous) && !EMOJI_COMPONENT.test(previous)) return false;
    return !(previous !== undefined && KEYCAP_BASE.test(previous) && next === KEYCAP);
  }
  if (IDEOGRAPHIC_VARIATION_SELECTOR.test(character)) return !(previous !== undefined && IDEOGRAPH.test(previous));
  return true;
}

/**
 * Whether one character carries more than {@link MAX_MARKS_ON_ONE_CHARACTER} nonspacing marks, or
 * the same nonspacing mark twice in a row (`Á́` can show as `Á`), counted in the decomposed form
 * (`ễ` is e + two marks). Real names need two or three (Vietnamese `ễ`, Hebrew `שָּׁ`, Hindi `ज़ी`,
 * Thai `กิ๊`); a stack of dozens (Zalgo text) spills over the lines around the name.
 */
function hasStackedMarks(name: string): boolean {
  let marks = 0;
  let previous = '';
  for (const character of name.normalize('NFD')) {
    if (!MARK.test(character)) {
      marks = 0;
    } else if (NONSPACING_MARK.test(character)) {
      marks += 1;
      if (marks > MAX_MARKS_ON_ONE_CHARACTER || character === previous) return true;
    }
    previous = character;
  }
  return false;
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
 * fillers, other format characters, the Braille blank, noncharacters, and joiners or variation
 * selectors where no script or emoji uses them), a leading combining mark, and stacks of combining
 * marks, all of which make one name look like another, or like none. `undefined` (not sent) stays
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
  if (characters.some((character, index) => hiddenCharacterAt(characters, index) || (FORMAT_OR_BLANK.test(character) && !JOINER.test(character)))) {
    throw new BadUserInputError('Name contains invisible characters.', field);
  }
  if (LEADING_MARK.test(name)) throw new BadUserInputError('Name must not start with a combining mark.', field);
  if (hasStackedMarks(name)) {
    throw new BadUserInputError(`Name must not stack more than ${MAX_MARKS_ON_ONE_CHARACTER} combining marks, or the same one twice, on a character.`, field);
  }
  return name;
}

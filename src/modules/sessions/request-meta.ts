/** Who is calling, as far as the transport can tell; recorded on sessions and audit events. */
export interface RequestMeta {
  ip: string | null;
  userAgent: string | null;
}

/** Longest User-Agent kept in the database; longer ones are cut. */
export const USER_AGENT_MAX_LENGTH = 512;

/**
 * Control and invisible formatting characters (C0, C1, bidi controls, zero-width characters, soft
 * hyphens, line and paragraph separators): a header may carry them (its bytes are read as Latin-1),
 * and shown to an admin they would move a terminal's cursor or disguise the text.
 */
const HIDDEN_OR_CONTROL = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;

/**
 * The User-Agent of a request as this server keeps it: its control and formatting characters
 * replaced by U+FFFD, so nothing stored or shown from it can steer a terminal or reorder text.
 */
export function userAgentOf(header: string | undefined): string | null {
  return header === undefined ? null : header.replace(HIDDEN_OR_CONTROL, '\uFFFD');
}

/** The User-Agent as stored: cut to {@link USER_AGENT_MAX_LENGTH}. */
export function storedUserAgent(meta: RequestMeta): string | null {
  return meta.userAgent?.slice(0, USER_AGENT_MAX_LENGTH) ?? null;
}

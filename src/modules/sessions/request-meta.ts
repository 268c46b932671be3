/** Who is calling, as far as the transport can tell; recorded on sessions and audit events. */
export interface RequestMeta {
  ip: string | null;
  userAgent: string | null;
}

/** Longest User-Agent kept in the database; longer ones are cut. */
export const USER_AGENT_MAX_LENGTH = 512;

/** The User-Agent as stored: cut to {@link USER_AGENT_MAX_LENGTH}. */
export function storedUserAgent(meta: RequestMeta): string | null {
  return meta.userAgent?.slice(0, USER_AGENT_MAX_LENGTH) ?? null;
}

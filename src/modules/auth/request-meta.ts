/** Who is calling, as far as the transport can tell; recorded on sessions (and later, audit events). */
export interface RequestMeta {
  ip: string | null;
  userAgent: string | null;
}

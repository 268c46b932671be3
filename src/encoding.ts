const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * Whether `text` is unpadded base64url exactly as an encoder writes it: only the alphabet, a length
 * that encodes whole bytes, and zero spare bits in the last character. Decoders accept other
 * spellings of the same bytes (`=` padding, a last character differing in its spare bits), so
 * anything compared by its decoded bytes — access tokens, device tokens, cursors — must also be
 * checked for this. Decodes nothing.
 */
export function isCanonicalBase64url(text: string): boolean {
  const remainder = text.length % 4;
  if (remainder === 1 || !/^[A-Za-z0-9_-]*$/.test(text)) return false;
  if (remainder === 0) return true;
  const last = BASE64URL.indexOf(text[text.length - 1]);
  // Two characters carry 12 bits for one byte (4 spare), three carry 18 for two (2 spare).
  return (last & (remainder === 2 ? 0b1111 : 0b11)) === 0;
}

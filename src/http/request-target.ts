/** The path and query string of an HTTP request target. */
export interface RequestTarget {
  pathname: string;
  /** `?…`, or empty. */
  search: string;
}

/**
 * Splits a request's target into path and query; `null` when it cannot be parsed. Origin-form
 * targets (`/graphql?x=1`, what every client sends) are split at the first `?` without building a
 * URL, which is measurable on every request; anything else (absolute-form, `*`, `//host/…`) goes
 * through the WHATWG parser. Node's HTTP parser lets through targets that parser refuses
 * (`//[x`, `http://a:99999/`), so refusing is an answer, not an exception.
 */
export function requestTarget(url: string | undefined): RequestTarget | null {
  const target = url ?? '/';
  if (target.startsWith('/') && !target.startsWith('//')) {
    const query = target.indexOf('?');
    return query === -1 ? { pathname: target, search: '' } : { pathname: target.slice(0, query), search: target.slice(query) };
  }
  if (!URL.canParse(target, 'http://localhost')) return null;
  const { pathname, search } = new URL(target, 'http://localhost');
  return { pathname, search };
}

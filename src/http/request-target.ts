/** The path and query string of an HTTP request target. */
export interface RequestTarget {
  pathname: string;
  /** `?…`, or empty. */
  search: string;
}

/**
 * Splits a request's target into path and query. Origin-form targets (`/graphql?x=1`, what every
 * client sends) are split at the first `?` without building a URL, which is measurable on every
 * request; anything else (absolute-form, `*`) goes through the WHATWG parser.
 */
export function requestTarget(url: string | undefined): RequestTarget {
  const target = url ?? '/';
  if (target.startsWith('/') && !target.startsWith('//')) {
    const query = target.indexOf('?');
    return query === -1 ? { pathname: target, search: '' } : { pathname: target.slice(0, query), search: target.slice(query) };
  }
  const { pathname, search } = new URL(target, 'http://localhost');
  return { pathname, search };
}

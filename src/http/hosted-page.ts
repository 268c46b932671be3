import { randomBytes } from 'node:crypto';

/** Options of a hosted page. */
export interface HostedPageOptions {
  /** The CSP nonce of the inline script and style; a fresh random one when omitted (tests pin it). */
  nonce?: string;
}

/** A rendered page and the headers it must be sent with. */
export interface RenderedPage {
  html: string;
  headers: Record<string, string>;
}

const STYLE = `
:root { color-scheme: light dark; --accent: #1f5fbf; --error: #b00020; --ok: #1b6e20; }
@media (prefers-color-scheme: dark) { :root { --accent: #8ab4f8; --error: #ff8a80; --ok: #81c995; } }
* { box-sizing: border-box; }
body { margin: 0; font: 1rem/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 26rem; margin: 3rem auto; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 1rem; }
h1:focus { outline: none; }
label { display: block; font-weight: 600; margin-top: 1rem; }
input { display: block; width: 100%; margin-top: 0.25rem; padding: 0.5rem; font: inherit; border: 1px solid #767676; border-radius: 4px; }
input:focus, button:focus { outline: 3px solid var(--accent); outline-offset: 2px; }
input[aria-invalid="true"] { border-color: var(--error); }
.hint { margin: 0.25rem 0 0; font-size: 0.9rem; }
button { margin-top: 1.5rem; padding: 0.6rem 1.2rem; font: inherit; font-weight: 600; color: #fff; background: var(--accent); border: 0; border-radius: 4px; cursor: pointer; }
@media (prefers-color-scheme: dark) { button { color: #000; } }
button:disabled { opacity: 0.6; cursor: progress; }
#status { min-height: 1.5em; margin-top: 1.5rem; }
#status.error { color: var(--error); font-weight: 600; }
#status.ok { color: var(--ok); font-weight: 600; }
[hidden] { display: none !important; }
`;

/*
 * Helpers every page's script starts with (plain ES2017, no dependencies): the token is read from
 * the address bar here, never by the server, and removed from it at once; the API is called only
 * when the visitor acts, so opening a link (a mail scanner does) changes nothing. Messages go in
 * with textContent, never as HTML.
 */
const SCRIPT_HELPERS = `
  var status = document.getElementById('status');
  var heading = document.getElementById('heading');
  var token = new URLSearchParams(window.location.search).get('token') || '';
  // The token must not linger in the address bar, the history or a bookmark.
  if (window.location.search) {
    try { window.history.replaceState(null, '', window.location.pathname + window.location.hash); } catch (ignored) {}
  }
  function show(kind, message) {
    status.className = kind;
    status.textContent = message;
  }
  function finish(form, message, kind) {
    form.hidden = true;
    show(kind, message);
    heading.focus();
  }
  // Resolves with the response body, or one shaped like an error when there is none to read.
  function callApi(query, variables) {
    return fetch('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      credentials: 'omit',
      cache: 'no-store',
      referrerPolicy: 'no-referrer',
      body: JSON.stringify({ query: query, variables: variables })
    })
      .then(function (response) {
        return response.json().catch(function () { return { errors: [{ message: 'The server answered with status ' + response.status + '. Try again later.' }] }; });
      })
      .catch(function () {
        return { errors: [{ message: 'The server could not be reached. Check your connection and try again.', extensions: { network: true } }] };
      });
  }
  function firstError(body, fallback) {
    var error = (body && body.errors && body.errors[0]) || {};
    return { message: typeof error.message === 'string' && error.message ? error.message : fallback, extensions: error.extensions || {} };
  }
`;

/** What a hosted page consists of. */
export interface HostedPageContent {
  title: string;
  /** The HTML inside `<main>`: an `h1#heading`, the page's form, and a `p#status`. */
  body: string;
  /** The page's own script, run after {@link SCRIPT_HELPERS} inside one function. */
  script: string;
}

/**
 * A self-contained page this server hosts for links in emails (reset, "this wasn't me"): inline
 * style and script, nothing fetched but `POST /graphql`, locked down by a nonce-based
 * Content-Security-Policy, never referring, never cached, and inert on GET: it holds nothing from
 * the request, so it is the same for every visitor but for the nonce.
 */
export function hostedPage(content: HostedPageContent, options: HostedPageOptions = {}): RenderedPage {
  const nonce = options.nonce ?? randomBytes(18).toString('base64');
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(nonce)) throw new Error('A CSP nonce must be base64 or base64url.');
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex, nofollow">
<title>${content.title}</title>
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
<main>
${content.body}
</main>
<script nonce="${nonce}">
(function () {
  'use strict';
${SCRIPT_HELPERS}
${content.script}
})();
</script>
</body>
</html>
`;
  const source = `'nonce-${nonce}'`;
  return {
    html,
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': `default-src 'none'; script-src ${source}; style-src ${source}; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'`,
      'referrer-policy': 'no-referrer',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    },
  };
}

/** Writes a rendered page as the answer to a GET or HEAD. */
export function sendPage(res: import('node:http').ServerResponse, page: RenderedPage, head: boolean): void {
  for (const [name, value] of Object.entries(page.headers)) res.setHeader(name, value);
  res.setHeader('content-length', Buffer.byteLength(page.html));
  res.statusCode = 200;
  res.end(head ? undefined : page.html);
}

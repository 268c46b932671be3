import { randomBytes } from 'node:crypto';

/** Options of {@link resetPasswordPage}. */
export interface ResetPasswordPageOptions {
  /** The CSP nonce of the inline script and style; a fresh random one when omitted (tests pin it). */
  nonce?: string;
}

/** A rendered page and the headers it must be sent with. */
export interface RenderedPage {
  html: string;
  headers: Record<string, string>;
}

/** The operation the page sends; the same document a frontend would send. */
export const RESET_PASSWORD_MUTATION = 'mutation Reset($input: ResetPasswordInput!) { resetPassword(input: $input) }';

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
 * Plain ES2017, no dependencies. The token is read from the address bar here, never by the server,
 * and the API is only called when the form is submitted: opening the link (a mail scanner does)
 * changes nothing. Every message goes in with textContent, never as HTML.
 */
const SCRIPT = `
(function () {
  'use strict';
  var MUTATION = ${JSON.stringify(RESET_PASSWORD_MUTATION)};
  var form = document.getElementById('reset-form');
  var first = document.getElementById('new-password');
  var second = document.getElementById('confirm-password');
  var button = document.getElementById('submit');
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
  function markInvalid(field) {
    first.removeAttribute('aria-invalid');
    second.removeAttribute('aria-invalid');
    if (field) { field.setAttribute('aria-invalid', 'true'); field.focus(); }
  }
  function finish(message, kind) {
    form.hidden = true;
    show(kind, message);
    heading.focus();
  }

  if (!token) {
    finish('This link has no reset token. Open the link from the email again, or ask for a new one.', 'error');
    return;
  }
  form.hidden = false;
  show('', '');

  var busy = false;
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    if (busy) return;
    if (!first.value) { markInvalid(first); show('error', 'Enter a new password.'); return; }
    if (first.value !== second.value) {
      markInvalid(second);
      show('error', 'The passwords do not match. Type the same password in both fields.');
      return;
    }
    markInvalid(null);
    busy = true;
    button.disabled = true;
    show('', 'Saving your new password\\u2026');
    fetch('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      credentials: 'omit',
      cache: 'no-store',
      referrerPolicy: 'no-referrer',
      body: JSON.stringify({ query: MUTATION, variables: { input: { token: token, newPassword: first.value } } })
    })
      .then(function (response) {
        return response.json().catch(function () { return { errors: [{ message: 'The server answered with status ' + response.status + '. Try again later.' }] }; });
      })
      .then(function (body) {
        if (body && body.data && body.data.resetPassword === true) {
          first.value = '';
          second.value = '';
          finish('Your password has been changed. You can now sign in with your new password.', 'ok');
          return;
        }
        var error = (body && body.errors && body.errors[0]) || {};
        var extensions = error.extensions || {};
        var message = typeof error.message === 'string' && error.message ? error.message : 'The password could not be changed. Try again later.';
        if (extensions.field === 'token') { finish(message, 'error'); return; }
        show('error', message);
        markInvalid(extensions.field === 'newPassword' ? first : null);
      })
      .catch(function () {
        show('error', 'The server could not be reached. Check your connection and try again.');
      })
      .then(function () {
        busy = false;
        button.disabled = false;
      });
  });
})();
`;

/**
 * The hosted "choose a new password" page that reset links (`$APP_URL/reset-password?token=…`)
 * open when APP_URL is this server. Self-contained (inline style and script, nothing fetched but
 * `POST /graphql`), locked down by a nonce-based Content-Security-Policy, and inert on GET: it
 * holds nothing from the request, so it is the same for every visitor but for the nonce.
 */
export function resetPasswordPage(options: ResetPasswordPageOptions = {}): RenderedPage {
  const nonce = options.nonce ?? randomBytes(18).toString('base64');
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(nonce)) throw new Error('A CSP nonce must be base64 or base64url.');
  // `novalidate`: minlength/maxlength are hints for password managers, but the server's policy
  // (code points after NFKC, not UTF-16 units) decides, and its message is the one shown.
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex, nofollow">
<title>Choose a new password</title>
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
<main>
<h1 id="heading" tabindex="-1">Choose a new password</h1>
<noscript><p>This page needs JavaScript to change your password.</p></noscript>
<form id="reset-form" novalidate hidden>
<label for="new-password">New password</label>
<input id="new-password" name="new-password" type="password" autocomplete="new-password" minlength="12" maxlength="256" required aria-describedby="password-hint status">
<p class="hint" id="password-hint">At least 12 characters. A few unrelated words make a good one.</p>
<label for="confirm-password">Repeat the new password</label>
<input id="confirm-password" name="confirm-password" type="password" autocomplete="new-password" minlength="12" maxlength="256" required aria-describedby="status">
<button id="submit" type="submit">Change password</button>
</form>
<p id="status" role="status" aria-live="polite" aria-atomic="true"></p>
</main>
<script nonce="${nonce}">${SCRIPT}</script>
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

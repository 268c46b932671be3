import { type HostedPageOptions, hostedPage, type RenderedPage } from './hosted-page.js';

/** The operation the page sends; the same document a frontend would send. */
export const LOCK_ACCOUNT_MUTATION = 'mutation Lock($token: String!) { lockAccount(token: $token) }';

// Nothing happens until the button is pressed: mail scanners open links, and a GET spends nothing.
const SCRIPT = `
  var MUTATION = ${JSON.stringify(LOCK_ACCOUNT_MUTATION)};
  var form = document.getElementById('lockdown-form');
  var button = document.getElementById('submit');

  if (!token) {
    finish(form, 'This link has no token. Open the link from the email again.', 'error');
    return;
  }
  form.hidden = false;

  var busy = false;
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    if (busy) return;
    busy = true;
    button.disabled = true;
    show('', 'Locking your account\\u2026');
    callApi(MUTATION, { token: token })
      .then(function (body) {
        if (body && body.data && body.data.lockAccount === true) {
          finish(form, 'Your account is locked. Every device was signed out and recent changes were undone. We sent a link to choose a new password to your email address: nobody can sign in until a new password is chosen.', 'ok');
          return;
        }
        var error = firstError(body, 'The account could not be locked. Try again later.');
        if (error.extensions.field === 'token') { finish(form, error.message + ' If your account is still at risk, use "forgot password" to choose a new one.', 'error'); return; }
        show('error', error.message);
      })
      .then(function () {
        busy = false;
        button.disabled = false;
      });
  });
`;

const BODY = `<h1 id="heading" tabindex="-1">Was this not you?</h1>
<noscript><p>This page needs JavaScript to lock your account.</p></noscript>
<form id="lockdown-form" hidden>
<p>If someone else changed your account, lock it now:</p>
<ul>
<li>every device signed in to it is signed out;</li>
<li>an email address change from the last 7 days is undone, and two-factor sign-in turned on in the last 7 days is turned off;</li>
<li>nobody can sign in until a new password is chosen, with a link we send to your email address.</li>
</ul>
<button id="submit" type="submit">Lock my account</button>
</form>
<p id="status" role="status" aria-live="polite" aria-atomic="true"></p>`;

/**
 * The hosted "this wasn't me" page that lockdown links (`$LOCKDOWN_URL?token=…`) open when they
 * point at this server (see {@link hostedPage}).
 */
export function lockdownPage(options: HostedPageOptions = {}): RenderedPage {
  return hostedPage({ title: 'Lock your account', body: BODY, script: SCRIPT }, options);
}

import { type HostedPageOptions, hostedPage, type RenderedPage } from './hosted-page.js';

/** The operation the page sends; the same document a frontend would send. */
export const RESET_PASSWORD_MUTATION = 'mutation Reset($input: ResetPasswordInput!) { resetPassword(input: $input) }';

const SCRIPT = `
  var MUTATION = ${JSON.stringify(RESET_PASSWORD_MUTATION)};
  var form = document.getElementById('reset-form');
  var first = document.getElementById('new-password');
  var second = document.getElementById('confirm-password');
  var button = document.getElementById('submit');

  function markInvalid(field) {
    first.removeAttribute('aria-invalid');
    second.removeAttribute('aria-invalid');
    if (field) { field.setAttribute('aria-invalid', 'true'); field.focus(); }
  }

  if (!token) {
    finish(form, 'This link has no reset token. Open the link from the email again, or ask for a new one.', 'error');
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
    callApi(MUTATION, { input: { token: token, newPassword: first.value } })
      .then(function (body) {
        if (body && body.data && body.data.resetPassword === true) {
          first.value = '';
          second.value = '';
          finish(form, 'Your password has been changed. You can now sign in with your new password.', 'ok');
          return;
        }
        var error = firstError(body, 'The password could not be changed. Try again later.');
        if (error.extensions.field === 'token') { finish(form, error.message, 'error'); return; }
        show('error', error.message);
        markInvalid(error.extensions.field === 'newPassword' ? first : null);
      })
      .then(function () {
        busy = false;
        button.disabled = false;
      });
  });
`;

// `novalidate`: minlength/maxlength are hints for password managers, but the server's policy
// (code points after NFKC, not UTF-16 units) decides, and its message is the one shown.
const BODY = `<h1 id="heading" tabindex="-1">Choose a new password</h1>
<noscript><p>This page needs JavaScript to change your password.</p></noscript>
<form id="reset-form" novalidate hidden>
<label for="new-password">New password</label>
<input id="new-password" name="new-password" type="password" autocomplete="new-password" minlength="12" maxlength="256" required aria-describedby="password-hint status">
<p class="hint" id="password-hint">At least 12 characters. A few unrelated words make a good one.</p>
<label for="confirm-password">Repeat the new password</label>
<input id="confirm-password" name="confirm-password" type="password" autocomplete="new-password" minlength="12" maxlength="256" required aria-describedby="status">
<button id="submit" type="submit">Change password</button>
</form>
<p id="status" role="status" aria-live="polite" aria-atomic="true"></p>`;

/**
 * The hosted "choose a new password" page that reset links (`$RESET_PASSWORD_URL?token=…`) open
 * when they point at this server (see {@link hostedPage}).
 */
export function resetPasswordPage(options: HostedPageOptions = {}): RenderedPage {
  return hostedPage({ title: 'Choose a new password', body: BODY, script: SCRIPT }, options);
}

import type { LinkTargets } from '../config/config.js';
import { OneTimeTokenPurpose } from '../modules/one-time-tokens/one-time-token.entity.js';
import { TOKEN_KINDS } from '../modules/one-time-tokens/one-time-token.service.js';

/** What an email says, before rendering. Stored (encrypted) in the outbox until it is sent. */
export type MailTemplate =
  | { name: 'verification-code'; code: string }
  | { name: 'password-reset'; token: string }
  | { name: 'email-change-code'; code: string }
  | { name: 'account-locked'; token: string }
  | SecurityNotice;

/**
 * A notice of a change to the account's security, with its "this wasn't me" link (see
 * SecurityNotices; `lockdownToken` is absent only from notices queued before the links existed).
 */
export type SecurityNotice = { lockdownToken?: string } & SecurityNoticeContent;

/** What a security notice reports. */
export type SecurityNoticeContent =
  | { name: 'password-changed' }
  | { name: 'email-change-requested'; newEmail: string }
  | { name: 'email-changed'; newEmail: string }
  | { name: 'mfa-enabled' }
  | { name: 'mfa-disabled' };

/** A rendered email. */
export interface RenderedMail {
  subject: string;
  text: string;
  html: string;
}

/**
 * Every link in an email is built here, from the configured link targets only (RESET_PASSWORD_URL,
 * LOCKDOWN_URL) — never from request headers such as Host or X-Forwarded-Host, which an attacker
 * controls (reset-link poisoning). The token becomes the `token` query parameter, beside any the
 * target already has; custom schemes (`myapp://reset`) work the same way.
 */
export function tokenLink(target: string, token: string): string {
  const url = new URL(target);
  url.searchParams.set('token', token);
  return url.href;
}

const escapeHtml = (value: string): string =>
  value.replace(/[&<>"']/g, (character) => `&#${character.charCodeAt(0)};`);

/** Wraps paragraphs (already escaped) in a minimal, client-safe HTML document. */
function htmlDocument(title: string, paragraphs: string[]): string {
  return [
    '<!doctype html>',
    `<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>`,
    '<body style="font-family: sans-serif; line-height: 1.5;">',
    ...paragraphs.map((paragraph) => `<p>${paragraph}</p>`),
    '</body></html>',
  ].join('\n');
}

const IGNORE_IF_NOT_YOU = 'If you did not ask for this, you can ignore this email.';

/** Subject and body of each security notice; the "this wasn't me" link follows the body. */
const NOTICES: Record<SecurityNotice['name'], (notice: SecurityNotice) => { subject: string; body: string }> = {
  'password-changed': () => ({ subject: 'Your password was changed', body: 'The password of your account was just changed, and other devices were signed out.' }),
  'email-change-requested': (notice) => ({
    subject: 'Someone asked to change your email address',
    body: `Someone signed in to your account asked to change its email address to ${'newEmail' in notice ? notice.newEmail : ''}. Nothing changes unless a code sent to that address is entered.`,
  }),
  'email-changed': (notice) => ({
    subject: 'Your email address was changed',
    body: `The email address of your account was changed to ${'newEmail' in notice ? notice.newEmail : ''}. This address no longer receives its emails, and other devices were signed out.`,
  }),
  'mfa-enabled': () => ({ subject: 'Two-factor sign-in was turned on', body: 'Two-factor sign-in (an authenticator app) was turned on for your account. Signing in now needs a code from that app.' }),
  'mfa-disabled': () => ({ subject: 'Two-factor sign-in was turned off', body: 'Two-factor sign-in was turned off for your account. Signing in now needs only the password.' }),
};

/** Renders a security notice with its "this wasn't me" link. */
function renderNotice(notice: SecurityNotice, links: LinkTargets): RenderedMail {
  const { subject, body } = NOTICES[notice.name](notice);
  if (!notice.lockdownToken) {
    const warning = 'If this was not you, reset your password now and check your account.';
    return { subject, text: `${body}\n\n${warning}\n`, html: htmlDocument(subject, [escapeHtml(body), `<strong>${escapeHtml(warning)}</strong>`]) };
  }
  const link = tokenLink(links.lockdown, notice.lockdownToken);
  const days = TOKEN_KINDS[OneTimeTokenPurpose.LOCKDOWN].ttlMs / 86_400_000;
  const warning = 'If this was not you, lock your account now: every device is signed out, recent changes of the email address and two-factor sign-in are undone, and a link to choose a new password is sent to you.';
  const validity = `If this was you, ignore this email. The link works once, for ${days} days.`;
  return {
    subject,
    text: `${body}\n\n${warning}\n\nThis wasn't me:\n${link}\n\n${validity}\n`,
    html: htmlDocument(subject, [escapeHtml(body), `<strong>${escapeHtml(warning)}</strong>`, `<a href="${escapeHtml(link)}">This wasn't me: lock my account</a>`, escapeHtml(validity)]),
  };
}

/** A 6-digit code email (verification, email change). */
function renderCode(subject: string, intro: string, code: string, minutes: number): RenderedMail {
  const lines = [`${intro} ${code}.`, `It is valid for ${minutes} minutes.`, IGNORE_IF_NOT_YOU];
  return {
    subject,
    text: `${lines.join('\n\n')}\n`,
    html: htmlDocument(subject, [
      `${escapeHtml(intro)} <strong style="font-size: 1.5em; letter-spacing: 0.2em;">${escapeHtml(code)}</strong>.`,
      escapeHtml(lines[1]),
      escapeHtml(IGNORE_IF_NOT_YOU),
    ]),
  };
}

/** An email with one link to choose a new password. */
function renderResetLink(subject: string, intro: string, link: string, notice: string, closing: string): RenderedMail {
  return {
    subject,
    text: `${intro}\n\nChoose a new password here:\n${link}\n\n${notice}\n\n${closing}\n`,
    html: htmlDocument(subject, [escapeHtml(intro), `<a href="${escapeHtml(link)}">Choose a new password</a>`, escapeHtml(notice), escapeHtml(closing)]),
  };
}

const minutesOf = (purpose: OneTimeTokenPurpose): number => TOKEN_KINDS[purpose].ttlMs / 60_000;

/** Renders a template into subject, plain text and HTML. */
export function renderMail(template: MailTemplate, links: LinkTargets): RenderedMail {
  switch (template.name) {
    case 'verification-code':
      return renderCode(`Your verification code: ${template.code}`, 'Your verification code is', template.code, minutesOf(OneTimeTokenPurpose.EMAIL_VERIFICATION));
    case 'email-change-code':
      return renderCode(`Confirm your new email address: ${template.code}`, 'To make this the email address of your account, enter the code', template.code, minutesOf(OneTimeTokenPurpose.EMAIL_CHANGE));
    case 'password-reset':
      return renderResetLink(
        'Reset your password',
        'Someone asked to reset the password of your account.',
        tokenLink(links.resetPassword, template.token),
        'The link is valid for one hour and works once. Your password stays the same until you choose a new one.',
        IGNORE_IF_NOT_YOU,
      );
    case 'account-locked':
      return renderResetLink(
        'Your account is locked: choose a new password',
        'Your account was locked from a "this wasn\'t me" link: every device was signed out, and recent changes of its email address and two-factor sign-in were undone. Nobody can sign in until a new password is chosen.',
        tokenLink(links.resetPassword, template.token),
        'The link is valid for one hour and works once. If it expires, ask for a new one with "forgot password".',
        'Then check your account: its sessions, its email address and its two-factor settings.',
      );
    default:
      return renderNotice(template, links);
  }
}

import type { LinkTargets } from '../config/config.js';
import { OneTimeTokenPurpose } from '../modules/one-time-tokens/one-time-token.entity.js';
import { TOKEN_KINDS } from '../modules/one-time-tokens/one-time-token.service.js';

/** What an email says, before rendering. Stored (encrypted) in the outbox until it is sent. */
export type MailTemplate =
  | { name: 'verification-code'; code: string }
  | { name: 'password-reset'; token: string }
  | { name: 'password-changed' };

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

/** Renders a template into subject, plain text and HTML. */
export function renderMail(template: MailTemplate, links: LinkTargets): RenderedMail {
  switch (template.name) {
    case 'verification-code': {
      const minutes = TOKEN_KINDS[OneTimeTokenPurpose.EMAIL_VERIFICATION].ttlMs / 60_000;
      const subject = `Your verification code: ${template.code}`;
      const lines = [`Your verification code is ${template.code}.`, `It is valid for ${minutes} minutes.`, IGNORE_IF_NOT_YOU];
      return {
        subject,
        text: `${lines.join('\n\n')}\n`,
        html: htmlDocument(subject, [
          `Your verification code is <strong style="font-size: 1.5em; letter-spacing: 0.2em;">${escapeHtml(template.code)}</strong>.`,
          escapeHtml(lines[1]),
          escapeHtml(IGNORE_IF_NOT_YOU),
        ]),
      };
    }
    case 'password-reset': {
      const link = tokenLink(links.resetPassword, template.token);
      const subject = 'Reset your password';
      const notice = 'The link is valid for one hour and works once. Your password stays the same until you choose a new one.';
      return {
        subject,
        text: `Someone asked to reset the password of your account.\n\nChoose a new password here:\n${link}\n\n${notice}\n\n${IGNORE_IF_NOT_YOU}\n`,
        html: htmlDocument(subject, [
          'Someone asked to reset the password of your account.',
          `<a href="${escapeHtml(link)}">Choose a new password</a>`,
          escapeHtml(notice),
          escapeHtml(IGNORE_IF_NOT_YOU),
        ]),
      };
    }
    case 'password-changed': {
      const subject = 'Your password was changed';
      const body = 'The password of your account was just changed, and other devices were signed out.';
      const warning = 'If this was not you, reset your password now and check your account.';
      return {
        subject,
        text: `${body}\n\n${warning}\n`,
        html: htmlDocument(subject, [escapeHtml(body), `<strong>${escapeHtml(warning)}</strong>`]),
      };
    }
  }
}

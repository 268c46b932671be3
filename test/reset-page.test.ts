import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resetPasswordPage } from '../src/http/reset-page.js';
import { INVALID_RESET_TOKEN } from '../src/modules/recovery/recovery.service.js';
import { FORGOT_PASSWORD, LOGIN, registerAccount, RESET_PASSWORD } from './support/accounts.js';
import { errorField, startTestServer, type TestServer } from './support/server.js';
import { resetTokenOf, startSmtpServer, type TestSmtpServer } from './support/smtp.js';


let server: TestServer;
let smtp: TestSmtpServer;
beforeAll(async () => {
  smtp = await startSmtpServer();
  server = await startTestServer({ SMTP_URL: smtp.url });
});
afterAll(async () => {
  await server?.stop();
  await smtp?.stop();
});

/** The CSP directives of a header value, by name. */
function directives(csp: string): Map<string, string> {
  return new Map(
    csp
      .split(';')
      .map((part) => part.trim())
      .filter(Boolean)
      .map((part) => {
        const [name, ...values] = part.split(/\s+/);
        return [name, values.join(' ')] as const;
      }),
  );
}

function noncesOf(html: string, tag: 'script' | 'style'): string[] {
  return [...html.matchAll(new RegExp(`<${tag}\\b[^>]*\\bnonce="([^"]+)"`, 'g'))].map((match) => match[1]);
}

// The pages this server hosts for links in emails: the same CSP and nonce rules hold for each.
describe.each(['/reset-password', '/lockdown'])('GET %s under its CSP', (path) => {
  it('serves the page with a strict CSP whose nonce is the one of the inline script and style', async () => {
    const response = await fetch(`${server.origin}${path}?token=abc`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(response.headers.get('referrer-policy')).toBe('no-referrer');
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('x-request-id')).toBeTruthy();
    const csp = directives(response.headers.get('content-security-policy') ?? '');
    const nonce = csp.get('script-src')?.match(/^'nonce-([A-Za-z0-9+/=_-]{16,})'$/)?.[1];
    expect(nonce, 'script-src is exactly one nonce').toBeTruthy();
    expect(csp.get('style-src')).toBe(`'nonce-${nonce}'`);
    expect(csp.get('default-src')).toBe("'none'");
    expect(csp.get('connect-src')).toBe("'self'");
    expect(csp.get('form-action')).toBe("'none'");
    expect(csp.get('base-uri')).toBe("'none'");
    expect(csp.get('frame-ancestors')).toBe("'none'");

    const html = await response.text();
    expect(noncesOf(html, 'script')).toEqual([nonce]);
    expect(noncesOf(html, 'style')).toEqual([nonce]);
    // Every script and style element carries the nonce; nothing is loaded from elsewhere.
    expect(html.match(/<script\b/g)).toHaveLength(1);
    expect(html.match(/<style\b/g)).toHaveLength(1);
    expect(html).not.toMatch(/\b(src|href)\s*=/i);
    expect(html).not.toMatch(/\sstyle\s*=/i);
    // The token is read by the script from the address bar; the server never writes it into the page.
    expect(html).not.toContain('abc');
  });

  it('uses a fresh nonce for every response', async () => {
    const [one, two] = await Promise.all([fetch(`${server.origin}${path}`), fetch(`${server.origin}${path}`)]);
    const nonce = (response: Response) => response.headers.get('content-security-policy')?.match(/'nonce-([^']+)'/)?.[1];
    expect(nonce(one)).toBeTruthy();
    expect(nonce(one)).not.toBe(nonce(two));
    await Promise.all([one.text(), two.text()]);
  });
});

describe('GET /reset-password', () => {
  it('is an accessible form: lang, main, two labelled new-password inputs, a button and a live status region', async () => {
    const html = await (await fetch(`${server.origin}/reset-password?token=abc`)).text();
    expect(html).toMatch(/<html lang="en">/);
    expect(html).toMatch(/<main>[\s\S]*<form\b[\s\S]*<\/form>[\s\S]*<\/main>/);
    expect(html).toMatch(/<title>[^<]+<\/title>/);
    const inputs = [...html.matchAll(/<input\b[^>]*>/g)].map((match) => match[0]);
    expect(inputs).toHaveLength(2);
    for (const input of inputs) {
      expect(input).toContain('type="password"');
      expect(input).toContain('autocomplete="new-password"');
      expect(input).toContain('minlength="12"');
      expect(input).toContain('maxlength="256"');
      const id = input.match(/\bid="([^"]+)"/)?.[1];
      expect(html, `a label for #${id}`).toMatch(new RegExp(`<label for="${id}">[^<]+</label>`));
    }
    expect(html).toMatch(/<button\b[^>]*type="submit"[^>]*>[^<]+<\/button>/);
    expect(html).toMatch(/<[a-z]+\b[^>]*role="status"[^>]*aria-live="polite"/);
  });

  it('answers HEAD with the headers and no body, and other methods with 405 naming GET and HEAD', async () => {
    const head = await fetch(`${server.origin}/reset-password?token=abc`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(await head.text()).toBe('');
    const post = await fetch(`${server.origin}/reset-password?token=abc`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    await post.text();
  });

  it('does not consume a real reset token, however often the link is opened', async () => {
    const account = await registerAccount(server);
    const forgot = await server.graphql(FORGOT_PASSWORD, { input: { identifier: account.user.email } });
    expect(forgot.data?.forgotPassword).toBe(true);
    const mail = await smtp.waitFor((candidate) => candidate.to === account.user.email && candidate.subject === 'Reset your password');
    const token = resetTokenOf(mail);

    const link = `${server.origin}/reset-password?token=${encodeURIComponent(token)}`;
    for (let i = 0; i < 3; i++) {
      const response = await fetch(link);
      expect(response.status).toBe(200);
      expect(await response.text()).not.toContain(token);
    }
    await (await fetch(link, { method: 'HEAD' })).text();

    const newPassword = 'a brand new passphrase after the page';
    const reset = await server.graphql(RESET_PASSWORD, { input: { token, newPassword } });
    expect(reset.errors).toBeUndefined();
    expect(reset.data?.resetPassword).toBe(true);
    const login = await server.graphql(LOGIN, { input: { identifier: account.user.username, password: newPassword } });
    expect(login.errors).toBeUndefined();
    // Spent now: the same link is refused by the API.
    const again = await server.graphql(RESET_PASSWORD, { input: { token, newPassword: 'yet another long passphrase' } });
    expect(again.errors?.[0]?.message).toBe(INVALID_RESET_TOKEN);
    expect(errorField(again)).toBe('token');
  });
});

describe('resetPasswordPage()', () => {
  it('puts the given nonce in the CSP, the script and the style, and sends the mutation the API expects', () => {
    const page = resetPasswordPage({ nonce: 'dGVzdC1ub25jZS0xMjM0NQ==' });
    expect(page.headers['content-security-policy']).toBe(
      "default-src 'none'; script-src 'nonce-dGVzdC1ub25jZS0xMjM0NQ=='; style-src 'nonce-dGVzdC1ub25jZS0xMjM0NQ=='; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
    );
    expect(noncesOf(page.html, 'script')).toEqual(['dGVzdC1ub25jZS0xMjM0NQ==']);
    expect(noncesOf(page.html, 'style')).toEqual(['dGVzdC1ub25jZS0xMjM0NQ==']);
    expect(page.html).toContain(JSON.stringify(RESET_PASSWORD));
    expect(page.html).toContain("fetch('/graphql'");
  });

  it('refuses a nonce that could break out of the attribute', () => {
    expect(() => resetPasswordPage({ nonce: '"><script>' })).toThrow(/nonce/);
  });
});

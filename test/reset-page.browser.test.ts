import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INVALID_RESET_TOKEN } from '../src/modules/recovery/recovery.service.js';
import { FORGOT_PASSWORD, LOGIN, registerAccount } from './support/accounts.js';
import { chromiumAvailable, launchChromium, openRecordedPage } from './support/chromium.js';
import { startTestServer, type TestServer } from './support/server.js';
import { resetTokenOf, startSmtpServer, type TestSmtpServer } from './support/smtp.js';

const hasChromium = chromiumAvailable('test/reset-page.browser.test.ts', 'the hosted reset page end to end');

describe.skipIf(!hasChromium)('hosted reset page in headless Chromium', () => {
  let server: TestServer;
  let smtp: TestSmtpServer;
  let browser: Browser;
  let screenshots: string;

  beforeAll(async () => {
    screenshots = await mkdtemp(join(tmpdir(), 'reset-page-screenshots-'));
    smtp = await startSmtpServer();
    server = await startTestServer({ SMTP_URL: smtp.url });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    await smtp?.stop();
    if (screenshots) await rm(screenshots, { recursive: true, force: true });
  });

  const openPage = (url: string) => openRecordedPage(browser, url);

  const fields = (page: Page) => ({
    first: page.getByLabel('New password', { exact: true }),
    second: page.getByLabel('Repeat the new password', { exact: true }),
    submit: page.getByRole('button', { name: 'Change password' }),
    status: page.getByRole('status'),
  });

  async function statusSays(page: Page, text: string): Promise<void> {
    await expect.poll(() => fields(page).status.textContent(), { timeout: 10_000 }).toContain(text);
  }

  it('takes a new password through the emailed link, once', async () => {
    const account = await registerAccount(server);
    const forgot = await server.graphql(FORGOT_PASSWORD, { input: { identifier: account.user.email } });
    expect(forgot.data?.forgotPassword).toBe(true);
    const token = resetTokenOf(await smtp.waitFor((mail) => mail.to === account.user.email && mail.subject === 'Reset your password'));
    const link = `${server.origin}/reset-password?token=${encodeURIComponent(token)}`;

    const { page, context, graphqlCalls, problems } = await openPage(link);
    const { first, second, submit, status } = fields(page);
    await expect.poll(() => first.isVisible()).toBe(true);
    // The token is read, then taken out of the address bar.
    expect(page.url()).toBe(`${server.origin}/reset-password`);
    expect(await page.locator('html').getAttribute('lang')).toBe('en');

    const screenshot = join(screenshots, 'reset-page.png');
    await page.screenshot({ path: screenshot, fullPage: true });
    expect((await stat(screenshot)).size).toBeGreaterThan(1000);

    // Mismatched passwords: refused in the page, nothing sent.
    await first.fill('a long passphrase one');
    await second.fill('a long passphrase two');
    await submit.click();
    await statusSays(page, 'The passwords do not match.');
    expect(await second.getAttribute('aria-invalid')).toBe('true');
    expect(graphqlCalls).toHaveLength(0);

    // Too short (11 characters): the server's policy message is shown; the link stays usable.
    await first.fill('short pass1');
    await second.fill('short pass1');
    await second.press('Enter');
    await statusSays(page, 'Password must be at least 12 characters.');
    expect(graphqlCalls).toHaveLength(1);
    expect(JSON.parse(graphqlCalls[0])).toEqual({
      query: 'mutation Reset($input: ResetPasswordInput!) { resetPassword(input: $input) }',
      variables: { input: { token, newPassword: 'short pass1' } },
    });
    expect(await first.getAttribute('aria-invalid')).toBe('true');

    // A good password, twice: success.
    const newPassword = 'a fresh passphrase from the browser';
    await first.fill(newPassword);
    await second.fill(newPassword);
    await submit.click();
    await statusSays(page, 'Your password has been changed.');
    expect(await status.getAttribute('class')).toBe('ok');
    expect(await first.isVisible()).toBe(false);
    expect(graphqlCalls).toHaveLength(2);
    expect(problems).toEqual([]);
    await context.close();

    const login = await server.graphql(LOGIN, { input: { identifier: account.user.username, password: newPassword } });
    expect(login.errors).toBeUndefined();
    expect(login.data?.login.user.id).toBe(account.user.id);

    // The same link again: the page opens, and submitting says the link is spent.
    const again = await openPage(link);
    const retry = fields(again.page);
    await retry.first.fill('another fresh passphrase here');
    await retry.second.fill('another fresh passphrase here');
    await retry.submit.click();
    await statusSays(again.page, INVALID_RESET_TOKEN);
    expect(await retry.first.isVisible()).toBe(false);
    expect(again.problems).toEqual([]);
    await again.context.close();
  });

  it('says so when the link has no token, and sends nothing', async () => {
    const { page, context, graphqlCalls, problems } = await openPage(`${server.origin}/reset-password`);
    await statusSays(page, 'This link has no reset token.');
    expect(await fields(page).first.isVisible()).toBe(false);
    expect(graphqlCalls).toHaveLength(0);
    expect(problems).toEqual([]);
    await context.close();
  });
});

import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INVALID_LOCKDOWN_TOKEN } from '../src/modules/lockdown/lockdown.service.js';
import { CHANGE_PASSWORD, LOGIN, ME, registerAccount } from './support/accounts.js';
import { chromiumAvailable, launchChromium, openRecordedPage } from './support/chromium.js';
import { lockdownTokenOf } from './support/mfa.js';
import { startTestServer, type TestServer } from './support/server.js';
import { resetTokenOf, startSmtpServer, type TestSmtpServer } from './support/smtp.js';

const hasChromium = chromiumAvailable('test/lockdown-page.browser.test.ts', 'the hosted "this wasn\'t me" page end to end');

describe.skipIf(!hasChromium)('hosted lockdown page in headless Chromium', () => {
  let server: TestServer;
  let smtp: TestSmtpServer;
  let browser: Browser;

  beforeAll(async () => {
    smtp = await startSmtpServer();
    server = await startTestServer({ SMTP_URL: smtp.url });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    await smtp?.stop();
  });

  const controls = (page: Page) => ({
    submit: page.getByRole('button', { name: 'Lock my account' }),
    status: page.getByRole('status'),
  });

  async function statusSays(page: Page, text: string): Promise<void> {
    await expect.poll(() => controls(page).status.textContent(), { timeout: 10_000 }).toContain(text);
  }

  it('locks the account from the link in a notice, once, and only when the button is pressed', async () => {
    const account = await registerAccount(server);
    const newPassword = 'another long passphrase 1';
    await server.graphql(CHANGE_PASSWORD, { input: { currentPassword: account.password, newPassword } }, { token: account.accessToken });
    const notice = await smtp.waitFor((mail) => mail.to === account.user.email && mail.subject === 'Your password was changed');
    const token = lockdownTokenOf(notice);
    // The link exactly as the email has it, rebased on this server (APP_URL is a name tests cannot reach).
    const link = new URL(notice.text.match(/https?:\/\/\S+\/lockdown\?token=\S+/)![0]);
    const { page, context, graphqlCalls, problems } = await openRecordedPage(browser, `${server.origin}${link.pathname}${link.search}`);
    const { submit, status } = controls(page);
    await expect.poll(() => submit.isVisible()).toBe(true);
    // The token is read, then taken out of the address bar; opening the page spent nothing.
    expect(page.url()).toBe(`${server.origin}/lockdown`);
    expect(graphqlCalls).toHaveLength(0);
    expect((await server.graphql(ME, {}, { token: account.accessToken })).errors).toBeUndefined();

    await submit.click();
    await statusSays(page, 'Your account is locked.');
    expect(await status.getAttribute('class')).toBe('ok');
    expect(await submit.isVisible()).toBe(false);
    expect(graphqlCalls.map((call) => JSON.parse(call))).toEqual([{ query: 'mutation Lock($token: String!) { lockAccount(token: $token) }', variables: { token } }]);
    expect(problems).toEqual([]);
    await context.close();

    // Locked: the session is gone, sign-in waits for a reset, and the reset link was mailed.
    expect((await server.graphql(ME, {}, { token: account.accessToken })).errors?.[0].extensions?.reason).toBe('SESSION_ENDED');
    expect((await server.graphql(LOGIN, { input: { identifier: account.user.email, password: newPassword } })).errors?.[0].extensions?.code).toBe('RATE_LIMITED');
    resetTokenOf(await smtp.waitFor((mail) => mail.to === account.user.email && mail.subject === 'Your account is locked: choose a new password'));

    // The same link again: the page says it is spent.
    const again = await openRecordedPage(browser, `${server.origin}/lockdown?token=${token}`);
    await controls(again.page).submit.click();
    await statusSays(again.page, INVALID_LOCKDOWN_TOKEN);
    expect(await controls(again.page).submit.isVisible()).toBe(false);
    expect(again.problems).toEqual([]);
    await again.context.close();
  });

  it('says so when the link has no token, and sends nothing', async () => {
    const { page, context, graphqlCalls, problems } = await openRecordedPage(browser, `${server.origin}/lockdown`);
    await statusSays(page, 'This link has no token.');
    expect(await controls(page).submit.isVisible()).toBe(false);
    expect(graphqlCalls).toHaveLength(0);
    expect(problems).toEqual([]);
    await context.close();
  });
});

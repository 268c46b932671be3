import { existsSync } from 'node:fs';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';

/** Debian's chromium package; `.ci/run` installs it when it is missing. */
export const CHROMIUM = '/usr/bin/chromium';

/** Whether the browser tests can run here; warns once for `file` (what it skips) when they cannot. */
export function chromiumAvailable(file: string, skipped: string): boolean {
  if (existsSync(CHROMIUM)) return true;
  console.warn(`${file}: ${skipped} SKIPPED — no Chromium at ${CHROMIUM}. Install it with \`apt-get install -y chromium\`.`);
  return false;
}

/**
 * Headless Debian Chromium through playwright-core (no downloaded browser). Background networking
 * is off: this machine's closed network would otherwise refuse its connections at every start.
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** A page in a context of its own, with what it did: the GraphQL calls it made, and every CSP violation or script error. */
export interface RecordedPage {
  page: Page;
  context: BrowserContext;
  /** The bodies of the page's POSTs to /graphql, in order. */
  graphqlCalls: string[];
  problems: string[];
}

/** Opens `url` in a fresh context that records what the page does (see {@link RecordedPage}). */
export async function openRecordedPage(browser: Browser, url: string): Promise<RecordedPage> {
  const context = await browser.newContext();
  const page = await context.newPage();
  const graphqlCalls: string[] = [];
  const problems: string[] = [];
  page.on('request', (request) => {
    if (new URL(request.url()).pathname === '/graphql') graphqlCalls.push(request.postData() ?? '');
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (/content security policy/i.test(message.text())) problems.push(`CSP: ${message.text()}`);
  });
  await page.goto(url);
  return { page, context, graphqlCalls, problems };
}

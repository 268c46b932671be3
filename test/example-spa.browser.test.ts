import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect, createServer as createTcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { promisify } from 'node:util';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../src/config/paths.js';
import { newAccountInput } from './support/accounts.js';
import { chromiumAvailable, launchChromium } from './support/chromium.js';
import { startTestServer, type TestServer } from './support/server.js';
import { resetTokenOf, startSmtpServer, type TestSmtpServer, verificationCodeOf } from './support/smtp.js';

// The example SPA (examples/spa) built the way its README says — `npm ci` from its own lockfile,
// codegen from schema.graphql, a strict type-check, a Vite build — served from a second origin and
// driven in Debian's Chromium:
// two tabs of one browser and a second browser, against a real server with CORS_ORIGINS and the
// refresh-token cookie. The app reaches the server through a relay the tests can cut, as if the
// server were down. The build and type-check run without Chromium too.
const hasChromium = chromiumAvailable('test/example-spa.browser.test.ts', 'the browser part');
const EXAMPLE = join(PROJECT_ROOT, 'examples', 'spa');
const run = promisify(execFile);
const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css' };
/** How long `npm ci` in examples/spa may take (a cold npm cache downloads ~330 packages). */
const INSTALL_TIMEOUT_MS = 300_000;
const BUILD_TIMEOUT_MS = 180_000;

/** What `npm ci` printed when this run installed the example's dependencies; undefined when they were already installed. */
let installLog: string | undefined;

/** Runs `npm ...args` in examples/spa, bounded by `timeout`; a failure names the command and carries everything it printed. */
async function inExample(args: string[], timeout: number, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  try {
    const { stdout, stderr } = await run('npm', args, { cwd: EXAMPLE, env, timeout, maxBuffer: 32 * 1024 * 1024 });
    return `${stdout}${stderr}`;
  } catch (error) {
    const { stdout = '', stderr = '', killed } = error as { stdout?: string; stderr?: string; killed?: boolean };
    const why = killed ? `did not finish within ${timeout / 1000} s` : 'failed';
    throw new Error(`\`npm ${args.join(' ')}\` in examples/spa ${why}:\n${stdout}${stderr}`);
  }
}

/**
 * Installs the example's dependencies from its package-lock.json, as its README says (`npm ci`), when
 * examples/spa/node_modules is missing or older than the lockfile. `--include=dev`: the build needs
 * the dev dependencies even when NODE_ENV=production.
 */
async function installExample(): Promise<void> {
  const [lock, installed] = await Promise.all([
    stat(join(EXAMPLE, 'package-lock.json')),
    stat(join(EXAMPLE, 'node_modules', '.package-lock.json')).catch(() => undefined),
  ]);
  if (installed && installed.mtimeMs >= lock.mtimeMs) return;
  installLog = await inExample(['ci', '--no-audit', '--no-fund', '--include=dev'], INSTALL_TIMEOUT_MS);
}

let api: TestServer;
let smtp: TestSmtpServer;
let relay: Relay;
let site: Server;
let spaOrigin: string;
/** The same app served from a second origin of the same site: a second app sharing the browser's cookie jar, with its own lock and channel. */
let otherSite: Server;
let otherSpaOrigin: string;
let outDir: string;

/** Serves the built app, with index.html for every path that is not a file (as an SPA host does). */
function serveStatic(root: string): Promise<Server> {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    const file = join(root, path);
    readFile(file)
      .catch(() => readFile(join(root, 'index.html')))
      .then((body) => {
        res.setHeader('content-type', TYPES[extname(file)] ?? TYPES['.html']);
        res.end(body);
      });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** A `refreshToken` request the relay passed to the API, as it went over the wire. */
interface RelayedRefresh {
  /** The page's origin (its `Origin` header). */
  origin: string | undefined;
  /** The refresh token the request's cookie presented. */
  presented: string | undefined;
  /** The refresh token the answer's Set-Cookie gave; `undefined` until the answer's headers have reached the relay, `null` when it set none. */
  issued?: string | null;
}

/** The answer to one refresh request, kept from the browser by the relay (the server has answered, the browser has not heard). */
interface HeldAnswer {
  /** The request, once it has been sent. */
  readonly refresh: RelayedRefresh | undefined;
  /** Whether the server's answer (its headers at least) has reached the relay. */
  readonly answered: boolean;
  /** Passes the answer on to the browser, and the rest of the connection's traffic from then on. */
  release(): void;
}

/** A TCP relay to the API: while down it cuts every connection, as a stopped server would. */
interface Relay {
  port: number;
  down(): void;
  up(): void;
  close(): Promise<void>;
  /** Every `refreshToken` request relayed, in order. */
  readonly refreshes: RelayedRefresh[];
  /** Holds back the answer to the next `refreshToken` request from the browser until it is released. */
  holdNextRefresh(): HeldAnswer;
}

/** The value of the cookie `name` in the raw head of an HTTP request (`cookie`) or response (`set-cookie`). */
function cookieIn(head: string, header: 'cookie' | 'set-cookie', name: string): string | undefined {
  for (const line of head.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon < 0 || line.slice(0, colon).trim().toLowerCase() !== header) continue;
    const value = line.slice(colon + 1);
    // A Cookie header lists name=value pairs; a Set-Cookie header sets one, followed by its attributes.
    for (const pair of header === 'cookie' ? value.split(';') : [value.split(';')[0]!]) {
      const equals = pair.indexOf('=');
      if (pair.slice(0, equals).trim() === name) return decodeURIComponent(pair.slice(equals + 1).trim());
    }
  }
  return undefined;
}

function startRelay(targetPort: number): Promise<Relay> {
  const sockets = new Set<Socket>();
  const refreshes: RelayedRefresh[] = [];
  let open = true;
  /** The hold the next refresh request takes: it keeps what the server answers on that connection. */
  let nextHold: ((refresh: RelayedRefresh, forward: (chunk: Buffer | null) => void) => (chunk: Buffer | null) => void) | undefined;
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  };
  const server = createTcpServer((client) => {
    if (!open) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(targetPort, '127.0.0.1');
    track(client);
    track(upstream);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    // What the browser sent since the last refresh request on this connection, and the head of the
    // answer to a refresh request while it is coming in.
    let sent = '';
    let answering: { refresh: RelayedRefresh; head: string } | undefined;
    let keep: ((chunk: Buffer | null) => void) | undefined;
    const forward = (chunk: Buffer | null) => {
      if (client.destroyed || client.writableEnded) return;
      if (chunk) client.write(chunk);
      else client.end();
    };
    client.on('data', (chunk: Buffer) => {
      sent = (sent + chunk.toString('latin1')).slice(-65_536);
      const at = sent.indexOf('AuthModuleRefresh');
      if (at < 0) return;
      const head = sent.slice(Math.max(0, sent.lastIndexOf('POST ', at)), at);
      sent = '';
      const refresh: RelayedRefresh = { origin: /^origin:\s*(\S+)/im.exec(head)?.[1], presented: cookieIn(head, 'cookie', '__Secure-refresh_token') };
      refreshes.push(refresh);
      answering = { refresh, head: '' };
      if (nextHold) {
        keep = nextHold(refresh, forward);
        nextHold = undefined;
      }
    });
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      if (answering) {
        answering.head += chunk.toString('latin1');
        const end = answering.head.indexOf('\r\n\r\n');
        if (end >= 0) {
          answering.refresh.issued = cookieIn(answering.head.slice(0, end), 'set-cookie', '__Secure-refresh_token') ?? null;
          answering = undefined;
        }
      }
      (keep ?? forward)(chunk);
    });
    upstream.on('end', () => (keep ?? forward)(null));
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as AddressInfo).port,
        down() {
          open = false;
          for (const socket of sockets) socket.destroy();
        },
        up() {
          open = true;
        },
        close() {
          for (const socket of sockets) socket.destroy();
          return new Promise((done) => server.close(() => done()));
        },
        refreshes,
        holdNextRefresh() {
          const kept: Array<Buffer | null> = [];
          let held: { refresh: RelayedRefresh; forward: (chunk: Buffer | null) => void } | undefined;
          let released = false;
          nextHold = (refresh, forward) => {
            held = { refresh, forward };
            return (chunk) => (released ? forward(chunk) : kept.push(chunk));
          };
          return {
            get refresh() {
              return held?.refresh;
            },
            get answered() {
              return held?.refresh.issued !== undefined;
            },
            release() {
              released = true;
              for (const chunk of kept.splice(0)) held?.forward(chunk);
            },
          };
        },
      }),
    ),
  );
}

beforeAll(async () => {
  // The app's origin must be known before the API starts (CORS_ORIGINS), and the API's URL before the build.
  outDir = await mkdtemp(join(tmpdir(), 'example-spa-'));
  site = await serveStatic(outDir);
  spaOrigin = `http://localhost:${(site.address() as AddressInfo).port}`;
  otherSite = await serveStatic(outDir);
  otherSpaOrigin = `http://localhost:${(otherSite.address() as AddressInfo).port}`;
  smtp = await startSmtpServer();
  // The shortest access-token lifetime, so one test can outlive a token (see the last test).
  api = await startTestServer({ SMTP_URL: smtp.url, CORS_ORIGINS: `${spaOrigin},${otherSpaOrigin}`, ACCESS_TOKEN_TTL: '60' });
  relay = await startRelay(Number(new URL(api.origin).port));
  // localhost, not 127.0.0.1: the app and the API are then two origins of one site, as app.example.com
  // and api.example.com are, so the SameSite=Strict cookie travels between them.
  const graphqlUrl = `http://localhost:${relay.port}/graphql`;
  await installExample();
  await inExample(['run', 'build', '--', '--outDir', outDir, '--emptyOutDir'], BUILD_TIMEOUT_MS, { ...process.env, VITE_GRAPHQL_URL: graphqlUrl });
}, 60_000 + INSTALL_TIMEOUT_MS + BUILD_TIMEOUT_MS);

afterAll(async () => {
  await new Promise((resolve) => site?.close(resolve));
  await new Promise((resolve) => otherSite?.close(resolve));
  await relay?.close();
  await api?.stop();
  await smtp?.stop();
  if (outDir) await rm(outDir, { recursive: true, force: true });
});

it('installs from the example\'s own lockfile with no unsupported-engine warnings on this Node', (ctx) => {
  // Only when this run installed them (a fresh checkout, or a lockfile newer than node_modules).
  if (installLog === undefined) ctx.skip();
  expect(installLog).not.toMatch(/EBADENGINE|Unsupported engine/);
});

it('builds from schema.graphql with codegen, a strict type-check and Vite', async () => {
  const html = await readFile(join(outDir, 'index.html'), 'utf8');
  expect(html).toMatch(/<script type="module" crossorigin src="\/assets\/index-[\w-]+\.js"><\/script>/);
  const generated = await readFile(join(EXAMPLE, 'src', 'gql', 'graphql.ts'), 'utf8');
  expect(generated).toContain('export type LoginMutation');
});

describe.skipIf(!hasChromium)('the example SPA in Chromium: two tabs, a second browser, a reset', () => {
  let browser: Browser;
  const problems: string[] = [];
  /** Every refresh token the pages' script could see in a response body. */
  const exposedRefreshTokens: string[] = [];
  /** Per page: each GraphQL call's operation name and the `extensions.reason` it was refused with, if any. */
  const calls = new Map<Page, Array<{ operation: string; reason?: string }>>();

  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(() => browser?.close());

  async function openTab(context: BrowserContext, url = spaOrigin): Promise<Page> {
    const page = await context.newPage();
    calls.set(page, []);
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('response', async (response) => {
      if (!response.url().endsWith('/graphql') || response.request().method() !== 'POST') return;
      const body = await response.json().catch(() => null);
      const sent = JSON.parse(response.request().postData() ?? '{}') as { operationName?: string; query?: string };
      const operation = sent.operationName ?? sent.query?.match(/(?:query|mutation)\s+(\w+)/)?.[1] ?? '?';
      calls.get(page)!.push({ operation, reason: body?.errors?.[0]?.extensions?.reason });
      for (const payload of Object.values((body?.data ?? {}) as Record<string, { refreshToken?: string } | null>)) {
        if (payload?.refreshToken) exposedRefreshTokens.push(payload.refreshToken);
      }
    });
    await page.goto(url);
    return page;
  }

  const UNREACHABLE = 'Signed out: the server cannot be reached right now.';
  const SIGN_OUT_PENDING = 'Signed out on this device. The server has not confirmed it yet: it is told as soon as it can be reached.';
  const statusOf = (page: Page) => page.getByRole('status');
  async function expectStatus(page: Page, text: string): Promise<void> {
    await expect.poll(() => statusOf(page).textContent(), { timeout: 10_000 }).toBe(text);
  }
  async function expectMessage(page: Page, text: string): Promise<void> {
    await expect.poll(() => page.locator('#message').textContent(), { timeout: 10_000 }).toBe(text);
  }
  async function signIn(page: Page, identifier: string, password: string): Promise<void> {
    await page.getByLabel('Email or username', { exact: true }).fill(identifier);
    await page.getByLabel('Your password', { exact: true }).fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expectStatus(page, 'Signed in.');
  }
  async function register(page: Page, input: Record<string, unknown>): Promise<void> {
    await page.getByLabel('Email', { exact: true }).fill(input.email as string);
    await page.getByLabel('Username', { exact: true }).fill(input.username as string);
    await page.getByLabel('Password', { exact: true }).fill(input.password as string);
    await page.getByRole('button', { name: 'Create account' }).click();
  }
  /** The account's device sessions the server still honours, signed in from Chromium. */
  async function liveBrowserSessions(email: string): Promise<number> {
    const [row] = await api.sql<{ count: string | number }>(
      "select count(*) as count from sessions where revoked_at is null and user_agent like '%Chrome%' and user_id = (select id from users where email = ?)",
      [email],
    );
    return Number(row?.count);
  }
  /** Loads `me` and `sessions` again and returns the devices the page lists. */
  async function devices(page: Page): Promise<string[]> {
    await page.getByRole('button', { name: 'Reload profile' }).click();
    await expect.poll(() => page.locator('#sessions li').count(), { timeout: 10_000 }).toBeGreaterThan(0);
    return (await page.locator('#sessions li').allTextContents()).map((text) => text.split(' — ')[0]);
  }

  it('register, verify, sign in, refresh in two tabs at once, reload, revoke another device, reset through the hosted page', async () => {
    const input = newAccountInput();
    const [email, username, password] = [input.email as string, input.username as string, input.password as string];
    const laptop = await browser.newContext();
    const tabA = await openTab(laptop);
    await expectStatus(tabA, 'Signed out.');

    // Register: signed in at once; the emailed code verifies the address.
    await tabA.getByLabel('Email', { exact: true }).fill(email);
    await tabA.getByLabel('Username', { exact: true }).fill(username);
    await tabA.getByLabel('Password', { exact: true }).fill(password);
    await tabA.getByRole('button', { name: 'Create account' }).click();
    await expectStatus(tabA, 'Signed in.');
    const code = verificationCodeOf(await smtp.waitFor((mail) => mail.to === email && /verification code/i.test(mail.subject)));
    await tabA.getByLabel('Verification code').fill(code);
    await tabA.getByRole('button', { name: 'Verify email' }).click();
    await expect.poll(() => tabA.locator('#profile').textContent(), { timeout: 10_000 }).toContain('email verified');

    // Sign out and in again; the second tab of the same browser is signed in from the cookie.
    await tabA.getByRole('button', { name: 'Sign out', exact: true }).click();
    await expectStatus(tabA, 'Signed out.');
    await signIn(tabA, username, password);
    const tabB = await openTab(laptop);
    await expectStatus(tabB, 'Signed in.');

    // Both tabs refresh at once: both stay signed in, and every call works afterwards.
    await Promise.all([tabA, tabB].map((tab) => tab.getByRole('button', { name: 'Refresh tokens' }).click()));
    await Promise.all([tabA, tabB].map((tab) => expectMessage(tab, 'Tokens refreshed.')));
    expect(await devices(tabA)).toEqual(['This device']);
    expect(await devices(tabB)).toEqual(['This device']);

    // A reload signs in again from the cookie; the other tab's calls keep working.
    await tabA.reload();
    await expectStatus(tabA, 'Signed in.');
    expect(await devices(tabB)).toEqual(['This device']);
    await expectStatus(tabB, 'Signed in.');

    // A second browser signs in; the laptop's tab signs it out; it learns so on its next call.
    const phone = await browser.newContext();
    const tabC = await openTab(phone);
    await expectStatus(tabC, 'Signed out.');
    await signIn(tabC, email, password);
    expect(await devices(tabA)).toEqual(['Other device', 'This device']);
    await tabA.getByRole('button', { name: 'Sign out that device' }).click();
    await expect.poll(() => tabA.locator('#sessions li').allTextContents(), { timeout: 10_000 }).toHaveLength(1);
    await tabC.getByRole('button', { name: 'Reload profile' }).click();
    await expectStatus(tabC, 'Signed out: this session has ended. Sign in again.');

    // A reset from the signed-out browser, through the emailed link and the hosted page, ends the
    // laptop's session in both tabs; signing in again in one tab signs in both.
    await tabC.getByLabel('Account email or username').fill(email);
    await tabC.getByRole('button', { name: 'Email me a reset link' }).click();
    await expectMessage(tabC, 'If the account exists, a reset link is on its way.');
    const token = resetTokenOf(await smtp.waitFor((mail) => mail.to === email && mail.subject === 'Reset your password'));
    const resetPage = await openTab(phone, `${api.origin}/reset-password?token=${encodeURIComponent(token)}`);
    const newPassword = `${password} renewed`;
    await resetPage.getByLabel('New password', { exact: true }).fill(newPassword);
    await resetPage.getByLabel('Repeat the new password', { exact: true }).fill(newPassword);
    await resetPage.getByRole('button', { name: 'Change password' }).click();
    await expect.poll(() => statusOf(resetPage).textContent(), { timeout: 10_000 }).toContain('Your password has been changed.');

    await tabA.getByRole('button', { name: 'Reload profile' }).click();
    await expectStatus(tabA, 'Signed out: this session has ended. Sign in again.');
    await expectStatus(tabB, 'Signed out: this session has ended. Sign in again.');
    await signIn(tabB, email, newPassword);
    await expectStatus(tabA, 'Signed in.');
    expect(await devices(tabA)).toEqual(['This device']);

    // The refresh token never reached script: no response body held one, and no cookie script can read.
    expect(exposedRefreshTokens).toEqual([]);
    expect(await tabA.evaluate('document.cookie')).not.toContain('refresh_token');
    // Chromium accepted the __Secure- cookie from http://localhost (a secure context), keeps it host-only,
    // and sends it to the GraphQL endpoint only: not to any other path of the host.
    const apiOrigin = api.origin.replace('127.0.0.1', 'localhost');
    const cookies = await laptop.cookies(`${apiOrigin}/graphql`);
    expect(cookies.find((cookie) => cookie.name === '__Secure-refresh_token')).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict', path: '/graphql', domain: 'localhost' });
    expect((await laptop.cookies(`${apiOrigin}/`)).map((cookie) => cookie.name)).not.toContain('__Secure-refresh_token');
    // Its binding (the token's hash, as a __Host- cookie no sibling subdomain can set) was accepted too.
    expect(cookies.find((cookie) => cookie.name === '__Host-refresh_binding')).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict', path: '/', domain: 'localhost' });
    expect((await laptop.cookies()).map((cookie) => cookie.name)).not.toContain('__Host-refresh_token');
    expect(problems).toEqual([]);
    await laptop.close();
    await phone.close();
  });
  it('one refresh token presented twice — by a second app of the site, then by a reload, while its first refresh is unanswered — leaves every tab signed in on one device session', async () => {
    // The module lets one refresh run at a time in a browser (Web Locks) and shares its result, so
    // two tabs of one app never present one refresh token twice. Two apps of one site (two origins:
    // two locks, one cookie jar) and a reload during a refresh do. The relay holds back the answer
    // to tab A's refresh: the server has rotated the cookie's token, the browser still holds it.
    const input = newAccountInput();
    const [email, password] = [input.email as string, input.password as string];
    await api.graphql('mutation R($input: RegisterInput!) { register(input: $input) { accessToken } }', { input });
    const laptop = await browser.newContext();
    // Every sign-out the module announces to the tabs of an app (its BroadcastChannel also reaches a second channel of the same page).
    const signOuts: string[] = [];
    await laptop.addInitScript(
      "if (location.protocol === 'http:') new BroadcastChannel('user-server-auth').onmessage = (event) => { if (event.data && event.data.type === 'signed-out') console.warn('auth test: signed out, ' + event.data.reason); };",
    );
    const watch = (page: Page) => page.on('console', (message) => message.text().startsWith('auth test: ') && signOuts.push(`${page.url()} ${message.text()}`));
    laptop.on('page', watch);
    const refreshCookie = async () => (await laptop.cookies(`http://localhost:${relay.port}/graphql`)).find((cookie) => cookie.name === '__Secure-refresh_token')?.value;
    const rowOf = async (token: string) =>
      (await api.sql<{ family: string; revoked_reason: string | null }>('select family, revoked_reason from sessions where refresh_token_hash = ?', [createHash('sha256').update(token).digest('hex')]))[0];
    const presentations = (token: string) => relay.refreshes.filter((refresh) => refresh.presented === token);
    async function expectWorking(page: Page): Promise<void> {
      expect((await devices(page)).sort()).toEqual(['Other device', 'This device']);
      await expect.poll(() => page.locator('#profile').textContent(), { timeout: 10_000 }).toContain(email);
      await expectStatus(page, 'Signed in.');
    }

    const tabA = await openTab(laptop);
    await expectStatus(tabA, 'Signed out.');
    await signIn(tabA, email, password);
    const tabB = await openTab(laptop);
    await expectStatus(tabB, 'Signed in.');
    // An access token tab A holds before the refreshes.
    const profileCall = tabA.waitForRequest((request) => request.method() === 'POST' && (request.postData() ?? '').includes('"operationName":"Me"'));
    await expectWorking(tabA);
    const earlierAccessToken = (await (await profileCall).headerValue('authorization'))?.replace(/^Bearer /, '');
    expect(earlierAccessToken).toBeTruthy();
    const signedIn = await refreshCookie();
    expect(signedIn).toBeTruthy();
    const { family } = (await rowOf(signedIn!))!;

    /**
     * Tab A refreshes with the cookie holding `presented`, and the answer is held back: the server
     * has rotated the token (its row says so), the cookie jar still holds it.
     */
    const refreshHeld = async (presented: string) => {
      const hold = relay.holdNextRefresh();
      await tabA.getByRole('button', { name: 'Refresh tokens' }).click();
      await expect.poll(() => hold.answered, { timeout: 10_000 }).toBe(true);
      expect(hold.refresh).toMatchObject({ origin: spaOrigin, presented });
      const issued = hold.refresh!.issued!;
      expect(issued).toBeTruthy();
      expect(issued).not.toBe(presented);
      expect(await rowOf(presented)).toEqual({ family, revoked_reason: 'ROTATED' });
      expect(await refreshCookie()).toBe(presented);
      return { hold, issued };
    };

    // 1. Tab A refreshes; its answer is held back. The server has rotated the token, the cookie jar still holds it.
    const { hold: firstHold, issued: rotated } = await refreshHeld(signedIn!);
    // Meanwhile the second app starts in this browser and restores its session from the same, rotated cookie.
    const otherApp = await openTab(laptop, otherSpaOrigin);
    await expectStatus(otherApp, 'Signed in.');
    expect(await tabA.locator('#message').textContent()).toBe('');
    // The server saw one token twice and gave both the same successor: the device session stays one chain.
    expect(presentations(signedIn!)).toEqual([
      { origin: spaOrigin, presented: signedIn, issued: rotated },
      { origin: otherSpaOrigin, presented: signedIn, issued: rotated },
    ]);
    firstHold.release();
    await expectMessage(tabA, 'Tokens refreshed.');
    expect(await refreshCookie()).toBe(rotated);
    for (const page of [tabA, tabB, otherApp]) await expectWorking(page);

    // 2. Tab A refreshes again and reloads while the answer is held back: the reloaded tab presents the rotated token again.
    const { hold: secondHold, issued: rotatedAgain } = await refreshHeld(rotated);
    await tabA.reload();
    await expectStatus(tabA, 'Signed in.');
    secondHold.release();
    expect(presentations(rotated)).toEqual([
      { origin: spaOrigin, presented: rotated, issued: rotatedAgain },
      { origin: spaOrigin, presented: rotated, issued: rotatedAgain },
    ]);
    expect(await refreshCookie()).toBe(rotatedAgain);
    for (const page of [tabA, tabB, otherApp]) await expectWorking(page);

    // Nobody was signed out, the device session lives on in one row, and the access token from before
    // the refreshes still works (until it expires).
    expect(signOuts).toEqual([]);
    expect([tabA, tabB, otherApp].flatMap((page) => calls.get(page)!).filter((call) => call.reason !== undefined)).toEqual([]);
    const rows = await api.sql<{ family: string; revoked_reason: string | null; refresh_token_hash: string }>(
      'select family, revoked_reason, refresh_token_hash from sessions where revoked_at is null and expires_at > now() and user_id = (select id from users where email = ?) and family = ?',
      [email, family],
    );
    expect(rows).toEqual([{ family, revoked_reason: null, refresh_token_hash: createHash('sha256').update((await refreshCookie())!).digest('hex') }]);
    const [reused] = await api.sql<{ count: string | number }>("select count(*) as count from sessions where revoked_reason = 'REUSE_DETECTED' and family = ?", [family]);
    expect(Number(reused?.count)).toBe(0);
    const me = await api.graphql<{ me: { email: string } }>('{ me { email } }', {}, { token: earlierAccessToken });
    expect(me.errors).toBeUndefined();
    expect(me.data?.me.email).toBe(email);
    expect(problems).toEqual([]);
    await laptop.close();
  }, 90_000);

  it('signing out in one tab while another refreshes leaves every tab, and a reload, signed out (5 trials)', async () => {
    const input = newAccountInput();
    await api.graphql('mutation R($input: RegisterInput!) { register(input: $input) { accessToken } }', { input });
    const context = await browser.newContext();
    const [tabA, tabB] = [await openTab(context), await openTab(context)];
    for (let trial = 0; trial < 5; trial += 1) {
      await signIn(tabA, input.email as string, input.password as string);
      await expectStatus(tabB, 'Signed in.');
      await Promise.all([tabB.getByRole('button', { name: 'Refresh tokens' }).click(), tabA.getByRole('button', { name: 'Sign out', exact: true }).click()]);
      await expectStatus(tabA, 'Signed out.');
      await expectStatus(tabB, 'Signed out.');
      // Whatever order the two reached the server in, the cookie left behind opens nothing.
      await tabB.reload();
      await expectStatus(tabB, 'Signed out.');
    }
    expect(problems).toEqual([]);
    await context.close();
  }, 90_000);

  it('a tab whose clock stands still sends an expired access token: it is refreshed and the call retried once', async () => {
    // The page's clock is frozen, so the module cannot see the token expire and sends it anyway;
    // the server's TOKEN_EXPIRED is what saves the call (as with a client whose clock is wrong).
    const input = newAccountInput();
    const context = await browser.newContext();
    await context.clock.setFixedTime(Date.now());
    const tab = await openTab(context);
    await expectStatus(tab, 'Signed out.');
    await api.graphql('mutation R($input: RegisterInput!) { register(input: $input) { accessToken } }', { input });
    await signIn(tab, input.email as string, input.password as string);
    await new Promise((resolve) => setTimeout(resolve, 61_000));
    calls.get(tab)!.length = 0;
    // (The other device is the registration through the API.)
    expect((await devices(tab)).sort()).toEqual(['Other device', 'This device']);
    const seen = calls.get(tab)!;
    // Me and Sessions both came back TOKEN_EXPIRED, one refresh served both, and both were retried.
    expect(seen.filter((call) => call.reason === 'TOKEN_EXPIRED').map((call) => call.operation).sort()).toEqual(['Me', 'Sessions']);
    expect(seen.filter((call) => call.operation === 'AuthModuleRefresh')).toHaveLength(1);
    expect(seen.filter((call) => call.reason === undefined && call.operation !== 'AuthModuleRefresh').map((call) => call.operation).sort()).toEqual(['Me', 'Sessions']);
    await expectStatus(tab, 'Signed in.');
    expect(problems).toEqual([]);
    await context.close();
  }, 120_000);

  it('opened while the server is down: once it is back, creating an account and signing in go through at once', async () => {
    const input = newAccountInput();
    const [laptop, phone] = [await browser.newContext(), await browser.newContext()];
    relay.down();
    try {
      const tabA = await openTab(laptop);
      const tabC = await openTab(phone);
      await expectStatus(tabA, UNREACHABLE);
      await expectStatus(tabC, UNREACHABLE);
      relay.up();

      // Sign-up while the module still counts the server unreachable: sent, and signed in.
      await register(tabA, input);
      await expectStatus(tabA, 'Signed in.');
      expect(calls.get(tabA)!.map((call) => call.operation)).not.toContain('AuthModuleRefresh');
      // Nothing holds the cross-tab lock any more: a new tab signs in from the cookie.
      const tabB = await openTab(laptop);
      await expectStatus(tabB, 'Signed in.');

      // The same for a sign-in, in the other browser.
      await signIn(tabC, input.email as string, input.password as string);
      expect((await devices(tabC)).sort()).toEqual(['Other device', 'This device']);
    } finally {
      relay.up();
    }
    expect(problems).toEqual([]);
    await laptop.close();
    await phone.close();
  });

  it('opened while the server is down: the first answer that there is no session ends the retries of the refresh', async () => {
    const context = await browser.newContext();
    relay.down();
    try {
      const tab = await openTab(context);
      await expectStatus(tab, UNREACHABLE);
      relay.up();
      const forgot = async () => {
        await tab.getByLabel('Account email or username').fill(`nobody-${Date.now()}@example.test`);
        await tab.getByRole('button', { name: 'Email me a reset link' }).click();
        await expect.poll(() => calls.get(tab)!.map((call) => call.operation), { timeout: 10_000 }).toContain('ForgotPassword');
        await expectMessage(tab, 'If the account exists, a reset link is on its way.');
      };
      // The first operation tries the refresh first; the server answers there is nothing to restore.
      calls.get(tab)!.length = 0;
      await forgot();
      expect(calls.get(tab)!.map((call) => call.operation)).toEqual(['AuthModuleRefresh', 'ForgotPassword']);
      await expectStatus(tab, 'Signed out.');
      // From then on operations go out on their own.
      calls.get(tab)!.length = 0;
      await forgot();
      calls.get(tab)!.length = 0;
      await forgot();
      expect(calls.get(tab)!.map((call) => call.operation)).toEqual(['ForgotPassword']);
      await expectStatus(tab, 'Signed out.');
    } finally {
      relay.up();
    }
    expect(problems).toEqual([]);
    await context.close();
  });

  it('signing out while offline: every tab signed out at once, the server told once back online, and a reload stays signed out', async () => {
    const input = newAccountInput();
    await api.graphql('mutation R($input: RegisterInput!) { register(input: $input) { accessToken } }', { input });
    const context = await browser.newContext();
    const [tabA, tabB] = [await openTab(context), await openTab(context)];
    await signIn(tabA, input.email as string, input.password as string);
    await expectStatus(tabB, 'Signed in.');
    expect(await liveBrowserSessions(input.email as string)).toBe(1);

    await context.setOffline(true);
    await tabA.getByRole('button', { name: 'Sign out', exact: true }).click();
    await expectStatus(tabA, SIGN_OUT_PENDING);
    await expectStatus(tabB, SIGN_OUT_PENDING);
    expect(await liveBrowserSessions(input.email as string)).toBe(1);

    // Back online: the logout is sent without anyone asking again.
    await context.setOffline(false);
    await expectStatus(tabA, 'Signed out.');
    await expectStatus(tabB, 'Signed out.');
    expect(await liveBrowserSessions(input.email as string)).toBe(0);
    for (const tab of [tabA, tabB]) {
      await tab.reload();
      await expectStatus(tab, 'Signed out.');
    }
    expect(problems).toEqual([]);
    await context.close();
  });

  it('signing out while the server is down: reloads do not sign back in, and the first start once it is back ends the session', async () => {
    const input = newAccountInput();
    await api.graphql('mutation R($input: RegisterInput!) { register(input: $input) { accessToken } }', { input });
    const context = await browser.newContext();
    const tab = await openTab(context);
    await signIn(tab, input.email as string, input.password as string);
    relay.down();
    try {
      await tab.getByRole('button', { name: 'Sign out', exact: true }).click();
      await expectStatus(tab, SIGN_OUT_PENDING);
      // A reload while it is still down: signed out, the sign-out still pending (not "unreachable").
      await tab.reload();
      await expectStatus(tab, SIGN_OUT_PENDING);
      await tab.getByRole('button', { name: 'Finish signing out' }).click();
      await expectMessage(tab, 'The server still cannot be reached.');
      expect(await liveBrowserSessions(input.email as string)).toBe(1);

      // Back up: the next start sends the logout instead of signing in with the cookie.
      relay.up();
      calls.get(tab)!.length = 0;
      await tab.reload();
      await expectStatus(tab, 'Signed out.');
      await expect.poll(() => liveBrowserSessions(input.email as string), { timeout: 10_000 }).toBe(0);
      expect(calls.get(tab)!.map((call) => call.operation)).toContain('AuthModuleLogout');
      await tab.reload();
      await expectStatus(tab, 'Signed out.');
      await expect(tab.locator('#sign-out-pending').isHidden()).resolves.toBe(true);
    } finally {
      relay.up();
    }
    expect(problems).toEqual([]);
    await context.close();
  });
});

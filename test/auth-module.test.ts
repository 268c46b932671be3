import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ME, registerAccount, type SignedInAccount } from './support/accounts.js';
import { startTestServer, type TestServer } from './support/server.js';
import { unusedPort } from './support/smtp.js';
import { waitUntil, within } from './support/wait.js';

// The example app's auth module (examples/spa/src/auth.ts) in Node, as several tabs and apps of one
// browser: instances on one BroadcastChannel name are tabs of one app, instances sharing a Storage
// are apps of one origin. It talks to a real server, to a port that refuses connections (a server
// that is down), and to one that accepts connections but never answers. Node's fetch,
// BroadcastChannel and AbortController are the real ones; Web Locks, which Node 20 lacks, are
// stood in for by a first-come-first-served lock (below).

/** What the tests use of the module. It is imported at run time: the server's type-check has no DOM library for it. */
type AuthState = { status: 'unknown' } | { status: 'signed-in'; userId: string } | { status: 'signed-out'; reason: string; signOutPending: boolean };
interface AuthPayload {
  accessToken: string;
  accessTokenExpiresAt: string;
  refreshToken: string;
  deviceToken: string;
  user: { id: string };
}
interface RefreshTokenStore {
  get(): Promise<string | null>;
  set(token: string): Promise<void>;
  clear(): Promise<void>;
}
interface AuthOptions {
  uri: string;
  transport?: 'cookie' | 'store';
  refreshTokenStore?: RefreshTokenStore;
  channelName?: string;
  requestTimeoutSeconds?: number;
  deviceTokenStorage?: MemoryStorage | null;
}
interface Auth {
  readonly current: AuthState;
  restore(): Promise<AuthState>;
  signIn(run: (signal: AbortSignal) => Promise<AuthPayload | null | undefined>): Promise<boolean>;
  signOut(): Promise<boolean>;
  refresh(): Promise<'ok' | 'ended' | 'unavailable'>;
  deviceToken(): string | null;
}
const AUTH_MODULE = new URL('../examples/spa/src/auth.ts', import.meta.url).pathname;
let AuthClass: new (options: AuthOptions) => Auth;

/** localStorage of one origin, shared by every instance given it. */
class MemoryStorage {
  readonly items = new Map<string, string>();
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.items.set(key, String(value));
  }
  removeItem(key: string): void {
    this.items.delete(key);
  }
}

/** A native app's Keychain, for `transport: 'store'`: the refresh token travels in the body, as Node's fetch has no cookie jar. */
class MemoryTokenStore implements RefreshTokenStore {
  token: string | null = null;
  async get() {
    return this.token;
  }
  async set(token: string) {
    this.token = token;
  }
  async clear() {
    this.token = null;
  }
}

/** Web Locks (`navigator.locks.request`) for Node versions without them: each name is held by one caller at a time, in order of request. */
function installWebLocks(): () => void {
  const existing = (globalThis as { navigator?: object }).navigator;
  if (existing && 'locks' in existing) return () => undefined;
  const tails = new Map<string, Promise<unknown>>();
  const locks = {
    request<T>(name: string, work: () => Promise<T>): Promise<T> {
      const result = (tails.get(name) ?? Promise.resolve()).then(() => work());
      tails.set(name, result.catch(() => undefined));
      return result;
    },
  };
  const previous = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
  Object.defineProperty(globalThis, 'navigator', { value: { ...(previous?.value ?? {}), locks }, configurable: true, writable: true });
  return () => {
    if (previous) Object.defineProperty(globalThis, 'navigator', previous);
    else Reflect.deleteProperty(globalThis, 'navigator');
  };
}

/** A server that accepts every connection and reads what is sent, but never answers. */
interface SilentServer {
  uri: string;
  /** Everything clients sent, as text. */
  received(): string;
  close(): Promise<void>;
}

function startSilentServer(): Promise<SilentServer> {
  const sockets = new Set<Socket>();
  let received = '';
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        uri: `http://127.0.0.1:${(server.address() as { port: number }).port}/graphql`,
        received: () => received,
        close() {
          for (const socket of sockets) socket.destroy();
          return new Promise((done) => server.close(() => done()));
        },
      }),
    ),
  );
}

let api: TestServer;
let silent: SilentServer;
/** A port nothing listens on: every connection is refused at once, as with a server that is down. */
let refusedUri: string;
let removeWebLocks: () => void;

beforeAll(async () => {
  removeWebLocks = installWebLocks();
  ({ Auth: AuthClass } = (await import(/* @vite-ignore */ AUTH_MODULE)) as { Auth: typeof AuthClass });
  [api, silent] = await Promise.all([startTestServer(), startSilentServer()]);
  refusedUri = `http://127.0.0.1:${await unusedPort()}/graphql`;
});
afterAll(async () => {
  await silent?.close();
  await api?.stop();
  removeWebLocks?.();
});

/** A channel name of its own for each test, so tabs of different tests never hear each other. */
const channelName = (app: string) => `${app}-${randomBytes(4).toString('hex')}`;
/** What a register (or login) mutation returns, as `signIn`'s `run` hands it over. */
const payloadOf = (account: SignedInAccount) => account as unknown as AuthPayload;
const PENDING: AuthState = { status: 'signed-out', reason: 'SIGNED_OUT', signOutPending: true };

describe('a server that accepts the connection but never answers', () => {
  // Short, so the tests are quick; the default is 10 s.
  const requestTimeoutSeconds = 0.5;

  it('signOut() signs every tab out at once, resolves false after the timeout, and leaves the sign-out pending and the lock free', async () => {
    const storage = new MemoryStorage();
    const options = { uri: silent.uri, channelName: channelName('tabs'), deviceTokenStorage: storage, requestTimeoutSeconds };
    const [tabA, tabB] = [new AuthClass(options), new AuthClass(options)];
    const account = await registerAccount(api);
    expect(await tabA.signIn(async () => payloadOf(account))).toBe(true);
    await waitUntil(() => tabB.current.status === 'signed-in', 'tab B is signed in');

    const signingOut = tabA.signOut();
    // Signed out before the lock or the server is waited for.
    expect(tabA.current).toEqual(PENDING);
    await waitUntil(() => tabB.current.status === 'signed-out', 'tab B hears of the sign-out');
    expect(tabB.current).toEqual(PENDING);
    await waitUntil(() => silent.received().includes('AuthModuleLogout'), 'the logout reaches the silent server');
    expect(await within(5_000, () => signingOut, 'signOut()')).toBe(false);
    expect(tabA.current).toEqual(PENDING);

    // Nothing holds the lock: a refresh in the other tab sends the pending logout again, and gives up too.
    expect(await within(5_000, () => tabB.refresh(), 'a refresh after the sign-out')).toBe('unavailable');
    expect(tabB.current).toEqual(PENDING);
    // A sign-in goes through (it tries the pending logout first, which again gets no answer).
    const again = await registerAccount(api);
    expect(await within(5_000, () => tabB.signIn(async () => payloadOf(again)), 'a sign-in after the sign-out')).toBe(true);
    await waitUntil(() => tabA.current.status === 'signed-in', 'tab A hears of the sign-in');
    expect(tabA.current).toEqual({ status: 'signed-in', userId: again.user.id });
  });

  it('a start-up refresh and a sign-in give up after the timeout and release the lock, even when `run` ignores its signal', async () => {
    const tab = new AuthClass({ uri: silent.uri, channelName: channelName('tab'), deviceTokenStorage: new MemoryStorage(), requestTimeoutSeconds });
    expect(await within(5_000, () => tab.restore(), 'restore()')).toEqual({ status: 'signed-out', reason: 'UNREACHABLE', signOutPending: false });

    // A sign-in mutation that passes the signal on (as the example app does through Apollo's fetchOptions).
    const login = (signal: AbortSignal) => fetch(silent.uri, { method: 'POST', body: '{"query":"mutation SilentLogin { login }"}', signal }).then(() => null);
    await expect(within(5_000, () => tab.signIn(login), 'signIn() with the signal passed on')).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(silent.received()).toContain('SilentLogin');
    // One that does not: the module stops waiting for it all the same.
    await expect(within(5_000, () => tab.signIn(() => new Promise<null>(() => undefined)), 'signIn() ignoring the signal')).rejects.toMatchObject({ name: 'TimeoutError' });

    expect(await within(5_000, () => tab.refresh(), 'a refresh after the sign-ins')).toBe('unavailable');
    expect(tab.current).toEqual({ status: 'signed-out', reason: 'UNREACHABLE', signOutPending: false });
  });
});

describe('two apps on one origin, each with its own channelName', () => {
  /** App A, whose server is down, and app B, on the real server, on one origin (one Storage), each in `store` mode. */
  function twoApps() {
    const storage = new MemoryStorage();
    const [storeA, storeB] = [new MemoryTokenStore(), new MemoryTokenStore()];
    const optionsA = { uri: refusedUri, transport: 'store', refreshTokenStore: storeA, channelName: channelName('app-a'), deviceTokenStorage: storage } as const;
    const appB = new AuthClass({ uri: `${api.origin}/graphql`, transport: 'store', refreshTokenStore: storeB, channelName: channelName('app-b'), deviceTokenStorage: storage });
    return { appA: new AuthClass(optionsA), appB, optionsA, storeA };
  }

  it('keep their own device tokens', async () => {
    const { appA, appB } = twoApps();
    const [accountA, accountB] = [await registerAccount(api), await registerAccount(api)];
    expect(accountA.deviceToken).not.toBe(accountB.deviceToken);
    expect(await appA.signIn(async () => payloadOf(accountA))).toBe(true);
    expect(await appB.signIn(async () => payloadOf(accountB))).toBe(true);
    expect(appA.deviceToken()).toBe(accountA.deviceToken);
    expect(appB.deviceToken()).toBe(accountB.deviceToken);
  });

  it('one app signing out while its server is down leaves the other signed in, and its own sign-out pending', async () => {
    const { appA, appB, optionsA, storeA } = twoApps();
    const [accountA, accountB] = [await registerAccount(api), await registerAccount(api)];
    expect(await appA.signIn(async () => payloadOf(accountA))).toBe(true);
    expect(await appB.signIn(async () => payloadOf(accountB))).toBe(true);
    expect(await appA.signOut()).toBe(false);
    expect(appA.current).toEqual(PENDING);

    // App B refreshes as usual: it does not send app A's pending logout with its own session.
    expect(await appB.refresh()).toBe('ok');
    expect(appB.current).toEqual({ status: 'signed-in', userId: accountB.user.id });
    const me = await api.graphql(ME, {}, { token: accountB.accessToken });
    expect(me.errors).toBeUndefined();
    expect(me.data?.me.id).toBe(accountB.user.id);

    // App A's sign-out is still pending: restarted, it does not sign back in, and keeps the refresh token for that logout.
    const restartedA = new AuthClass(optionsA);
    expect(await restartedA.restore()).toEqual(PENDING);
    expect(storeA.token).toBe(accountA.refreshToken);
  });

  it('the default channelName takes over the keys earlier versions wrote; another channelName leaves them alone', async () => {
    const legacy = () => {
      const storage = new MemoryStorage();
      storage.setItem('auth.deviceToken', 'device-token-of-earlier-version');
      storage.setItem('auth.signOutPending', new Date().toISOString());
      return storage;
    };
    const upgraded = legacy();
    const app = new AuthClass({ uri: refusedUri, deviceTokenStorage: upgraded });
    expect(app.deviceToken()).toBe('device-token-of-earlier-version');
    // The sign-out pending before the upgrade is still pending.
    expect(await app.restore()).toEqual(PENDING);
    expect([...upgraded.items.keys()].filter((key) => key.startsWith('auth.'))).toEqual([]);

    const other = new AuthClass({ uri: refusedUri, channelName: channelName('other-app'), deviceTokenStorage: legacy() });
    expect(other.deviceToken()).toBeNull();
    expect(await other.restore()).toEqual({ status: 'signed-out', reason: 'UNREACHABLE', signOutPending: false });
  });
});

/**
 * Sign-in state for Apollo Client 4 against the user server: copy this file into your app.
 *
 * - The access token lives in memory only; a reload gets a new one by refreshing.
 * - The refresh token lives where script cannot read it: in browsers, the server's HttpOnly cookie
 *   (`transport: 'cookie'`, the default; needs the page's origin in CORS_ORIGINS); in native apps,
 *   a `refreshTokenStore` you back with the Keychain or Keystore (`transport: 'store'`).
 * - One refresh at a time, across every tab of the browser (Web Locks), shared with the others
 *   (BroadcastChannel): a tab that waited for another's refresh uses its result.
 * - `link` adds the access token to each operation, refreshes ahead of expiry, retries an operation
 *   once after TOKEN_EXPIRED, and signs out (every tab) on SESSION_ENDED or TOKEN_INVALID.
 * - `subscribe` tells the app when it is signed in or out, and why.
 *
 * Only `@apollo/client` 4 and `rxjs` are needed. Nothing here is specific to the example app.
 */
import { ApolloLink } from '@apollo/client';
import { from, mergeMap, type Observable } from 'rxjs';

/** The fields of an AuthPayload the module needs; select at least these in `register` and `login`. */
export interface AuthPayloadFields {
  accessToken: string;
  accessTokenExpiresAt: string;
  refreshToken: string;
  deviceToken: string;
  user: { id: string };
}

/** Where a native app keeps its refresh token (the Keychain on iOS, the Keystore on Android). */
export interface RefreshTokenStore {
  get(): Promise<string | null>;
  set(token: string): Promise<void>;
  clear(): Promise<void>;
}

/** Why the app is signed out. */
export type SignedOutReason =
  /** Nothing to restore on start-up: the user has not signed in on this device (or the cookie expired). */
  | 'NO_SESSION'
  /** The user signed out (in this tab or another). */
  | 'SIGNED_OUT'
  /** The server ended the session: logout elsewhere, revocation, password reset, deactivation, deletion. */
  | 'SESSION_ENDED'
  /** The server refused the token outright (a new signing key, say). */
  | 'TOKEN_INVALID';

export type AuthState = { status: 'unknown' } | { status: 'signed-in'; userId: string } | { status: 'signed-out'; reason: SignedOutReason };

export interface AuthOptions {
  /** The GraphQL endpoint, e.g. `https://auth.example.com/graphql`. */
  uri: string;
  /** `cookie` (browsers, default) or `store` (native apps, with `refreshTokenStore`). */
  transport?: 'cookie' | 'store';
  refreshTokenStore?: RefreshTokenStore;
  /** Refresh this many seconds before the access token expires (default 30). */
  refreshAheadSeconds?: number;
  /** Name of the cross-tab lock and channel; change it if two apps share an origin. */
  channelName?: string;
  /** Where the device token is kept (not a secret: it only protects this device from lock-outs). Default: localStorage. */
  deviceTokenStorage?: Pick<Storage, 'getItem' | 'setItem'> | null;
}

/** What the tabs of one browser tell each other. */
type TabMessage =
  | { type: 'tokens'; accessToken: string; expiresAt: number; userId: string }
  | { type: 'signed-out'; reason: SignedOutReason };

const REFRESH = /* GraphQL */ `
  mutation AuthModuleRefresh($refreshToken: String!) {
    refreshToken(refreshToken: $refreshToken) {
      accessToken
      accessTokenExpiresAt
      refreshToken
      deviceToken
      user { id }
    }
  }
`;
const LOGOUT = /* GraphQL */ `
  mutation AuthModuleLogout {
    logout
  }
`;
const DEVICE_TOKEN_KEY = 'auth.deviceToken';

/** Reasons of UNAUTHENTICATED that mean "sign in again". */
const ENDED = new Set(['SESSION_ENDED', 'TOKEN_INVALID']);

export class Auth {
  /** Put it in front of your HttpLink: `ApolloLink.from([auth.link, httpLink])`. */
  readonly link: ApolloLink;
  /** Options for the HttpLink, so the refresh-token cookie travels (`credentials: 'include'`). */
  readonly httpOptions: { uri: string; credentials: RequestCredentials; headers: Record<string, string> };

  private state: AuthState = { status: 'unknown' };
  private accessToken: string | null = null;
  private expiresAt = 0;
  /** Bumped whenever tokens arrive (from this tab or another), so a waiting refresh knows it is stale. */
  private generation = 0;
  private refreshing: Promise<boolean> | null = null;
  private readonly listeners = new Set<(state: AuthState) => void>();
  private readonly channel: BroadcastChannel | null;
  private readonly options: Required<Omit<AuthOptions, 'refreshTokenStore' | 'deviceTokenStorage'>> & Pick<AuthOptions, 'refreshTokenStore' | 'deviceTokenStorage'>;

  constructor(options: AuthOptions) {
    this.options = { transport: 'cookie', refreshAheadSeconds: 30, channelName: 'user-server-auth', ...options };
    if (this.options.transport === 'store' && !this.options.refreshTokenStore) throw new Error('transport "store" needs a refreshTokenStore');
    if (this.options.deviceTokenStorage === undefined) this.options.deviceTokenStorage = typeof localStorage === 'undefined' ? null : localStorage;
    const cookieMode = this.options.transport === 'cookie';
    this.httpOptions = {
      uri: this.options.uri,
      credentials: cookieMode ? 'include' : 'omit',
      headers: cookieMode ? { 'refresh-token-transport': 'cookie' } : {},
    };
    this.channel = typeof BroadcastChannel === 'undefined' ? null : new BroadcastChannel(this.options.channelName);
    this.channel?.addEventListener('message', (event: MessageEvent<TabMessage>) => this.fromOtherTab(event.data));
    this.link = new ApolloLink((operation, forward) =>
      from(this.validToken()).pipe(
        mergeMap((token) => this.send(operation, forward, token)),
        mergeMap((result) => {
          const reason = unauthenticatedReason(result);
          if (reason === 'TOKEN_EXPIRED' && !operation.getContext().authRetried) {
            // Refresh (once for every operation that failed together) and run the operation again.
            operation.setContext({ authRetried: true });
            return from(this.refresh()).pipe(mergeMap((ok) => (ok ? this.send(operation, forward, this.accessToken) : [result])));
          }
          if (reason && ENDED.has(reason) && this.accessToken) this.signedOut(reason as SignedOutReason, true);
          return [result];
        }),
      ),
    );
  }

  /** The current state; `unknown` until {@link restore} has run. */
  get current(): AuthState {
    return this.state;
  }

  /** Calls `listener` on every change of state, in this tab and when another tab changes it. */
  subscribe(listener: (state: AuthState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The device token to send with `login` (`LoginInput.deviceToken`). */
  deviceToken(): string | null {
    return this.options.deviceTokenStorage?.getItem(DEVICE_TOKEN_KEY) ?? null;
  }

  /** Call once at start-up: signs in from the refresh token kept on this device, if there is one. */
  async restore(): Promise<AuthState> {
    if (!(await this.refresh()) && this.state.status === 'unknown') this.setState({ status: 'signed-out', reason: 'NO_SESSION' });
    return this.state;
  }

  /** Call with the AuthPayload of `register` or `login` (or `verifyMfa`). */
  async signedIn(payload: AuthPayloadFields): Promise<void> {
    await this.adopt(payload);
  }

  /** Signs out of this device session (every tab of it) and tells the server. */
  async signOut(): Promise<void> {
    if (await this.validToken()) {
      await this.post(LOGOUT, {}, this.accessToken).catch(() => undefined);
    }
    await this.options.refreshTokenStore?.clear();
    this.signedOut('SIGNED_OUT', true);
  }

  /**
   * Exchanges the refresh token for new tokens; one at a time in this tab and across tabs. Resolves
   * `true` when this tab holds a fresh access token afterwards.
   */
  refresh(): Promise<boolean> {
    this.refreshing ??= this.refreshAcrossTabs().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async refreshAcrossTabs(): Promise<boolean> {
    const seen = this.generation;
    return withLock(`${this.options.channelName}:refresh`, async () => {
      // Another tab refreshed while this one waited for the lock, and shared its tokens: done.
      if (this.generation !== seen && this.accessToken) return true;
      const stored = this.options.transport === 'store' ? await this.options.refreshTokenStore!.get() : '';
      if (stored === null) return false;
      let answer: Awaited<ReturnType<Auth['post']>>;
      try {
        answer = await this.post(REFRESH, { refreshToken: stored }, null);
      } catch {
        return false; // Offline or the server is down: keep the state, try again later.
      }
      const payload = answer.data?.refreshToken as AuthPayloadFields | undefined;
      if (payload) {
        await this.adopt(payload);
        return true;
      }
      // UNAUTHENTICATED: the refresh token is dead (expired, reused, its session ended). Anything
      // else (RATE_LIMITED, a database outage) leaves the state as it is.
      if (answer.errors?.some((error) => error.extensions?.code === 'UNAUTHENTICATED')) {
        await this.options.refreshTokenStore?.clear();
        if (this.state.status === 'signed-in') this.signedOut('SESSION_ENDED', true);
      }
      return false;
    });
  }

  /** The access token, refreshed first when it is about to expire; `null` when signed out. */
  private async validToken(): Promise<string | null> {
    if (this.accessToken && Date.now() < this.expiresAt - this.options.refreshAheadSeconds * 1000) return this.accessToken;
    if (this.state.status !== 'signed-in') return this.accessToken;
    return (await this.refresh()) ? this.accessToken : null;
  }

  private send(operation: ApolloLink.Operation, forward: ApolloLink.ForwardFunction, token: string | null): Observable<ApolloLink.Result> {
    operation.setContext(({ headers = {} }) => ({
      headers: { ...headers, ...(token ? { authorization: `Bearer ${token}` } : {}) },
    }));
    return forward(operation);
  }

  private async adopt(payload: AuthPayloadFields): Promise<void> {
    if (this.options.transport === 'store' && payload.refreshToken) await this.options.refreshTokenStore!.set(payload.refreshToken);
    this.options.deviceTokenStorage?.setItem(DEVICE_TOKEN_KEY, payload.deviceToken);
    const message: TabMessage = { type: 'tokens', accessToken: payload.accessToken, expiresAt: Date.parse(payload.accessTokenExpiresAt), userId: payload.user.id };
    this.useTokens(message);
    this.channel?.postMessage(message);
  }

  private useTokens(tokens: Extract<TabMessage, { type: 'tokens' }>): void {
    this.accessToken = tokens.accessToken;
    this.expiresAt = tokens.expiresAt;
    this.generation += 1;
    if (this.state.status !== 'signed-in' || this.state.userId !== tokens.userId) this.setState({ status: 'signed-in', userId: tokens.userId });
  }

  private signedOut(reason: SignedOutReason, tellOtherTabs: boolean): void {
    this.accessToken = null;
    this.expiresAt = 0;
    this.generation += 1;
    if (tellOtherTabs) this.channel?.postMessage({ type: 'signed-out', reason } satisfies TabMessage);
    this.setState({ status: 'signed-out', reason });
  }

  private fromOtherTab(message: TabMessage): void {
    if (message.type === 'tokens') {
      if (message.expiresAt >= this.expiresAt) this.useTokens(message);
    } else if (this.state.status !== 'signed-out') {
      this.signedOut(message.reason, false);
    }
  }

  private setState(state: AuthState): void {
    this.state = state;
    for (const listener of this.listeners) listener(state);
  }

  private async post(query: string, variables: Record<string, unknown>, token: string | null) {
    const response = await fetch(this.options.uri, {
      method: 'POST',
      credentials: this.httpOptions.credentials,
      headers: { 'content-type': 'application/json', ...this.httpOptions.headers, ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query, variables }),
    });
    if (response.status >= 500) throw new Error(`server answered ${response.status}`);
    return (await response.json()) as { data?: Record<string, unknown> | null; errors?: Array<{ extensions?: Record<string, unknown> }> };
  }
}

/** The `extensions.reason` of an UNAUTHENTICATED error in `result`, if any. */
function unauthenticatedReason(result: ApolloLink.Result): string | undefined {
  const errors = 'errors' in result ? result.errors : undefined;
  const error = errors?.find((entry) => entry.extensions?.code === 'UNAUTHENTICATED');
  return typeof error?.extensions?.reason === 'string' ? error.extensions.reason : undefined;
}

/** Runs `work` holding the browser-wide lock `name` (Web Locks), or directly where there are none. */
function withLock<T>(name: string, work: () => Promise<T>): Promise<T> {
  const locks = typeof navigator === 'undefined' ? undefined : navigator.locks;
  return locks ? (locks.request(name, work) as Promise<T>) : work();
}

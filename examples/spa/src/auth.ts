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
 *   once after TOKEN_EXPIRED (or TOKEN_INVALID: a new signing key), and signs every tab out on
 *   SESSION_ENDED or when a refresh does not help.
 * - Sign-in and sign-out take the same lock as refreshes, and count epochs, so a refresh that was
 *   on its way can never bring a signed-out tab back, or a previous account. While a tab holds the
 *   lock to sign in, its operations go out without waiting for a refresh (the sign-in mutation needs
 *   no token), so a sign-in never waits for itself.
 * - `signOut()` signs every tab out at once, before it waits for the lock or the server. A sign-out
 *   the server could not be told of (offline, server down, no answer in time) stays pending on this
 *   device (in `deviceTokenStorage`): nothing signs back in with that session, and the logout is sent
 *   again when the browser comes back online, on the next operation, at start-up, or on `signOut()`.
 * - Every request the module sends, and the sign-in, gives up after `requestTimeoutSeconds`: a server
 *   that accepts the connection but never answers counts as unreachable, and never holds the lock.
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
  /** The server could not be reached to restore the session; the next operation (or going online) tries again. */
  | 'UNREACHABLE'
  /** The user signed out (in this tab or another). */
  | 'SIGNED_OUT'
  /** The server ended the session: logout elsewhere, revocation, password reset, deactivation, deletion. */
  | 'SESSION_ENDED'
  /** The server refused the token outright and a refresh did not help. */
  | 'TOKEN_INVALID';

export type AuthState =
  | { status: 'unknown' }
  | { status: 'signed-in'; userId: string }
  /** `signOutPending`: the user signed out, but the server has not confirmed it yet; the module keeps trying. */
  | { status: 'signed-out'; reason: SignedOutReason; signOutPending: boolean };

export interface AuthOptions {
  /** The GraphQL endpoint, e.g. `https://auth.example.com/graphql`. */
  uri: string;
  /** `cookie` (browsers, default) or `store` (native apps, with `refreshTokenStore`). */
  transport?: 'cookie' | 'store';
  refreshTokenStore?: RefreshTokenStore;
  /** Refresh this many seconds before the access token expires (default 30). */
  refreshAheadSeconds?: number;
  /**
   * Name of the cross-tab lock and channel, and prefix of the keys in `deviceTokenStorage`; change it
   * if two apps share an origin.
   */
  channelName?: string;
  /**
   * How long to wait for the server's answer to a refresh, a logout or a sign-in (default 10): then
   * the server counts as unreachable, and the cross-tab lock is released.
   */
  requestTimeoutSeconds?: number;
  /**
   * Where the device token (not a secret: it only protects this device from lock-outs) and a sign-out
   * the server has not confirmed yet are kept. Default: localStorage. With `null`, a pending sign-out
   * is remembered only until the app reloads; in `store` mode its refresh token is then dropped at
   * once, so a restart cannot sign back in.
   */
  deviceTokenStorage?: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'> | null;
}

/**
 * What the tabs of one browser tell each other. `epoch` is the time of the latest sign-in or
 * sign-out the sender knew of: tokens from a refresh that began before a newer one are stale.
 */
type TabMessage =
  | { type: 'tokens'; epoch: number; accessToken: string; localExpiry: number; userId: string }
  | { type: 'signed-out'; epoch: number; reason: SignedOutReason; signOutPending: boolean };

/** What a refresh came to: new tokens, a dead refresh token, or no answer (offline, server down, rate-limited). */
export type RefreshOutcome = 'ok' | 'ended' | 'unavailable';

type GraphQLAnswer = { data?: Record<string, unknown> | null; errors?: Array<{ extensions?: Record<string, unknown> }> };

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
const DEFAULT_CHANNEL_NAME = 'user-server-auth';
/**
 * The keys in `deviceTokenStorage` before they were named after `channelName`: two apps on one origin
 * shared them, so one's offline sign-out ended the other's session. Moved once to the default
 * channel's keys (the only app that can have written them with that name), so an upgrade keeps a
 * pending sign-out and the device token.
 */
const LEGACY_KEYS = { deviceToken: 'auth.deviceToken', signOutPending: 'auth.signOutPending' } as const;

export class Auth {
  /** Put it in front of your HttpLink: `ApolloLink.from([auth.link, httpLink])`. */
  readonly link: ApolloLink;
  /** Options for the HttpLink, so the refresh-token cookie travels (`credentials: 'include'`). */
  readonly httpOptions: { uri: string; credentials: RequestCredentials; headers: Record<string, string> };

  private state: AuthState = { status: 'unknown' };
  private accessToken: string | null = null;
  /** When the access token expires, by this device's clock (its lifetime counted from when it arrived). */
  private localExpiry = 0;
  private epoch = 0;
  /** Bumped whenever tokens arrive (from this tab or another), so a refresh waiting for the lock knows it is stale. */
  private generation = 0;
  private refreshing: Promise<RefreshOutcome> | null = null;
  private restoring: Promise<AuthState> | null = null;
  private finishing: Promise<boolean> | null = null;
  /** Above 0 while this tab holds the lock to sign in or out: its operations must not wait for a refresh, which waits for that lock. */
  private exclusive = 0;
  /** An access token of the session the user signed out of, to send the pending logout with while it lasts. */
  private logoutToken: { token: string; localExpiry: number } | null = null;
  /** A pending sign-out that could not be written to `deviceTokenStorage`, remembered here instead. */
  private pendingHere = false;
  private readonly listeners = new Set<(state: AuthState) => void>();
  private readonly channel: BroadcastChannel | null;
  private readonly lockName: string;
  /** The keys in `deviceTokenStorage`; `signOutPending` is set while the user has signed out and the server has not confirmed it. */
  private readonly keys: Record<keyof typeof LEGACY_KEYS, string>;
  private readonly options: Required<Omit<AuthOptions, 'refreshTokenStore' | 'deviceTokenStorage'>> & Pick<AuthOptions, 'refreshTokenStore' | 'deviceTokenStorage'>;

  constructor(options: AuthOptions) {
    this.options = { transport: 'cookie', refreshAheadSeconds: 30, channelName: DEFAULT_CHANNEL_NAME, requestTimeoutSeconds: 10, ...options };
    if (this.options.transport === 'store' && !this.options.refreshTokenStore) throw new Error('transport "store" needs a refreshTokenStore');
    if (this.options.deviceTokenStorage === undefined) this.options.deviceTokenStorage = defaultStorage();
    this.lockName = `${this.options.channelName}:tokens`;
    this.keys = { deviceToken: `${this.options.channelName}:deviceToken`, signOutPending: `${this.options.channelName}:signOutPending` };
    if (this.options.channelName === DEFAULT_CHANNEL_NAME) this.moveLegacyKeys();
    const cookieMode = this.options.transport === 'cookie';
    this.httpOptions = {
      uri: this.options.uri,
      credentials: cookieMode ? 'include' : 'omit',
      headers: cookieMode ? { 'refresh-token-transport': 'cookie' } : {},
    };
    this.channel = typeof BroadcastChannel === 'undefined' ? null : new BroadcastChannel(this.options.channelName);
    this.channel?.addEventListener('message', (event: MessageEvent<TabMessage>) => this.fromOtherTab(event.data));
    // React Native has a `window` without addEventListener.
    if (typeof window !== 'undefined' && typeof window.addEventListener === 'function') {
      window.addEventListener('online', () => {
        if (this.signOutPending()) void this.finishSignOut();
        else if (this.state.status === 'signed-out' && this.state.reason === 'UNREACHABLE') void this.refresh();
      });
    }
    this.link = new ApolloLink((operation, forward) => from(this.validToken()).pipe(mergeMap((token) => this.attempt(operation, forward, token, true))));
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
    try {
      return this.options.deviceTokenStorage?.getItem(this.keys.deviceToken) ?? null;
    } catch {
      return null; // storage blocked: sign in without one
    }
  }

  /**
   * Call once at start-up: signs in from the refresh token kept on this device, if there is one. After
   * a sign-out the server has not confirmed, it sends that logout instead and stays signed out.
   */
  restore(): Promise<AuthState> {
    this.restoring ??= this.refresh().then((outcome) => {
      if (this.state.status === 'unknown') {
        this.setState(this.signedOutState(this.signOutPending() ? 'SIGNED_OUT' : outcome === 'unavailable' ? 'UNREACHABLE' : 'NO_SESSION'));
      }
      return this.state;
    });
    return this.restoring;
  }

  /**
   * Signs in: `run` sends `register`, `login` (or `verifyMfa`) and returns its AuthPayload. It runs
   * while no tab refreshes, so a refresh of the previous session cannot overwrite the new one. Its
   * `signal` aborts after `requestTimeoutSeconds` (pass it on: `context: { fetchOptions: { signal } }`);
   * then the sign-in rejects, and releases the lock even if `run` has not finished.
   */
  signIn(run: (signal: AbortSignal) => Promise<AuthPayloadFields | null | undefined>): Promise<boolean> {
    return withLock(this.lockName, () =>
      this.exclusively(async () => {
        // A sign-out the server has not heard of yet goes first: the new session's cookie replaces the old one's.
        if (this.signOutPending()) await this.endPendingSignOut();
        const payload = await this.bounded(run);
        if (!payload) return false;
        this.clearSignOutPending();
        this.nextEpoch();
        await this.adopt(payload);
        return true;
      }),
    );
  }

  /**
   * Signs this device session out, on the server and in every tab. The tabs are signed out at once,
   * before the server is asked. Resolves `false` when the server could not confirm it (offline, server
   * down, no answer within `requestTimeoutSeconds`): the state says `signOutPending`; nothing signs
   * back in with that session, and the logout is sent again when the browser comes back online, on the
   * next operation, at the next start, or when this is called again.
   */
  signOut(): Promise<boolean> {
    // Before the lock, which a refresh may hold while it waits for the server: a refresh that is on its
    // way finds a newer epoch when it is answered, and cannot sign back in.
    this.signOutLocally();
    return withLock(this.lockName, () =>
      this.exclusively(async () => {
        // A sign-in that held the lock meanwhile (in this tab or another) is signed out of as well.
        if (this.state.status === 'signed-in') this.signOutLocally();
        // Not pending any more: another tab has had it confirmed meanwhile.
        return this.signOutPending() ? this.endPendingSignOut() : true;
      }),
    );
  }

  /** Signs every tab out, the sign-out pending until the server confirms it. */
  private signOutLocally(): void {
    // Remembered before anything is sent, so a reload from here on cannot sign back in.
    this.markSignOutPending();
    this.nextEpoch();
    this.signedOut('SIGNED_OUT');
  }

  /**
   * Exchanges the refresh token for new tokens; one at a time in this tab and across tabs (a tab
   * that waited while another refreshed uses that tab's result).
   */
  refresh(): Promise<RefreshOutcome> {
    const seen = this.generation;
    this.refreshing ??= withLock(this.lockName, () => (this.generation !== seen && this.accessToken ? Promise.resolve<RefreshOutcome>('ok') : this.refreshHoldingLock())).finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  /** The refresh request itself; the caller holds the lock. */
  private async refreshHoldingLock(): Promise<RefreshOutcome> {
    if (this.signOutPending()) {
      // The user signed out of this session: end it on the server, never sign back in with it.
      const ended = await this.endPendingSignOut();
      if (this.state.status === 'signed-in') {
        this.nextEpoch();
        this.signedOut('SIGNED_OUT');
      }
      return ended ? 'ended' : 'unavailable';
    }
    const epoch = this.epoch;
    const stored = this.options.transport === 'store' ? await this.options.refreshTokenStore!.get() : '';
    if (stored === null) return 'ended';
    let answer: GraphQLAnswer;
    try {
      answer = await this.post(REFRESH, { refreshToken: stored }, null);
    } catch {
      return 'unavailable';
    }
    const payload = answer.data?.refreshToken as AuthPayloadFields | undefined;
    // Signed in or out meanwhile (another tab's message): this answer belongs to the past.
    if (epoch !== this.epoch) return this.accessToken ? 'ok' : 'ended';
    if (payload) {
      await this.adopt(payload);
      return 'ok';
    }
    // UNAUTHENTICATED: the refresh token is dead (expired, reused, its session ended). Anything
    // else (RATE_LIMITED, a database outage) leaves the state as it is.
    if (!answer.errors?.some((error) => error.extensions?.code === 'UNAUTHENTICATED')) return 'unavailable';
    await this.options.refreshTokenStore?.clear();
    if (this.state.status === 'signed-in') {
      this.nextEpoch();
      this.signedOut('SESSION_ENDED');
    } else if (this.state.status === 'signed-out' && this.state.reason === 'UNREACHABLE') {
      // The server answers again, and there is no session to restore: stop trying on every operation.
      this.signedOut('NO_SESSION');
    }
    return 'ended';
  }

  /** Sends a pending sign-out's logout again (taking the lock); `true` once nothing is pending. */
  private finishSignOut(): Promise<boolean> {
    this.finishing ??= withLock(this.lockName, () => (this.signOutPending() ? this.endPendingSignOut() : Promise.resolve(true)))
      .catch(() => false)
      .finally(() => {
        this.finishing = null;
      });
    return this.finishing;
  }

  /** {@link endServerSession}, then tells every tab when the sign-out is no longer pending; the caller holds the lock. */
  private async endPendingSignOut(): Promise<boolean> {
    const ended = await this.endServerSession();
    if (!this.signOutPending() && this.state.status !== 'signed-in') this.signedOut(this.state.status === 'signed-out' ? this.state.reason : 'SIGNED_OUT');
    return ended;
  }

  /**
   * Ends the session of a pending sign-out on the server (the caller holds the lock): `true` when it
   * is over there, now or before. Otherwise the sign-out stays pending, for the next try.
   */
  private async endServerSession(): Promise<boolean> {
    let outcome: 'ended' | 'unavailable' | 'out-of-reach';
    try {
      outcome = await this.logoutOnServer();
    } catch {
      outcome = 'unavailable';
    }
    const store = this.options.refreshTokenStore;
    if (outcome === 'unavailable') {
      // With nowhere to remember the sign-out across restarts, its refresh token must go now.
      if (store && !this.markerStored()) await store.clear();
      return false;
    }
    await store?.clear();
    this.clearSignOutPending();
    return outcome === 'ended';
  }

  /**
   * Sends the logout: with the signed-out session's access token while it lasts, else with one from a
   * refresh that is used for the logout only. `out-of-reach`: this device holds nothing of the session any more.
   */
  private async logoutOnServer(): Promise<'ended' | 'unavailable' | 'out-of-reach'> {
    const held = this.logoutToken;
    if (held && Date.now() < held.localExpiry) {
      const verdict = logoutVerdict(await this.post(LOGOUT, {}, held.token));
      if (verdict !== 'refresh') return verdict;
    }
    const store = this.options.transport === 'store' ? this.options.refreshTokenStore! : null;
    const stored = store ? await store.get() : '';
    if (stored === null) return held ? 'out-of-reach' : 'ended';
    const answer = await this.post(REFRESH, { refreshToken: stored }, null);
    const payload = answer.data?.refreshToken as AuthPayloadFields | undefined;
    // UNAUTHENTICATED: the refresh token is dead, so is its session.
    if (!payload) return answer.errors?.some((error) => error.extensions?.code === 'UNAUTHENTICATED') ? 'ended' : 'unavailable';
    if (store && payload.refreshToken) await store.set(payload.refreshToken);
    this.logoutToken = { token: payload.accessToken, localExpiry: localExpiry(payload) };
    const verdict = logoutVerdict(await this.post(LOGOUT, {}, payload.accessToken));
    return verdict === 'refresh' ? 'unavailable' : verdict;
  }

  /** The access token to send, refreshed first when it is about to expire; `null` when signed out. */
  private async validToken(): Promise<string | null> {
    // This tab holds the lock to sign in or out: a refresh would wait for it, and the sign-in mutation needs no token.
    if (this.exclusive > 0) return this.accessToken && Date.now() < this.localExpiry ? this.accessToken : null;
    if (this.state.status === 'unknown' && this.restoring) await this.restoring;
    if (this.accessToken && Date.now() < this.localExpiry - this.options.refreshAheadSeconds * 1000) return this.accessToken;
    if (this.signOutPending()) {
      // Signed out, the server not told yet: try again now, without holding the operation up.
      void this.finishSignOut();
      return this.accessToken;
    }
    const worthTrying = this.state.status === 'signed-in' || (this.state.status === 'signed-out' && this.state.reason === 'UNREACHABLE');
    if (worthTrying) await this.refresh();
    return this.accessToken;
  }

  /**
   * Sends the operation with `token`. Once, it is sent again: after TOKEN_EXPIRED or TOKEN_INVALID
   * with a refreshed token, or with the current token when the tokens changed while it was out.
   * SESSION_ENDED, or TOKEN_INVALID that a refresh did not cure, signs every tab out.
   */
  private attempt(operation: ApolloLink.Operation, forward: ApolloLink.ForwardFunction, token: string | null, mayRetry: boolean): Observable<ApolloLink.Result> {
    operation.setContext(({ headers = {} }: { headers?: Record<string, string> }) => {
      const { authorization: _previous, ...rest } = headers;
      return { headers: token ? { ...rest, authorization: `Bearer ${token}` } : rest };
    });
    return forward(operation).pipe(
      mergeMap((result): Observable<ApolloLink.Result> | ApolloLink.Result[] => {
        const reason = unauthenticatedReason(result);
        if (!reason || reason === 'TOKEN_MISSING' || token === null) return [result];
        if (token !== this.accessToken) {
          // Refreshed, signed in or out by someone else while this was on its way: not this token's verdict to act on.
          return mayRetry && this.accessToken ? this.attempt(operation, forward, this.accessToken, false) : [result];
        }
        if (mayRetry && (reason === 'TOKEN_EXPIRED' || reason === 'TOKEN_INVALID')) {
          // One refresh serves every operation that failed together.
          return from(this.refresh()).pipe(mergeMap((outcome) => (outcome === 'ok' ? this.attempt(operation, forward, this.accessToken, false) : [result])));
        }
        if (reason === 'SESSION_ENDED' || reason === 'TOKEN_INVALID') {
          this.nextEpoch();
          this.signedOut(reason);
          if (reason === 'SESSION_ENDED') this.forgetRefreshToken();
        }
        return [result];
      }),
    );
  }

  private async adopt(payload: AuthPayloadFields): Promise<void> {
    if (this.options.transport === 'store' && payload.refreshToken) await this.options.refreshTokenStore!.set(payload.refreshToken);
    try {
      this.options.deviceTokenStorage?.setItem(this.keys.deviceToken, payload.deviceToken);
    } catch {
      // storage full or blocked: the next sign-in goes without a device token
    }
    const message: TabMessage = { type: 'tokens', epoch: this.epoch, accessToken: payload.accessToken, localExpiry: localExpiry(payload), userId: payload.user.id };
    this.useTokens(message);
    this.channel?.postMessage(message);
  }

  private useTokens(tokens: Extract<TabMessage, { type: 'tokens' }>): void {
    this.epoch = tokens.epoch;
    this.accessToken = tokens.accessToken;
    this.localExpiry = tokens.localExpiry;
    this.generation += 1;
    if (this.state.status !== 'signed-in' || this.state.userId !== tokens.userId) this.setState({ status: 'signed-in', userId: tokens.userId });
  }

  /** Forgets the tokens here and tells the other tabs (the caller has moved to a new epoch, or only the reason changed). */
  private signedOut(reason: SignedOutReason): void {
    this.accessToken = null;
    this.localExpiry = 0;
    this.generation += 1;
    const state = this.signedOutState(reason);
    this.channel?.postMessage({ type: 'signed-out', epoch: this.epoch, reason, signOutPending: state.signOutPending } satisfies TabMessage);
    this.setState(state);
  }

  private signedOutState(reason: SignedOutReason): Extract<AuthState, { status: 'signed-out' }> {
    return { status: 'signed-out', reason, signOutPending: this.signOutPending() };
  }

  /** After SESSION_ENDED in `store` mode: the stored refresh token is dead too (unless a sign-in has replaced it since). */
  private forgetRefreshToken(): void {
    const store = this.options.refreshTokenStore;
    if (!store) return;
    const epoch = this.epoch;
    void withLock(this.lockName, async () => {
      if (this.epoch === epoch) await store.clear();
    }).catch(() => undefined);
  }

  private markSignOutPending(): void {
    if (this.accessToken) this.logoutToken = { token: this.accessToken, localExpiry: this.localExpiry };
    try {
      this.options.deviceTokenStorage?.setItem(this.keys.signOutPending, new Date().toISOString());
    } catch {
      // storage full or blocked: remembered in memory only
    }
    this.pendingHere = !this.markerStored();
  }

  private clearSignOutPending(): void {
    this.pendingHere = false;
    this.logoutToken = null;
    try {
      this.options.deviceTokenStorage?.removeItem(this.keys.signOutPending);
    } catch {
      // nothing more to do
    }
  }

  private markerStored(): boolean {
    try {
      return Boolean(this.options.deviceTokenStorage?.getItem(this.keys.signOutPending));
    } catch {
      return false;
    }
  }

  /** Moves the values of {@link LEGACY_KEYS} to this app's keys, unless these hold newer ones. */
  private moveLegacyKeys(): void {
    const storage = this.options.deviceTokenStorage;
    if (!storage) return;
    try {
      for (const name of ['deviceToken', 'signOutPending'] as const) {
        const value = storage.getItem(LEGACY_KEYS[name]);
        if (value === null) continue;
        if (storage.getItem(this.keys[name]) === null) storage.setItem(this.keys[name], value);
        storage.removeItem(LEGACY_KEYS[name]);
      }
    } catch {
      // storage blocked: there is nothing to move
    }
  }

  /** Whether the user signed out and the server has not confirmed it (in any tab, when it is in storage). */
  private signOutPending(): boolean {
    return this.pendingHere || this.markerStored();
  }

  private async exclusively<T>(work: () => Promise<T>): Promise<T> {
    this.exclusive += 1;
    try {
      return await work();
    } finally {
      this.exclusive -= 1;
    }
  }

  private fromOtherTab(message: TabMessage): void {
    if (message.epoch < this.epoch) return;
    if (message.type === 'tokens') {
      if (message.epoch > this.epoch || message.localExpiry >= this.localExpiry) {
        // A newer sign-in elsewhere has replaced the session this tab meant to sign out of.
        if (message.epoch > this.epoch) this.pendingHere = false;
        this.useTokens(message);
      }
      return;
    }
    this.epoch = message.epoch;
    this.accessToken = null;
    this.localExpiry = 0;
    this.generation += 1;
    if (!message.signOutPending) {
      this.pendingHere = false;
      this.logoutToken = null;
    }
    const state = this.state;
    if (state.status !== 'signed-out' || state.reason !== message.reason || state.signOutPending !== message.signOutPending) {
      this.setState({ status: 'signed-out', reason: message.reason, signOutPending: message.signOutPending });
    }
  }

  /**
   * Moves to a new epoch (a sign-in or sign-out). Epochs are times, not counters, so a tab that was
   * just opened or reloaded (epoch 0) never outranks an event of another tab.
   */
  private nextEpoch(): void {
    this.epoch = Math.max(this.epoch + 1, Date.now());
  }

  private setState(state: AuthState): void {
    this.state = state;
    for (const listener of this.listeners) listener(state);
  }

  /** Sends one request to the server; it rejects, as when the server is down, when no whole answer comes in time. */
  private post(query: string, variables: Record<string, unknown>, token: string | null): Promise<GraphQLAnswer> {
    return this.bounded(async (signal) => {
      const response = await fetch(this.options.uri, {
        method: 'POST',
        credentials: this.httpOptions.credentials,
        headers: { 'content-type': 'application/json', ...this.httpOptions.headers, ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify({ query, variables }),
        signal,
      });
      if (response.status >= 500) throw new Error(`server answered ${response.status}`);
      return (await response.json()) as GraphQLAnswer;
    });
  }

  /**
   * Runs `work` with a signal that aborts after `requestTimeoutSeconds`, and rejects then even if
   * `work` ignores the signal: nothing the module waits for while it holds the lock can hold it for ever.
   * (An AbortController and a timer, not `AbortSignal.timeout`, which React Native lacks.)
   */
  private async bounded<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const seconds = this.options.requestTimeoutSeconds;
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = timeoutError(seconds);
        controller.abort(error);
        reject(error);
      }, seconds * 1000);
    });
    try {
      return await Promise.race([work(controller.signal), late]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * When the access token expires by this device's clock: its lifetime (`exp - iat`, both server
 * time) counted from now, so a device clock that is off does not make every token look expired.
 */
function localExpiry(payload: AuthPayloadFields): number {
  try {
    const claims = JSON.parse(atob(payload.accessToken.split('.')[1]!.replace(/-/g, '+').replace(/_/g, '/'))) as { exp: number; iat: number };
    if (Number.isFinite(claims.exp - claims.iat)) return Date.now() + (claims.exp - claims.iat) * 1000;
  } catch {
    // not a JWT we can read: fall back to the server's expiry time
  }
  return Date.parse(payload.accessTokenExpiresAt);
}

/** What a request that had no answer in time rejects with (a `TimeoutError`, as `AbortSignal.timeout` gives). */
function timeoutError(seconds: number): Error {
  const error = new Error(`The server did not answer within ${seconds} s.`);
  error.name = 'TimeoutError';
  return error;
}

/** What a logout's answer means: done (or ended before), worth a fresh access token, or try again later. */
function logoutVerdict(answer: GraphQLAnswer): 'ended' | 'refresh' | 'unavailable' {
  const reason = unauthenticatedReason(answer);
  if (answer.data?.logout === true || reason === 'SESSION_ENDED') return 'ended';
  return reason === 'TOKEN_EXPIRED' || reason === 'TOKEN_INVALID' ? 'refresh' : 'unavailable';
}

/** The `extensions.reason` of an UNAUTHENTICATED error in `result`, if any. */
function unauthenticatedReason(result: ApolloLink.Result | GraphQLAnswer): string | undefined {
  const errors = 'errors' in result ? (result.errors as GraphQLAnswer['errors']) : undefined;
  const error = errors?.find((entry) => entry.extensions?.code === 'UNAUTHENTICATED');
  return typeof error?.extensions?.reason === 'string' ? error.extensions.reason : undefined;
}

/** Runs `work` holding the browser-wide lock `name` (Web Locks), or directly where there are none. */
function withLock<T>(name: string, work: () => Promise<T>): Promise<T> {
  const locks = typeof navigator === 'undefined' ? undefined : navigator.locks;
  return locks ? (locks.request(name, work) as Promise<T>) : work();
}

/**
 * localStorage where the page may use it, else `null`. Merely reading `localStorage` throws where
 * storage is blocked (sandboxed or third-party iframes, some privacy settings).
 */
function defaultStorage(): Storage | null {
  try {
    return typeof localStorage === 'undefined' ? null : localStorage;
  } catch {
    return null;
  }
}

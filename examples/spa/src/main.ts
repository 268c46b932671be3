import { ApolloClient, ApolloLink, CombinedGraphQLErrors, HttpLink, InMemoryCache } from '@apollo/client';
import { Auth, type AuthState } from './auth.js';
import { ForgotPasswordMutation, LoginMutation, MeQuery, RegisterMutation, RevokeSessionMutation, SessionsQuery, VerifyEmailMutation } from './operations.js';

const GRAPHQL_URL = import.meta.env.VITE_GRAPHQL_URL ?? 'http://localhost:4000/graphql';

// The whole client set-up: the auth module's link in front of an HttpLink that sends the cookie.
const auth = new Auth({ uri: GRAPHQL_URL });
const client = new ApolloClient({
  link: ApolloLink.from([auth.link, new HttpLink(auth.httpOptions)]),
  cache: new InMemoryCache(),
  defaultOptions: { query: { fetchPolicy: 'network-only' } },
});

const element = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const status = element<HTMLParagraphElement>('state');
const message = element<HTMLParagraphElement>('message');

const SIGNED_OUT_TEXT: Record<string, string> = {
  NO_SESSION: 'Signed out.',
  SIGNED_OUT: 'Signed out.',
  UNREACHABLE: 'Signed out: the server cannot be reached right now.',
  SESSION_ENDED: 'Signed out: this session has ended. Sign in again.',
  TOKEN_INVALID: 'Signed out. Sign in again.',
};
const SIGN_OUT_PENDING_TEXT = 'Signed out on this device. The server has not confirmed it yet: it is told as soon as it can be reached.';

/** Shows what the server said when an operation failed. */
function explain(error: unknown): void {
  message.textContent = CombinedGraphQLErrors.is(error) ? error.errors.map((entry) => entry.message).join(' ') : String(error);
}

/** Runs a form's action with its fields, showing a failure instead of throwing. */
function onSubmit(id: string, action: (fields: Record<string, string>) => Promise<void>): void {
  const form = element<HTMLFormElement>(id);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const fields = Object.fromEntries([...new FormData(form)].map(([key, value]) => [key, String(value)]));
    message.textContent = '';
    action(fields).then(() => form.reset(), explain);
  });
}

async function showAccount(): Promise<void> {
  element('profile').textContent = 'Loading…';
  element('sessions').replaceChildren();
  const [{ data: me }, { data: sessions }] = await Promise.all([client.query({ query: MeQuery }), client.query({ query: SessionsQuery })]);
  if (!me || !sessions) return;
  element('profile').textContent = `${me.me.email} (${me.me.username})${me.me.emailVerified ? ', email verified' : ', email not verified yet'}`;
  element('verify').hidden = me.me.emailVerified;
  const list = element<HTMLUListElement>('sessions');
  list.replaceChildren(
    ...sessions.sessions.map((session) => {
      const item = document.createElement('li');
      item.textContent = `${session.current ? 'This device' : 'Other device'} — since ${new Date(session.createdAt).toLocaleString()} `;
      if (!session.current) {
        const revoke = document.createElement('button');
        revoke.type = 'button';
        revoke.textContent = 'Sign out that device';
        revoke.addEventListener('click', () => {
          client.mutate({ mutation: RevokeSessionMutation, variables: { id: session.id } }).then(showAccount, explain);
        });
        item.append(revoke);
      }
      return item;
    }),
  );
}

function render(state: AuthState): void {
  element('signed-in').hidden = state.status !== 'signed-in';
  element('signed-out').hidden = state.status !== 'signed-out';
  if (state.status === 'signed-in') {
    status.textContent = 'Signed in.';
    showAccount().catch(explain);
  } else if (state.status === 'signed-out') {
    status.textContent = state.signOutPending ? SIGN_OUT_PENDING_TEXT : (SIGNED_OUT_TEXT[state.reason] ?? 'Signed out.');
    element('sign-out-pending').hidden = !state.signOutPending;
    void client.clearStore();
  }
}

// `signal` aborts the mutation when the server has not answered in time (the module's requestTimeoutSeconds).
onSubmit('register', async ({ email = '', username = '', password = '' }) => {
  const input = { email, username, password };
  await auth.signIn(async (signal) => (await client.mutate({ mutation: RegisterMutation, variables: { input }, context: { fetchOptions: { signal } } })).data?.register);
});

onSubmit('login', async ({ identifier = '', password = '' }) => {
  const input = { identifier, password, deviceToken: auth.deviceToken() };
  await auth.signIn(async (signal) => (await client.mutate({ mutation: LoginMutation, variables: { input }, context: { fetchOptions: { signal } } })).data?.login);
});

onSubmit('forgot', async ({ identifier = '' }) => {
  await client.mutate({ mutation: ForgotPasswordMutation, variables: { input: { identifier } } });
  message.textContent = 'If the account exists, a reset link is on its way.';
});

onSubmit('verify', async ({ code = '' }) => {
  await client.mutate({ mutation: VerifyEmailMutation, variables: { code } });
  await showAccount();
});

element('reload-profile').addEventListener('click', () => showAccount().catch(explain));
element('refresh').addEventListener('click', () => {
  auth.refresh().then((outcome) => {
    message.textContent = outcome === 'ok' ? 'Tokens refreshed.' : 'Could not refresh.';
  }, explain);
});
// The status line says whether the server has confirmed a sign-out; until it has, the module keeps
// trying (back online, the next operation, the next start), and this button tries at once.
element('sign-out').addEventListener('click', () => {
  message.textContent = '';
  auth.signOut().catch(explain);
});
element('finish-sign-out').addEventListener('click', () => {
  message.textContent = '';
  auth.signOut().then((confirmed) => {
    if (!confirmed) message.textContent = 'The server still cannot be reached.';
  }, explain);
});

auth.subscribe(render);
void auth.restore();

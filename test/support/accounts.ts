import { randomBytes } from 'node:crypto';
import type { TestServer } from './server.js';

/** The fields of AuthPayload most tests need. */
export interface SignedInAccount {
  accessToken: string;
  refreshToken: string;
  deviceToken: string;
  user: { id: string; email: string; username: string; role: string };
  /** The password the account was registered with. */
  password: string;
}

/** Selection of AuthPayload shared by register, login and refreshToken calls in tests. */
export const AUTH_PAYLOAD_FIELDS = 'accessToken accessTokenExpiresAt refreshToken refreshTokenExpiresAt deviceToken user { id email username role active emailVerified }';

export const REGISTER = `mutation Register($input: RegisterInput!) { register(input: $input) { ${AUTH_PAYLOAD_FIELDS} } }`;
export const LOGIN = `mutation Login($input: LoginInput!) { login(input: $input) { ${AUTH_PAYLOAD_FIELDS} } }`;
export const REFRESH = `mutation Refresh($refreshToken: String!) { refreshToken(refreshToken: $refreshToken) { ${AUTH_PAYLOAD_FIELDS} } }`;
export const ME = '{ me { id email username role } }';
export const FORGOT_PASSWORD = 'mutation Forgot($input: ForgotPasswordInput!) { forgotPassword(input: $input) }';
export const RESET_PASSWORD = 'mutation Reset($input: ResetPasswordInput!) { resetPassword(input: $input) }';
export const CHANGE_PASSWORD = 'mutation Change($input: ChangePasswordInput!) { changePassword(input: $input) }';
/** Session and account documents several test files send. */
export const SESSIONS = '{ sessions { id current } }';
export const LOGOUT_ALL = 'mutation { logoutAll }';
export const REVOKE_SESSION = 'mutation Revoke($id: ID!) { revokeSession(id: $id) }';
export const DELETE_ME = 'mutation DeleteMe($password: String!) { deleteMe(password: $password) }';
export const DELETE_USER = 'mutation DeleteUser($id: ID!) { deleteUser(id: $id) }';
export const UPDATE_USER = 'mutation UpdateUser($id: ID!, $input: UpdateUserInput!) { updateUser(id: $id, input: $input) { id role active } }';

/**
 * The start-up admin of test servers started with these variables. (The password must pass the
 * policy, so it may not contain "root" or "admin", the email's local part and the username.)
 */
export const START_UP_ADMIN = { ADMIN_EMAIL: 'root@example.test', ADMIN_PASSWORD: 'quiet lantern over the fjord 7' } as const;

let addressCounter = 0;
/**
 * An `X-Forwarded-For` header with an address no other call of this test file has used: with
 * TRUST_PROXY=1 each call then speaks from an address of its own, as a botnet would, so per-IP
 * limits never couple one call to another.
 */
export function fromFreshAddress(): Record<string, string> {
  addressCounter += 1;
  return { 'x-forwarded-for': `10.${Math.floor(addressCounter / 62_500) % 250}.${Math.floor(addressCounter / 250) % 250}.${(addressCounter % 250) + 1}` };
}

/** A unique, valid set of registration fields. */
export function newAccountInput(overrides: Record<string, unknown> = {}) {
  const suffix = randomBytes(4).toString('hex');
  return {
    email: `user-${suffix}@example.com`,
    username: `user_${suffix}`,
    password: `a long passphrase ${suffix}`,
    ...overrides,
  };
}

/** Registers a fresh account through the API and returns its tokens; fails the test if registration fails. */
export async function registerAccount(server: TestServer, overrides: Record<string, unknown> = {}): Promise<SignedInAccount> {
  const input = newAccountInput(overrides);
  const response = await server.graphql(REGISTER, { input });
  if (!response.data?.register) throw new Error(`register failed: ${JSON.stringify(response.errors)}`);
  return { ...response.data.register, password: input.password as string };
}

/** Signs in the start-up admin of a server started with {@link START_UP_ADMIN}; returns its access token. */
export async function startUpAdminToken(server: TestServer): Promise<string> {
  const response = await server.graphql(LOGIN, { input: { identifier: START_UP_ADMIN.ADMIN_EMAIL, password: START_UP_ADMIN.ADMIN_PASSWORD } });
  if (!response.data?.login) throw new Error(`admin login failed: ${JSON.stringify(response.errors)}`);
  return response.data.login.accessToken;
}

/** How long each of the account's one-time tokens of `purpose` was issued for (expires_at − created_at), in ms. */
export async function tokenLifetimesOf(server: TestServer, userId: string, purpose: string): Promise<number[]> {
  const rows = await server.sql<{ created_at: Date | string; expires_at: Date | string }>('select "created_at", "expires_at" from "one_time_tokens" where "user_id" = ? and "purpose" = ?', [userId, purpose]);
  return rows.map((row) => new Date(row.expires_at).getTime() - new Date(row.created_at).getTime());
}

/** The audit events of one account, newest first, as an admin reads them. */
export async function auditEventsOf(server: TestServer, adminToken: string, userId: string): Promise<Array<{ type: string; userId: string | null; actorId: string | null; detail: string | null }>> {
  const response = await server.graphql('query Audit($userId: ID) { auditEvents(first: 100, userId: $userId) { edges { node { type userId actorId detail } } } }', { userId }, { token: adminToken });
  if (!response.data) throw new Error(`auditEvents failed: ${JSON.stringify(response.errors)}`);
  return response.data.auditEvents.edges.map((edge: { node: { type: string; userId: string | null; actorId: string | null; detail: string | null } }) => edge.node);
}

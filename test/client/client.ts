/**
 * A small typed client of the user server, the way a frontend writes one: every operation is in
 * operations.graphql, and every parameter and result type comes from the code that GraphQL Code
 * Generator (client preset, strictScalars, DateTimeISO → string) generates into ./generated/ —
 * nothing here is typed by hand. test/codegen.test.ts generates the code, type-checks this file
 * strictly and then runs it against a real server.
 */
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print } from 'graphql';
import {
  ForgotPasswordDocument,
  type ForgotPasswordMutationVariables,
  LoginDocument,
  type LoginMutation,
  type LoginMutationVariables,
  MeDocument,
  type MeQuery,
  RegisterDocument,
  type RegisterMutation,
  type RegisterMutationVariables,
  ResetPasswordDocument,
  type ResetPasswordMutationVariables,
  UsersPageDocument,
  type UsersPageQuery,
  type UsersPageQueryVariables,
} from './generated/graphql.js';

/** One entry of a GraphQL response's `errors`. */
export interface GraphQLErrorEntry {
  message: string;
  path?: ReadonlyArray<string | number>;
  extensions?: { code?: string; field?: string; retryAfter?: number; [key: string]: unknown };
}

/** The server answered with errors (or without data); `code` is the first error's `extensions.code`. */
export class GraphQLRequestError extends Error {
  constructor(
    readonly status: number,
    readonly errors: readonly GraphQLErrorEntry[],
  ) {
    super(errors[0]?.message ?? `GraphQL request failed with HTTP ${status}`);
    this.name = 'GraphQLRequestError';
  }

  get code(): string | undefined {
    return this.errors[0]?.extensions?.code;
  }
}

const printed = new WeakMap<object, string>();

/**
 * Sends one operation as `POST application/json` (which also satisfies the server's CSRF
 * prevention) and returns its `data`, typed by the document; throws GraphQLRequestError on errors.
 */
export async function request<TResult, TVariables>(
  endpoint: string,
  document: TypedDocumentNode<TResult, TVariables>,
  variables: TVariables,
  token?: string,
  fetchFn: typeof fetch = fetch,
): Promise<TResult> {
  let query = printed.get(document);
  if (query === undefined) {
    query = print(document);
    printed.set(document, query);
  }
  const response = await fetchFn(endpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json, application/json;q=0.9',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify({ query, variables }),
  });
  let body: { data?: TResult | null; errors?: GraphQLErrorEntry[] };
  try {
    body = (await response.json()) as typeof body;
  } catch {
    throw new GraphQLRequestError(response.status, [{ message: `HTTP ${response.status} without a JSON body` }]);
  }
  if (body.errors?.length || body.data == null) throw new GraphQLRequestError(response.status, body.errors ?? []);
  return body.data;
}

/** The user server's operations as typed functions. */
export interface UserClient {
  register(input: RegisterMutationVariables['input']): Promise<RegisterMutation['register']>;
  login(input: LoginMutationVariables['input']): Promise<LoginMutation['login']>;
  me(token: string): Promise<MeQuery['me']>;
  forgotPassword(input: ForgotPasswordMutationVariables['input']): Promise<boolean>;
  resetPassword(input: ResetPasswordMutationVariables['input']): Promise<boolean>;
  /** Admins only. */
  usersPage(variables: UsersPageQueryVariables, token: string): Promise<UsersPageQuery['users']>;
}

/** A client of the GraphQL endpoint at `endpoint` (e.g. `https://api.example.com/graphql`). */
export function createUserClient(endpoint: string, fetchFn: typeof fetch = fetch): UserClient {
  return {
    async register(input) {
      return (await request(endpoint, RegisterDocument, { input }, undefined, fetchFn)).register;
    },
    async login(input) {
      return (await request(endpoint, LoginDocument, { input }, undefined, fetchFn)).login;
    },
    async me(token) {
      return (await request(endpoint, MeDocument, {}, token, fetchFn)).me;
    },
    async forgotPassword(input) {
      return (await request(endpoint, ForgotPasswordDocument, { input }, undefined, fetchFn)).forgotPassword;
    },
    async resetPassword(input) {
      return (await request(endpoint, ResetPasswordDocument, { input }, undefined, fetchFn)).resetPassword;
    },
    async usersPage(variables, token) {
      return (await request(endpoint, UsersPageDocument, variables, token, fetchFn)).users;
    },
  };
}

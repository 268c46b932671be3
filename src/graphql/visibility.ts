import type { ApolloServerPlugin, GraphQLRequestListener, GraphQLResponse } from '@apollo/server';
import { HeaderMap } from '@apollo/server';
import { BREAK, type DocumentNode, type FragmentDefinitionNode, type GraphQLFormattedError, GraphQLError, Kind, OperationTypeNode, type SelectionSetNode, visit } from 'graphql';
import { getMetadataStorage } from 'type-graphql';
import { ErrorCode } from '../errors.js';
import type { AppContext } from './context.js';
import { INTROSPECTION_DISABLED, INVALID_OPERATION } from './errors.js';

/** Root fields (`Query.users`, `Mutation.createUser`) that `@Authorized(role…)` limits to some roles. */
export interface RoleLimitedFields {
  query: ReadonlyMap<string, readonly string[]>;
  mutation: ReadonlyMap<string, readonly string[]>;
}

/** The role-limited root fields, as type-graphql recorded them while the schema was built. */
export function roleLimitedFields(): RoleLimitedFields {
  const limited = (fields: ReadonlyArray<{ schemaName: string; roles?: unknown[] }>) =>
    new Map(fields.filter((field) => (field.roles?.length ?? 0) > 0).map((field) => [field.schemaName, field.roles!.map(String)]));
  const metadata = getMetadataStorage();
  return { query: limited(metadata.queries), mutation: limited(metadata.mutations) };
}

/** The roles each role-limited root field of every operation in a document needs, through fragments and inline fragments. */
function rolesNeededBy(document: DocumentNode, fields: RoleLimitedFields): ReadonlyArray<readonly string[]> {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  const needed: Array<readonly string[]> = [];
  for (const definition of document.definitions) {
    if (definition.kind !== Kind.OPERATION_DEFINITION) continue;
    // Subscriptions are refused by validation (limits.ts); nothing limits them here.
    const limited = definition.operation === OperationTypeNode.QUERY ? fields.query : definition.operation === OperationTypeNode.MUTATION ? fields.mutation : undefined;
    if (!limited || limited.size === 0) continue;
    const visited = new Set<string>();
    const walk = (selectionSet: SelectionSetNode) => {
      for (const selection of selectionSet.selections) {
        if (selection.kind === Kind.FIELD) {
          const roles = limited.get(selection.name.value);
          if (roles) needed.push(roles);
        } else if (selection.kind === Kind.INLINE_FRAGMENT) walk(selection.selectionSet);
        else if (!visited.has(selection.name.value) && fragments.has(selection.name.value)) {
          visited.add(selection.name.value);
          walk(fragments.get(selection.name.value)!.selectionSet);
        }
      }
    };
    walk(definition.selectionSet);
  }
  return needed;
}

/** Whether a document selects `__schema` or `__type` anywhere: what Apollo's introspection refusal looks for, read from the text alone. */
function asksIntrospection(document: DocumentNode | undefined): boolean {
  let found = false;
  if (document) {
    visit(document, {
      Field(node) {
        if (node.name.value !== '__schema' && node.name.value !== '__type') return undefined;
        found = true;
        return BREAK;
      },
    });
  }
  return found;
}

const DONE = Promise.resolve();

/** Drops repeated errors, keeping the first of each. */
function withoutRepeats(errors: readonly GraphQLFormattedError[]): GraphQLFormattedError[] {
  const seen = new Set<string>();
  return errors.filter((error) => {
    const key = JSON.stringify(error);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** An error the formatter made generic (errors.ts): validation, variable coercion, or a field hidden here. */
const isGeneric = (error: GraphQLFormattedError) =>
  (error.message === INVALID_OPERATION || error.message === INTROSPECTION_DISABLED) && error.extensions?.code === ErrorCode.BAD_USER_INPUT;

/**
 * Production's rules for answers, on top of the error formatter's generic message:
 *
 * - A root field the caller's role may not use answers exactly like a field that does not exist,
 *   so probing names (clairvoyance) cannot tell `auditEvents` from `auditEventz` without an admin's
 *   token (an admin's expired or ended token gets UNAUTHENTICATED with its reason). Validation
 *   covers every operation of a document, so the limits do too: a document holding a limited field
 *   in any operation or fragment is refused, whichever operation was selected (else an admin-only
 *   operation next to a harmless selected one would pass for real names and fail for made-up ones).
 *   The document is refused before anything executes, as a validation failure would be (and is then
 *   formatted into the same message). A mutation over GET, which Apollo refuses with 405 before
 *   this check, gets the same refusal. Development keeps FORBIDDEN, which says more.
 * - A document refused before execution gets exactly one error: a known field used wrongly can fail
 *   two validation rules where an unknown one fails one, a real name next to `__type` leaves the
 *   introspection refusal alone where a made-up one adds a second error, and validation stops
 *   counting at 100 errors. The one error says "Introspection is disabled." when the document asks
 *   for `__schema` or `__type` (read from the text, not from which errors validation found), else
 *   the generic message. Other answers only lose repeated errors.
 */
export function productionAnswersPlugin(fields: RoleLimitedFields): ApolloServerPlugin<AppContext> {
  // Apollo keeps parsed documents, so each document node recurs: its limited roles are worked out once.
  const rolesNeeded = new WeakMap<DocumentNode, ReadonlyArray<readonly string[]>>();
  const limitsOf = (document: DocumentNode) => {
    let needed = rolesNeeded.get(document);
    if (!needed) {
      needed = rolesNeededBy(document, fields);
      rolesNeeded.set(document, needed);
    }
    return needed;
  };
  /**
   * Whether the caller may not use every limited field: at once, or after looking up the account of
   * an expired or ended token. An admin's own such token reaches the resolvers, which answer
   * UNAUTHENTICATED with the reason (refresh, or sign in again); anyone else's token, or none, sees
   * the fields as missing. A user's token tells them nothing either way.
   */
  const refuses = (limits: ReadonlyArray<readonly string[]>, context: AppContext): boolean | Promise<boolean> => {
    const role = context.viewer?.user.role;
    if (role !== undefined) return limits.some((roles) => !roles.includes(role));
    const formerViewer = context.formerViewerId;
    if (formerViewer === null) return true;
    return context.services.users.findById(context.em, formerViewer).then((user) => !user || limits.some((roles) => !roles.includes(user.role)));
  };
  const hidden = () =>
    new GraphQLError('Field not visible to this caller.', { extensions: { code: 'GRAPHQL_VALIDATION_FAILED', http: { status: 400, headers: new HeaderMap() } } });
  /** The one error of a document refused before execution. */
  const refusal = (document: DocumentNode | undefined): GraphQLFormattedError[] => [
    { message: asksIntrospection(document) ? INTROSPECTION_DISABLED : INVALID_OPERATION, extensions: { code: ErrorCode.BAD_USER_INPUT } },
  ];
  /** Turns Apollo's 405 for a mutation over GET into the refusal of a document that does not validate. */
  const answerAsHidden = (response: GraphQLResponse) => {
    response.http.status = 400;
    response.http.headers.delete('allow');
    if (response.body.kind === 'single') response.body.singleResult.errors = refusal(undefined);
  };
  // One listener for every request, and settled promises where there is nothing to wait for: this
  // runs on every request, and each promise costs (see BENCHMARKS.md).
  const listener: GraphQLRequestListener<AppContext> = {
    didResolveOperation({ document, contextValue }) {
      const limits = limitsOf(document);
      if (limits.length === 0) return DONE;
      const refused = refuses(limits, contextValue);
      if (refused === true) return Promise.reject(hidden());
      if (refused === false) return DONE;
      return refused.then((yes) => {
        if (yes) throw hidden();
      });
    },
    willSendResponse({ response, request, document, contextValue }) {
      if (response.body.kind !== 'single') return DONE;
      const result = response.body.singleResult;
      const errors = result.errors;
      if (!errors) return DONE;
      // Apollo refuses a mutation over GET (405, `Allow: POST`) before didResolveOperation: for a
      // document with limited fields that would tell real names (405) from made-up ones (400).
      if (response.http.status === 405 && request.http?.method === 'GET' && document) {
        const limits = limitsOf(document);
        const refused = limits.length === 0 ? false : refuses(limits, contextValue);
        if (refused === true) answerAsHidden(response);
        else if (refused !== false) return refused.then((yes) => (yes ? answerAsHidden(response) : undefined));
        return DONE;
      }
      result.errors = result.data === undefined && errors.every(isGeneric) ? refusal(document) : withoutRepeats(errors);
      return DONE;
    },
  };
  const started = Promise.resolve(listener);
  return { requestDidStart: () => started };
}

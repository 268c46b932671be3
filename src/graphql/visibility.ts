import type { ApolloServerPlugin, GraphQLRequestListener } from '@apollo/server';
import { HeaderMap } from '@apollo/server';
import { type DocumentNode, type FragmentDefinitionNode, type GraphQLFormattedError, GraphQLError, Kind, type OperationDefinitionNode, type SelectionSetNode } from 'graphql';
import { getMetadataStorage } from 'type-graphql';
import type { AppContext } from './context.js';

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

/** The root field names an operation selects, through fragments and inline fragments. */
function rootFieldNames(operation: OperationDefinitionNode, document: DocumentNode): Set<string> {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  const names = new Set<string>();
  const visited = new Set<string>();
  const walk = (selectionSet: SelectionSetNode) => {
    for (const selection of selectionSet.selections) {
      if (selection.kind === Kind.FIELD) names.add(selection.name.value);
      else if (selection.kind === Kind.INLINE_FRAGMENT) walk(selection.selectionSet);
      else if (!visited.has(selection.name.value) && fragments.has(selection.name.value)) {
        visited.add(selection.name.value);
        walk(fragments.get(selection.name.value)!.selectionSet);
      }
    }
  };
  walk(operation.selectionSet);
  return names;
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

/**
 * Production's two rules for answers, on top of the error formatter's generic message:
 *
 * - A root field the caller's role may not use answers exactly like a field that does not exist,
 *   so probing names (clairvoyance) cannot tell `auditEvents` from `auditEventz` without an admin's
 *   token (an admin's expired or ended token gets UNAUTHENTICATED with its reason). The document is refused before anything executes, as a validation failure would be (and
 *   is then formatted into the same message). Development keeps FORBIDDEN, which says more.
 * - Identical errors are sent once: a known field used wrongly can fail two validation rules (no
 *   selection, a missing argument) where an unknown one fails one; made generic, they must not
 *   differ in number either.
 */
export function productionAnswersPlugin(fields: RoleLimitedFields): ApolloServerPlugin<AppContext> {
  // Apollo keeps parsed documents, so each operation node recurs: its limited roles are worked out once.
  const rolesNeeded = new WeakMap<OperationDefinitionNode, ReadonlyArray<readonly string[]>>();
  const limitsOf = (operation: OperationDefinitionNode, document: DocumentNode) => {
    let needed = rolesNeeded.get(operation);
    if (!needed) {
      const limited = operation.operation === 'query' ? fields.query : operation.operation === 'mutation' ? fields.mutation : new Map<string, readonly string[]>();
      needed = [...rootFieldNames(operation, document)].flatMap((name) => (limited.has(name) ? [limited.get(name)!] : []));
      rolesNeeded.set(operation, needed);
    }
    return needed;
  };
  const hidden = () =>
    new GraphQLError('Field not visible to this caller.', { extensions: { code: 'GRAPHQL_VALIDATION_FAILED', http: { status: 400, headers: new HeaderMap() } } });
  // One listener for every request, and settled promises where there is nothing to wait for: this
  // runs on every request, and each promise costs (see BENCHMARKS.md).
  const listener: GraphQLRequestListener<AppContext> = {
    didResolveOperation({ operation, document, contextValue }) {
      if (!operation) return DONE;
      const limits = limitsOf(operation, document);
      if (limits.length === 0) return DONE;
      const role = contextValue.viewer?.user.role;
      if (role !== undefined) return limits.some((roles) => !roles.includes(role)) ? Promise.reject(hidden()) : DONE;
      // No viewer. An admin's own token that expired or whose session ended reaches the resolvers,
      // which answer UNAUTHENTICATED with the reason (refresh, or sign in again); anyone else's
      // token, or none, sees the fields as missing. A user's token tells them nothing either way.
      const formerViewer = contextValue.formerViewerId;
      if (formerViewer === null) return Promise.reject(hidden());
      return contextValue.services.users.findById(contextValue.em, formerViewer).then((user) => {
        if (!user || limits.some((roles) => !roles.includes(user.role))) throw hidden();
      });
    },
    willSendResponse({ response }) {
      if (response.body.kind === 'single' && response.body.singleResult.errors) {
        response.body.singleResult.errors = withoutRepeats(response.body.singleResult.errors);
      }
      return DONE;
    },
  };
  const started = Promise.resolve(listener);
  return { requestDidStart: () => started };
}

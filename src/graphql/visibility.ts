import type { ApolloServerPlugin } from '@apollo/server';
import { HeaderMap } from '@apollo/server';
import { type FragmentDefinitionNode, GraphQLError, Kind, type OperationDefinitionNode, type SelectionSetNode } from 'graphql';
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
function rootFieldNames(operation: OperationDefinitionNode, fragments: Record<string, FragmentDefinitionNode>): Set<string> {
  const names = new Set<string>();
  const visited = new Set<string>();
  const walk = (selectionSet: SelectionSetNode) => {
    for (const selection of selectionSet.selections) {
      if (selection.kind === Kind.FIELD) names.add(selection.name.value);
      else if (selection.kind === Kind.INLINE_FRAGMENT) walk(selection.selectionSet);
      else if (!visited.has(selection.name.value) && fragments[selection.name.value]) {
        visited.add(selection.name.value);
        walk(fragments[selection.name.value].selectionSet);
      }
    }
  };
  walk(operation.selectionSet);
  return names;
}

/**
 * Production: a root field the caller's role may not use answers exactly like a field that does
 * not exist, so probing names (clairvoyance) cannot tell `auditEvents` from `auditEventz` without
 * an admin's token. The document is refused before anything executes, as a validation failure
 * would be (and then formatted into the same generic message). Development keeps FORBIDDEN, which
 * says more.
 */
export function roleVisibilityPlugin(fields: RoleLimitedFields): ApolloServerPlugin<AppContext> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation({ operation, document, contextValue }) {
          const limited = operation?.operation === 'query' ? fields.query : operation?.operation === 'mutation' ? fields.mutation : null;
          if (!operation || !limited || limited.size === 0) return;
          const role = contextValue.viewer?.user.role;
          const fragments = Object.fromEntries(
            document.definitions.filter((definition) => definition.kind === Kind.FRAGMENT_DEFINITION).map((fragment) => [fragment.name.value, fragment]),
          );
          for (const name of rootFieldNames(operation, fragments)) {
            const roles = limited.get(name);
            if (roles && (role === undefined || !roles.includes(role))) {
              throw new GraphQLError('Field not visible to this caller.', {
                extensions: { code: 'GRAPHQL_VALIDATION_FAILED', http: { status: 400, headers: new HeaderMap() } },
              });
            }
          }
        },
      };
    },
  };
}

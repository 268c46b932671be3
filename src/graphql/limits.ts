import { costLimitRule } from '@escape.tech/graphql-armor-cost-limit';
import { maxAliasesRule } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import { maxDirectivesRule } from '@escape.tech/graphql-armor-max-directives';
import { GraphQLError, type ValidationContext, type ValidationRule } from 'graphql';
import type { QueryLimits } from '../config/config.js';

/**
 * Validation rules (GraphQL Armor) that refuse oversized documents before any resolver or database
 * call: nesting depth, aliases (one document must not become a thousand login attempts), directives,
 * and a cost estimate. Sandbox's introspection query is exempt from depth and cost (it is refused
 * altogether in production). The token limit is applied by the parser itself (`parseOptions`).
 */
export function queryLimitRules(limits: QueryLimits, exposeLimits: boolean): ValidationRule[] {
  // Armor throws by default, which Apollo would treat as a crash; reporting the error makes it an
  // ordinary validation failure (BAD_USER_INPUT) instead.
  const reporting = { exposeLimits, propagateOnRejection: false, onReject: [reportAsValidationError] };
  return [
    maxDepthRule({ n: limits.maxDepth, ignoreIntrospection: true, ...reporting }),
    // Armor lets any number of `__typename` aliases through by default; they count like any other.
    maxAliasesRule({ n: limits.maxAliases, allowList: [], ...reporting }),
    maxDirectivesRule({ n: limits.maxDirectives, ...reporting }),
    costLimitRule({ maxCost: limits.maxCost, ignoreIntrospection: true, ...reporting }),
    operationTypesServed,
  ] as ValidationRule[];
}

/**
 * Refuses an operation type the schema does not serve (a `subscription`): graphql-js validates it
 * and only execution fails, which would answer a client's mistake as an internal error.
 */
const operationTypesServed: ValidationRule = (context) => ({
  OperationDefinition(node) {
    if (!context.getSchema().getRootType(node.operation)) context.reportError(new GraphQLError(`This API serves no ${node.operation} operations.`, { nodes: node }));
  },
});

function reportAsValidationError(context: ValidationContext | null, error: GraphQLError): void {
  context?.reportError(new GraphQLError(error.message.replace(/^Syntax Error: /, '')));
}

/**
 * How deep brackets, braces and parentheses may nest in a document. graphql-js parses and validates
 * recursively: within the 2000-token limit, `[[[[…` a thousand deep overflowed the parser's stack
 * (and came back as a syntax error). Legitimate documents nest far less, even a selection as deep
 * as the largest GRAPHQL_MAX_DEPTH (100) with input objects in its arguments.
 */
export const MAX_NESTING = 200;

/**
 * Whether `source` nests `{`, `[` or `(` more than `max` levels deep, outside strings, block strings
 * and comments. One pass over the text, before the parser sees it.
 */
export function nestsTooDeeply(source: string, max = MAX_NESTING): boolean {
  let depth = 0;
  for (let index = 0; index < source.length; index += 1) {
    const character = source[index];
    if (character === '#') {
      while (index < source.length && source[index] !== '\n' && source[index] !== '\r') index += 1;
    } else if (character === '"') {
      if (source.startsWith('"""', index)) {
        index += 3;
        while (index < source.length && !source.startsWith('"""', index)) index += source.startsWith('\\"""', index) ? 4 : 1;
        index += 2;
      } else {
        index += 1;
        while (index < source.length && source[index] !== '"' && source[index] !== '\n') index += source[index] === '\\' ? 2 : 1;
      }
    } else if (character === '{' || character === '[' || character === '(') {
      depth += 1;
      if (depth > max) return true;
    } else if (character === '}' || character === ']' || character === ')') {
      depth -= 1;
    }
  }
  return false;
}

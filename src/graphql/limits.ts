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
    maxAliasesRule({ n: limits.maxAliases, ...reporting }),
    maxDirectivesRule({ n: limits.maxDirectives, ...reporting }),
    costLimitRule({ maxCost: limits.maxCost, ignoreIntrospection: true, ...reporting }),
  ] as ValidationRule[];
}

function reportAsValidationError(context: ValidationContext | null, error: GraphQLError): void {
  context?.reportError(new GraphQLError(error.message.replace(/^Syntax Error: /, '')));
}

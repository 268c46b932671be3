import 'reflect-metadata';
import { join } from 'node:path';
import { GraphQLObjectType, GraphQLSchema, lexicographicSortSchema, printSchema } from 'graphql';
import { PROJECT_ROOT } from '../config/paths.js';
import { buildSchema } from 'type-graphql';
import { AuditResolver } from '../modules/audit/audit.resolver.js';
import { AuthResolver } from '../modules/sign-in/auth.resolver.js';
import { EmailChangeResolver } from '../modules/email-change/email-change.resolver.js';
import { LockdownResolver } from '../modules/lockdown/lockdown.resolver.js';
import { MfaResolver } from '../modules/mfa/mfa.resolver.js';
import { RecoveryResolver } from '../modules/recovery/recovery.resolver.js';
import { UserResolver } from '../modules/users/user.resolver.js';
import { VerificationResolver } from '../modules/verification/verification.resolver.js';
import { WebhookResolver } from '../modules/webhooks/webhook.resolver.js';
import { authChecker } from './auth-checker.js';
import { ErrorCodeType, UnauthenticatedReasonType } from './errors.js';
import { guardArguments } from './input-boundary.js';

/** Builds the executable schema: the resolvers, the role gate, and the ErrorCode and UnauthenticatedReason enums. */
export async function buildAppSchema(): Promise<GraphQLSchema> {
  const schema = await buildSchema({
    resolvers: [AuthResolver, RecoveryResolver, VerificationResolver, UserResolver, MfaResolver, EmailChangeResolver, LockdownResolver, AuditResolver, WebhookResolver],
    authChecker,
    // Input rules live in the services (normalization first, then checks), not in decorators.
    validate: false,
  });
  const { query, mutation, types, ...config } = schema.toConfig();
  // type-graphql leaves the root types undescribed; Sandbox and codegen show these texts. Every
  // root field's arguments pass the input boundary before its resolver runs.
  const rootType = (type: GraphQLObjectType, description: string) => {
    const { fields, ...rest } = type.toConfig();
    return new GraphQLObjectType({ ...rest, description, fields: Object.fromEntries(Object.entries(fields).map(([name, field]) => [name, guardArguments(field)])) });
  };
  const describedQuery = query && rootType(query, 'Reads.');
  const describedMutation = mutation && rootType(mutation, 'Writes.');
  return new GraphQLSchema({
    ...config,
    query: describedQuery,
    mutation: describedMutation,
    types: [...types.filter((type) => type !== query && type !== mutation), ErrorCodeType, UnauthenticatedReasonType],
  });
}

/** The SDL committed as `schema.graphql` (`npm run schema`): sorted, so it changes only when the schema does. */
export async function printAppSchema(): Promise<string> {
  return `${printSchema(lexicographicSortSchema(await buildAppSchema()))}\n`;
}

/** Path of the committed schema file. */
export const SCHEMA_FILE = join(PROJECT_ROOT, 'schema.graphql');

import 'reflect-metadata';
import { join } from 'node:path';
import { GraphQLSchema, lexicographicSortSchema, printSchema } from 'graphql';
import { PROJECT_ROOT } from '../config/paths.js';
import { buildSchema } from 'type-graphql';
import { AuthResolver } from '../modules/auth/auth.resolver.js';
import { UserResolver } from '../modules/users/user.resolver.js';
import { authChecker } from './auth-checker.js';
import { ErrorCodeType } from './errors.js';

/** Builds the executable schema: the resolvers, the role gate, and the ErrorCode enum. */
export async function buildAppSchema(): Promise<GraphQLSchema> {
  const schema = await buildSchema({
    resolvers: [AuthResolver, UserResolver],
    authChecker,
    // Input rules live in the services (normalization first, then checks), not in decorators.
    validate: false,
  });
  const config = schema.toConfig();
  return new GraphQLSchema({ ...config, types: [...config.types, ErrorCodeType] });
}

/** The SDL committed as `schema.graphql` (`npm run schema`): sorted, so it changes only when the schema does. */
export async function printAppSchema(): Promise<string> {
  return `${printSchema(lexicographicSortSchema(await buildAppSchema()))}\n`;
}

/** Path of the committed schema file. */
export const SCHEMA_FILE = join(PROJECT_ROOT, 'schema.graphql');

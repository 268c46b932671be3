import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildSchema,
  findBreakingChanges,
  type GraphQLSchema,
  isEnumType,
  isInputObjectType,
  isIntrospectionType,
  isObjectType,
  isSpecifiedScalarType,
} from 'graphql';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../src/config/paths.js';
import { buildAppSchema, printAppSchema, SCHEMA_FILE } from '../src/graphql/schema.js';

const CONTRACT_COPY = join(PROJECT_ROOT, 'test', 'fixtures', 'contract.graphql');
const SHARED_CONTRACT = join(PROJECT_ROOT, '..', 'shared', 'api', 'contract.graphql');

function missingNames(schema: GraphQLSchema): string[] {
  const missing: string[] = [];
  for (const type of Object.values(schema.getTypeMap())) {
    if (isIntrospectionType(type) || isSpecifiedScalarType(type)) continue;
    const label = type.name;
    if (!type.description) missing.push(label);
    if (isObjectType(type) || isInputObjectType(type)) {
      for (const field of Object.values(type.getFields())) {
        if (!field.description) missing.push(`${label}.${field.name}`);
        for (const arg of 'args' in field ? field.args : []) {
          if (!arg.description) missing.push(`${label}.${field.name}(${arg.name})`);
        }
      }
    }
    if (isEnumType(type)) {
      for (const value of type.getValues()) if (!value.description) missing.push(`${label}.${value.name}`);
    }
  }
  return missing;
}

describe('schema.graphql', () => {
  it('matches the schema the code builds (run `npm run schema` after changing it)', async () => {
    expect(readFileSync(SCHEMA_FILE, 'utf8')).toBe(await printAppSchema());
  });

  it('describes every type, field, argument and enum value', async () => {
    const schema = await buildAppSchema();
    expect(missingNames(schema)).toEqual([]);
  });

  it('contains the ErrorCode enum with exactly the contract codes served so far', async () => {
    const codes = (schema: GraphQLSchema) => {
      const type = schema.getType('ErrorCode');
      return isEnumType(type) ? type.getValues().map((value) => value.name).sort() : [];
    };
    // The copy of the contract grows with each part that is served (see the test below).
    expect(codes(await buildAppSchema())).toEqual(codes(buildSchema(readFileSync(CONTRACT_COPY, 'utf8'))));
  });

  it('breaks nothing of the client contract (adding is allowed; removing, renaming or requiring is not)', () => {
    const contract = buildSchema(readFileSync(CONTRACT_COPY, 'utf8'));
    const ours = buildSchema(readFileSync(SCHEMA_FILE, 'utf8'));
    expect(findBreakingChanges(contract, ours).map((change) => change.description)).toEqual([]);
  });

  // The shared contract describes where every open issue ends; the copy holds the part served so
  // far and grows as each issue lands. It may hold nothing the shared contract does not.
  it.skipIf(!existsSync(SHARED_CONTRACT))('keeps its copy of the contract a part of the shared one', () => {
    const copy = buildSchema(readFileSync(CONTRACT_COPY, 'utf8'));
    const shared = buildSchema(readFileSync(SHARED_CONTRACT, 'utf8'));
    expect(findBreakingChanges(copy, shared).map((change) => change.description)).toEqual([]);
  });
});

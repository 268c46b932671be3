import type { CodegenConfig } from '@graphql-codegen/cli';

// Types for every operation in src/, generated from the server's schema.graphql. For a server
// elsewhere, point `schema` at a copy of its schema.graphql (production servers refuse introspection).
const config: CodegenConfig = {
  schema: '../../schema.graphql',
  documents: ['src/**/*.ts', '!src/gql/**'],
  ignoreNoDocuments: false,
  generates: {
    './src/gql/': {
      preset: 'client',
      presetConfig: {
        // Fragments here only group fields for the auth module; masking would hide them from it.
        fragmentMasking: false,
      },
      config: {
        // Every custom scalar must be mapped: DateTimeISO arrives as an ISO-8601 string.
        strictScalars: true,
        scalars: { DateTimeISO: 'string' },
        enumsAsTypes: true,
        useTypeImports: true,
        // `./graphql.js` in the generated imports, for ESM resolution ("moduleResolution": "bundler" or NodeNext).
        emitLegacyCommonJSImports: false,
      },
    },
  },
};

export default config;

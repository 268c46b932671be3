/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** The user server's GraphQL endpoint, e.g. https://auth.example.com/graphql. */
  readonly VITE_GRAPHQL_URL?: string;
}

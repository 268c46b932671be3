import { defineConfig } from 'vite';

// The API's GraphQL URL is read from VITE_GRAPHQL_URL at build time (default: a server on localhost:4000).
// Serve the app from an origin listed in the server's CORS_ORIGINS.
export default defineConfig({
  server: { port: 5173, strictPort: true },
  build: { target: 'es2022' },
});

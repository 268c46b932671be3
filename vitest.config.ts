import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

const require = createRequire(import.meta.url);

export default defineConfig({
  resolve: {
    // Node loads graphql's CommonJS build for our dependencies (type-graphql, Apollo); the test
    // runner would otherwise give our own sources the .mjs build, and graphql refuses to mix the two.
    alias: [{ find: /^graphql$/, replacement: require.resolve('graphql') }],
  },
  test: {
    include: ['test/**/*.test.ts'],
    // Each file starts its own server on its own database (embedded PGlite, or a fresh database on
    // DATABASE_URL's server), so files run in parallel without sharing rows.
    pool: 'forks',
    // Vitest's default is one file fewer than there are cores: a single file at a time on two cores.
    // Most of a file's time is spent waiting (for SMTP, timers, child processes, the database), so
    // two files share two cores well: on the 2-core CI machine the suite takes less than half as long.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    testTimeout: 30_000,
    hookTimeout: 120_000,
  },
});

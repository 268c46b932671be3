import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// This file runs as src/config/paths.ts under the test runner and as dist/src/config/paths.js in
// production; either way the build root (the project, or dist/) is two folders up.
const here = dirname(fileURLToPath(import.meta.url));

/** The folder holding `src/` and `migrations/` of the code that is running: the project root or `dist/`. */
export const BUILD_ROOT = join(here, '..', '..');

/** The project's root folder (where package.json and schema.graphql live). */
export const PROJECT_ROOT = basename(BUILD_ROOT) === 'dist' ? dirname(BUILD_ROOT) : BUILD_ROOT;

/** Whether TypeScript sources run directly (the test runner) rather than the compiled build. */
export const RUNNING_FROM_SOURCE = import.meta.url.endsWith('.ts');

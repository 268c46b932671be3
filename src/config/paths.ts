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

/** What a read of one of the files kept in DATA_DIR names when it fails without naming the file. */
const KEPT_FILES = 'a file the server keeps in DATA_DIR (jwt-secret, jwt-ed25519-key.pem)';

/**
 * What an operator must fix when a file or folder in DATA_DIR (a kept secret or key, the embedded
 * database's folder) could not be used, as one line naming it; `undefined` for any other error.
 * Reading a folder as a file fails without a path: then the kept files are named.
 */
export function dataDirProblem(error: unknown): string | undefined {
  const { code, path, message } = (error ?? {}) as NodeJS.ErrnoException;
  if (typeof code !== 'string' || (typeof path !== 'string' && code !== 'EISDIR')) return undefined;
  const what = path ?? KEPT_FILES;
  switch (code) {
    case 'EISDIR':
      return `${what} is a folder, not a file: remove it, or point DATA_DIR elsewhere`;
    case 'ENOTDIR':
      return `${what} is under a file, not a folder: remove the file in the way, or point DATA_DIR elsewhere`;
    case 'EACCES':
    case 'EPERM':
      return `${what} is not accessible to this process (${code}): make it readable and writable by the user the server runs as`;
    case 'EROFS':
      return `${what} is on a read-only file system: point DATA_DIR at a writable folder`;
    default:
      return `${what} cannot be used: ${message}`;
  }
}

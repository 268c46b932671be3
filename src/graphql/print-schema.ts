// `npm run schema`: rewrites schema.graphql from the code. A test fails when the two differ.
import { writeFile } from 'node:fs/promises';
import { printAppSchema, SCHEMA_FILE } from './schema.js';

await writeFile(SCHEMA_FILE, await printAppSchema());
console.log(`wrote ${SCHEMA_FILE}`);

// Read by the MikroORM CLI (package.json "mikro-orm" → dist/mikro-orm.config.js): the same
// configuration as the app's, for generating migrations from the schema snapshot in migrations/.
import { loadConfig, processEnv } from './src/config/config.js';
import { createOrmConfig } from './src/db/orm.js';

const config = loadConfig(processEnv());

export default createOrmConfig(
  {
    // The embedded database exists only while the app runs; commands that need a live database
    // (migration:up, migration:list) take DATABASE_URL. migration:create works from the snapshot.
    clientUrl: config.databaseUrl ?? 'postgresql://postgres@embedded.invalid/app',
    poolSize: 1,
  },
  { snapshot: true },
);

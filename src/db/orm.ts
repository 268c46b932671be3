import { readdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Constructor, MigrationObject } from '@mikro-orm/core';
import { Migration, Migrator } from '@mikro-orm/migrations';
import { defineConfig, MikroORM, type Options } from '@mikro-orm/postgresql';
import { ADVISORY_LOCKS, withAdvisoryLock } from './advisory-lock.js';
import { BUILD_ROOT, PROJECT_ROOT, RUNNING_FROM_SOURCE } from '../config/paths.js';
import { RATE_LIMIT_TABLE } from '../rate-limits.js';
import { LEASE_TABLE } from './lease.js';
import { MailMessage } from '../mail/mail-message.entity.js';
import { AuditEvent } from '../modules/audit/audit-event.entity.js';
import { OneTimeToken } from '../modules/one-time-tokens/one-time-token.entity.js';
import { Session } from '../modules/sessions/session.entity.js';
import { RecoveryCode } from '../modules/mfa/recovery-code.entity.js';
import { WebhookDelivery } from '../modules/webhooks/webhook-delivery.entity.js';
import { WebhookEndpoint } from '../modules/webhooks/webhook-endpoint.entity.js';
import { WebhookMessage } from '../modules/webhooks/webhook-message.entity.js';
import { User } from '../modules/users/user.entity.js';

/** Every entity of the application, listed explicitly so discovery never depends on file globs. */
export const ENTITIES = [User, Session, OneTimeToken, RecoveryCode, MailMessage, AuditEvent, WebhookEndpoint, WebhookMessage, WebhookDelivery];

/** What differs between the app (runs migrations, logs through pino) and the CLI (writes migrations). */
export interface OrmSettings {
  /** Migrations to run, as loaded by {@link loadMigrations}. */
  migrationsList?: MigrationObject[];
  /** Keep `migrations/.snapshot.json` so the CLI can diff entities without a live database. */
  snapshot?: boolean;
  /** Where MikroORM's own messages (e.g. applied migrations) go; its default is the console. */
  log?: (message: string) => void;
}

/** How the application reaches its database. */
export interface OrmConnection {
  clientUrl: string;
  /** Connections in the pool; 1 for the embedded database. */
  poolSize: number;
  /** Whether this is the embedded database, owned by this process alone. */
  embedded?: boolean;
  /** Read replicas of `clientUrl` (`DATABASE_REPLICA_URLS`); each gets a pool of `poolSize`. */
  replicaUrls?: readonly string[];
}

/**
 * The one MikroORM configuration, shared by the app, the tests and the MikroORM CLI
 * (`mikro-orm.config.ts`). Migrations are TypeScript files in `migrations/`, compiled to
 * `dist/migrations/`; the CLI writes new ones from the schema snapshot kept beside them.
 */
export function createOrmConfig(connection: OrmConnection, settings: OrmSettings = {}): Options {
  return defineConfig({
    clientUrl: connection.clientUrl,
    entities: ENTITIES,
    baseDir: PROJECT_ROOT,
    // On a server a request waits at most 2 s for a connection: during a database outage it is
    // answered SERVICE_UNAVAILABLE then, instead of hanging for knex's default minute. The embedded
    // database cannot be "down", and its one connection may have a queue: it keeps the minute.
    pool: { min: 0, max: connection.poolSize, acquireTimeoutMillis: connection.embedded ? 60_000 : 2000 },
    // Read replicas may lag behind the primary, so nothing reads from them by default: sessions,
    // sign-in, tokens and every transaction must see the latest write. A query opts in with
    // `em.getConnection('read')` (as `keysetPage` does) only where a few seconds of lag is
    // harmless — the admin listings of users and audit events.
    preferReadReplicas: false,
    ...(connection.replicaUrls?.length ? { replicas: connection.replicaUrls.map((clientUrl) => ({ clientUrl })) } : {}),
    extensions: [Migrator],
    forceUtcTimezone: true,
    ...(settings.log ? { logger: settings.log } : {}),
    // A fresh fork per request is the rule; a global context would leak identity maps between users.
    allowGlobalContext: false,
    discovery: { disableDynamicFileAccess: true },
    // Tables kept by hand-written migrations for code that has no entity (the rate limiter, leases).
    schemaGenerator: { skipTables: [RATE_LIMIT_TABLE, LEASE_TABLE] },
    metadataCache: { enabled: false },
    migrations: {
      path: 'dist/migrations',
      pathTs: 'migrations',
      emit: 'ts',
      glob: '!(*.d).{js,ts}',
      snapshot: settings.snapshot ?? false,
      snapshotName: '.snapshot',
      transactional: true,
      allOrNothing: true,
      disableForeignKeys: false,
      migrationsList: settings.migrationsList,
    },
  });
}

/**
 * Imports the migrations of this build directly (TypeScript under the test runner, JavaScript from
 * `dist/`), so running them never depends on how MikroORM would resolve a file path at run time.
 */
export async function loadMigrations(): Promise<MigrationObject[]> {
  const folder = join(BUILD_ROOT, 'migrations');
  const extension = RUNNING_FROM_SOURCE ? '.ts' : '.js';
  const files = (await readdir(folder)).filter((file) => /^Migration\d{14}/.test(file) && file.endsWith(extension) && !file.endsWith('.d.ts')).sort();
  return Promise.all(
    files.map(async (file) => {
      const module = (await import(pathToFileURL(join(folder, file)).href)) as Record<string, unknown>;
      const migrationClass = Object.values(module).find(
        (value): value is Constructor<Migration> => typeof value === 'function' && value.prototype instanceof Migration,
      );
      if (!migrationClass) throw new Error(`${file} exports no Migration class`);
      return { name: basename(file, extension), class: migrationClass };
    }),
  );
}

/** Connects and applies pending migrations. */
export async function openOrm(connection: OrmConnection, log: (message: string) => void): Promise<MikroORM> {
  const orm = await MikroORM.init(createOrmConfig(connection, { migrationsList: await loadMigrations(), log }));
  try {
    const migrate = () => orm.getMigrator().up();
    // Of several instances starting together on one database exactly one migrates; the others then
    // find nothing pending. (The embedded database belongs to one process and needs no lock.)
    await (connection.embedded ? migrate() : withAdvisoryLock(connection.clientUrl, ADVISORY_LOCKS.migrations, 'wait', migrate));
  } catch (error) {
    await orm.close(true);
    throw error;
  }
  return orm;
}

import { readdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Constructor, MigrationObject } from '@mikro-orm/core';
import { Migration, Migrator } from '@mikro-orm/migrations';
import { defineConfig, MikroORM, type Options } from '@mikro-orm/postgresql';
import type pg from 'pg';
import { ADVISORY_LOCKS, withAdvisoryLock } from './advisory-lock.js';
import { BUILD_ROOT, PROJECT_ROOT, RUNNING_FROM_SOURCE } from '../config/paths.js';
import { purgeIndexes } from '../maintenance.js';
import { RATE_LIMIT_TABLE } from '../rate-limits.js';
import { LEASE_TABLE } from './lease.js';
import { ACQUIRE_TIMEOUT_MS, boundStatements, CONNECT_TIMEOUT_MS, KEEPALIVE_DELAY_MS, STATEMENT_TIMEOUT_MS, withStatementTimeout } from './statement-timeout.js';
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
    // On a server a request waits at most 1.8 s for a connection, and as long for each statement
    // (statement-timeout.ts): while the database is down, unreachable or not answering, requests
    // are answered SERVICE_UNAVAILABLE then, instead of hanging for knex's default minute or for
    // good. The embedded database cannot be "down", and its one connection may have a queue: it
    // keeps the minute. Closing a connection waits 2 s at most for the server to say goodbye.
    pool: {
      min: 0,
      max: connection.poolSize,
      acquireTimeoutMillis: connection.embedded ? 60_000 : ACQUIRE_TIMEOUT_MS,
      destroyTimeoutMillis: 2000,
      afterCreate(client: pg.Client, done: (error: Error | null, client: pg.Client) => void) {
        // The embedded database runs in this process: it cannot hang while the process does not.
        // The CLI (snapshot) runs what the operator asks of it, for as long as that takes.
        if (!connection.embedded && !settings.snapshot) boundStatements(client, STATEMENT_TIMEOUT_MS);
        done(null, client);
      },
    },
    driverOptions: {
      // Opening a connection to a server is bounded too, and idle connections are probed (TCP
      // keepalive), so one whose server vanished without a word (a network partition) is noticed
      // and replaced.
      connection: connection.embedded ? {} : { connectionTimeoutMillis: CONNECT_TIMEOUT_MS, keepAlive: true, keepAliveInitialDelayMillis: KEEPALIVE_DELAY_MS },
      log: {
        // "Connection Error: …": the pool dropping a connection that broke while idle, which an
        // outage does to all of them at once (the outage itself is logged by OutageLog).
        warn: (message: string) => {
          if (!message.startsWith('Connection Error:')) settings.log?.(message);
        },
        error: (message: string) => settings.log?.(message),
        deprecate: () => {},
        debug: () => {},
      },
    },
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
    discovery: {
      disableDynamicFileAccess: true,
      // The indexes maintenance's purges rely on are declared beside the purges (maintenance.ts).
      onMetadata(meta) {
        for (const index of purgeIndexes(meta.tableName)) meta.indexes.push({ name: index.name, expression: index.expression });
      },
    },
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

/**
 * Applies the pending migrations, if any. Which are pending is read under the usual statement bound
 * (statement-timeout.ts): a database that stops answering then fails this start-up attempt, which
 * `openServer` retries within DATABASE_CONNECT_TIMEOUT, instead of leaving the process "starting"
 * for good. Only when some are pending does the migrator run unbounded, since a migration may
 * rewrite a big table; its own bookkeeping on `mikro_orm_migrations` then runs unbounded too.
 */
async function migrate(orm: MikroORM): Promise<void> {
  const migrator = orm.getMigrator();
  if ((await migrator.getPendingMigrations()).length === 0) return;
  await withStatementTimeout(0, () => migrator.up());
}

/** Connects and applies pending migrations; whatever fails, nothing is left open. */
export async function openOrm(connection: OrmConnection, log: (message: string) => void): Promise<MikroORM> {
  const orm = await MikroORM.init({ ...createOrmConfig(connection, { migrationsList: await loadMigrations(), log }), connect: false });
  try {
    await orm.connect();
    // Of several instances starting together on one database exactly one migrates; the others then
    // find nothing pending. (The embedded database belongs to one process and needs no lock.)
    await (connection.embedded ? migrate(orm) : withAdvisoryLock(connection.clientUrl, ADVISORY_LOCKS.migrations, 'wait', () => migrate(orm)));
  } catch (error) {
    await orm.close(true);
    throw error;
  }
  return orm;
}

import 'reflect-metadata';
import { type App, createApp } from './app.js';
import { type Config, ConfigError, loadConfig, processEnv, StartupError } from './config/config.js';
import { dataDirProblem } from './config/paths.js';
import { describeDatabase } from './db/database.js';
import { isDatabaseUnavailable } from './db/outage.js';

/**
 * Why start-up failed, as the one line (or configuration report) the operator gets instead of a
 * stack trace; `undefined` for a failure nobody could have fixed from outside (a bug).
 */
function startupFailure(error: unknown, config: Config | undefined): string | undefined {
  if (error instanceof StartupError) return error.message;
  // Until the configuration is loaded, the only files read are its own: .env and those it keeps in DATA_DIR.
  const path = (error as NodeJS.ErrnoException | undefined)?.path;
  const problem = dataDirProblem(error);
  if (problem && (!config || (typeof path === 'string' && path.startsWith(config.dataDir)))) return new ConfigError([problem]).message;
  const listening = config && listenFailure(error, config);
  if (listening) return listening;
  if (config?.databaseUrl && isDatabaseUnavailable(error)) {
    return `The database ${describeDatabase(config.databaseUrl)} stopped answering during start-up: ${error instanceof Error ? error.message : String(error)}`;
  }
  return undefined;
}

/** Why the server could not listen on HOST:PORT, when that is what failed: another process's port, say. */
function listenFailure(error: unknown, config: Config): string | undefined {
  const { syscall, code, message } = (error ?? {}) as NodeJS.ErrnoException;
  if (syscall !== 'listen') return undefined;
  const { port, host } = config;
  if (code === 'EADDRINUSE') return `Port ${port} on ${host} is in use: ${message}`;
  if (code === 'EACCES') return `Port ${port} on ${host} may not be used by this process (below 1024 it needs privileges): ${message}`;
  if (code === 'EADDRNOTAVAIL') return `HOST ${host} is not an address of this machine: ${message}`;
  return undefined;
}

/**
 * How long after SIGTERM the process ends whatever still waits: the grace period an orchestrator
 * is told to give it (README "Shutdown": SHUTDOWN_DRAIN_SECONDS + 10 s), less a second for the log.
 */
const graceMs = (config: Config) => (config.shutdownDrainSeconds + 9) * 1000;

/** Process entry: load config → create app → listen; SIGTERM/SIGINT → drain and close. */
async function main(): Promise<void> {
  let config: Config | undefined;
  let app: App | undefined;
  let url: string;
  try {
    config = loadConfig(processEnv());
    app = await createApp(config);
    url = await app.listen();
  } catch (error) {
    // What was opened is closed (the database, the embedded database's folder lock); no worker
    // ran, as they start only once the server listens.
    await app?.close().catch(() => {});
    const failure = startupFailure(error, config);
    if (failure === undefined) throw error;
    console.error(failure);
    process.exit(1);
  }
  app.logger.info(
    { url, database: config.databaseUrl ? 'postgresql' : `embedded (${config.dataDir})`, env: config.nodeEnv },
    `GraphQL API ready at ${url}`,
  );
  if (config.jwtSecretGenerated) app.logger.warn(`JWT_SECRET not set: using a generated secret kept in ${config.dataDir}`);
  if (config.jwtSigning.algorithm === 'EdDSA' && config.jwtSigning.generated) {
    app.logger.warn(`JWT_PRIVATE_KEY not set: signing with a generated Ed25519 key kept in ${config.dataDir}`);
  }
  if (config.isProduction && !config.hmacSecret) {
    app.logger.warn('HMAC_SECRET not set: password hashes are keyed from JWT_SECRET, so rotating JWT_SECRET would invalidate every password');
  }
  if (!config.smtpUrl) app.logger.warn(`SMTP_URL not set: emails are written to ${config.dataDir}/outbox${config.isProduction ? '' : ' and to this log'}, not sent`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    app.logger.info({ signal }, 'shutting down');
    // Every step of shutdown is bounded (requests, workers and the database's statements alike);
    // this is the last resort, should one of them still wait when the grace period ends.
    setTimeout(() => {
      app.logger.error({ signal, graceSeconds: graceMs(config) / 1000 }, 'shutdown did not finish within its grace period; exiting');
      process.exit(1);
    }, graceMs(config)).unref();
    app.close().then(
      () => {
        app.logger.info('stopped');
        process.exit(0);
      },
      (error: unknown) => {
        app.logger.error({ err: error }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

await main();

import 'reflect-metadata';
import { createApp } from './app.js';
import { loadConfig, processEnv, StartupError } from './config/config.js';

/** Process entry: load config → create app → listen; SIGTERM/SIGINT → drain and close. */
async function main(): Promise<void> {
  let config;
  let app;
  try {
    config = loadConfig(processEnv());
    app = await createApp(config);
  } catch (error) {
    if (error instanceof StartupError) {
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
  const url = await app.listen();
  app.logger.info(
    { url, database: config.databaseUrl ? 'postgresql' : `embedded (${config.dataDir})`, env: config.nodeEnv },
    `GraphQL API ready at ${url}`,
  );
  if (config.jwtSecretGenerated) app.logger.warn(`JWT_SECRET not set: using a generated secret kept in ${config.dataDir}`);
  if (config.isProduction && !config.hmacSecret) {
    app.logger.warn('HMAC_SECRET not set: password hashes are keyed from JWT_SECRET, so rotating JWT_SECRET would invalidate every password');
  }
  if (!config.smtpUrl) app.logger.warn(`SMTP_URL not set: emails are written to ${config.dataDir}/outbox${config.isProduction ? '' : ' and to this log'}, not sent`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    app.logger.info({ signal }, 'shutting down');
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

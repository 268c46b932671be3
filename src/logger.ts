import { pino, type DestinationStream, type Logger } from 'pino';
import type { Config } from './config/config.js';

export type { Logger };

/**
 * Paths whose values never reach a log line: credentials in headers, GraphQL variables and
 * anything we log about a request.
 */
const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'variables.*.password',
  'variables.password',
  'variables.refreshToken',
  '*.password',
  '*.newPassword',
  '*.currentPassword',
  '*.refreshToken',
  '*.accessToken',
  '*.token',
];

/** The process logger: JSON lines (pino), secrets redacted. `destination` lets tests capture output. */
export function createLogger(config: Pick<Config, 'logLevel'>, destination?: DestinationStream): Logger {
  return pino(
    {
      level: config.logLevel,
      base: { service: 'graphql-user-server' },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    },
    destination,
  );
}

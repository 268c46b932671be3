// `npm run user:create -- --email ops@example.com --role ADMIN [--username ops] [--first-name …]
//  [--last-name …] [--password …]`: creates an account from the command line, for operators.
// Without --password the password is read from standard input, so it stays out of shell history.
// On the embedded database, stop the server first: PGlite's files belong to one process at a time,
// and this refuses (naming the server's process) while another process holds DATA_DIR.
import 'reflect-metadata';
import { createInterface } from 'node:readline/promises';
import { parseArgs } from 'node:util';
import { loadConfig, processEnv, StartupError } from '../config/config.js';
import { openDatabase } from '../db/database.js';
import { AppError } from '../errors.js';
import { createLogger } from '../logger.js';
import { Role } from '../modules/users/role.js';
import { createServices } from '../services.js';

const USAGE = 'usage: npm run user:create -- --email <address> [--username <name>] [--role USER|ADMIN] [--first-name <name>] [--last-name <name>] [--password <password>]';

async function readPassword(): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write('Password: ');
  const lines = createInterface({ input: process.stdin, terminal: false });
  for await (const line of lines) {
    lines.close();
    return line;
  }
  return '';
}

/** A username from the email's local part, when none is given: invalid characters become "_". */
function usernameFrom(email: string): string {
  return email
    .split('@')[0]
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '')
    .slice(0, 32);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      email: { type: 'string' },
      username: { type: 'string' },
      role: { type: 'string', default: Role.USER },
      'first-name': { type: 'string' },
      'last-name': { type: 'string' },
      password: { type: 'string' },
    },
  });
  if (!values.email || !Object.values<string>(Role).includes(values.role ?? '')) {
    console.error(USAGE);
    return 2;
  }
  const config = loadConfig({ ...processEnv(), LOG_LEVEL: 'warn' });
  const logger = createLogger(config);
  // The database first: when another process holds DATA_DIR, refuse before asking for anything.
  const database = await openDatabase(config, logger);
  const password = values.password ?? (await readPassword());
  const services = await createServices(config, database, logger);
  try {
    const user = await services.userAdmin.create(
      database.orm.em.fork(),
      null,
      {
        email: values.email,
        username: values.username ?? usernameFrom(values.email),
        password,
        firstName: values['first-name'],
        lastName: values['last-name'],
        role: values.role as Role,
      },
      { ip: null, userAgent: 'cli: user:create' },
    );
    console.log(`created ${user.role} ${user.username} <${user.email}> (id ${user.id})`);
    return 0;
  } catch (error) {
    if (!(error instanceof AppError)) throw error;
    const field = 'field' in error && error.field ? `${String(error.field)}: ` : '';
    console.error(`not created: ${field}${error.message}`);
    return 1;
  } finally {
    await services.close();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof StartupError ? error.message : error);
    process.exit(1);
  },
);

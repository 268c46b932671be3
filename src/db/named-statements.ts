import { createHash } from 'node:crypto';

/**
 * Named (prepared) statements, while the database keeps them: a statement sent with a name is parsed
 * and planned once per connection, then only bound and run, which costs PostgreSQL less on the
 * hottest statements (the session lookup of every request, a sign-in's writes, the rate-limit
 * counts). A pooler in transaction mode (PgBouncer before 1.21, the Debian package among them) runs
 * each transaction on whichever server connection is free, where the name is unknown (SQLSTATE
 * 26000) or already taken (42P05): the first such error turns naming off for good in this process,
 * and the statement runs again unnamed (parsed where it runs). So does the first "cached plan must
 * not change result type" (0A000): a migration another instance ran (a rolling deploy adding a
 * column) changed a table a prepared `select *` reads, and PostgreSQL refuses that statement on this
 * connection from then on. Names are derived from the statement's text, so a statement another
 * instance prepared under a name on a shared connection is the same one.
 */
export const namedStatements = {
  on: true,
  /** Told once, when naming is turned off. */
  onTurnedOff: (_error: unknown): void => {},
};

const PREPARED_STATEMENT_ERRORS: ReadonlySet<string> = new Set(['26000', '42P05']);

/** Whether `error` says the database cannot (any longer) run a named statement as it was prepared. */
function cannotKeepNamed(error: unknown): boolean {
  const { code, message } = error as { code?: string; message?: string };
  return PREPARED_STATEMENT_ERRORS.has(code ?? '') || (code === '0A000' && /cached plan must not change result type/.test(message ?? ''));
}

/** A statement as the `pg` driver takes it. */
export interface Statement {
  name?: string;
  text: string;
  values?: unknown[];
}

const names = new Map<string, string>();

/** The name of a statement's text: the same text, the same name, in every process. */
export function nameOf(text: string): string {
  let name = names.get(text);
  if (name === undefined) {
    name = `s_${createHash('sha256').update(text).digest('base64url').slice(0, 32)}`;
    names.set(text, name);
  }
  return name;
}

/**
 * Sends `statement` with `send`, named while naming is on (with its own name, or one derived from
 * its text); unnamed once the database has said it cannot keep named statements.
 */
export async function sendNamed<T>(statement: Statement, send: (statement: Statement) => Promise<T>): Promise<T> {
  const { text, values } = statement;
  if (!namedStatements.on) return send({ text, values });
  try {
    return await send({ name: statement.name ?? nameOf(text), text, values });
  } catch (error) {
    if (!cannotKeepNamed(error)) throw error;
    if (namedStatements.on) {
      namedStatements.on = false;
      namedStatements.onTurnedOff(error);
    }
    return send({ text, values });
  }
}

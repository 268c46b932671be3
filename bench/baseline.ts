/**
 * The bare-stack baseline of the `me` benchmark, forked by bench/run.ts: plain node:http; a POST
 * reads and JSON-parses the body, verifies the Bearer JWT with jose (HS256 and the same claim checks
 * as src/modules/sessions/tokens.ts) and answers the user's row, from one primary-key query through a
 * `pg` Pool, shaped like the GraphQL answer `{"data":{"me":{...}}}`.
 *
 * On a real server it queries the very database the application uses. The application's embedded
 * PGlite is private to the server process, so in embedded mode this process starts its own PGlite
 * (served by PGLiteSocketServer on loopback, exactly like src/db/embedded.ts) and fills a `users`
 * table of the same shape with the same rows.
 */
import { webcrypto } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errors, jwtVerify } from 'jose';
import pg from 'pg';
import { eventLoopMonitor, serveParent } from './child.js';

/** A user row for the embedded baseline table (what the bench learned while seeding). */
export interface BaselineUser {
  id: string;
  email: string;
  username: string;
  role: string;
  createdAt: string;
  lastLoginAt: string | null;
}

/** What the bench sends in its `init` message. */
export interface BaselineInit {
  /** The application's database on a real server; absent: start an embedded PGlite here. */
  databaseUrl?: string;
  /** Rows to create in the embedded table (ignored with `databaseUrl`). */
  users: BaselineUser[];
  jwtSecret: string;
  /** The application's APP_URL: issuer and audience of its access tokens. */
  issuer: string;
  /** Connections of the pg Pool: 10 on a server, 1 on PGlite (as the application). */
  poolSize: number;
}

// Same table as migrations/ create (the columns `me` reads and the rest of the row).
const CREATE_USERS = `create table "users" ("id" uuid not null, "created_at" timestamptz not null, "email" varchar(254) not null,
  "username" varchar(32) not null, "first_name" varchar(100) null, "last_name" varchar(100) null, "password_hash" varchar(255) not null,
  "role" text check ("role" in ('USER', 'ADMIN')) not null default 'USER', "active" boolean not null default true,
  "email_verified_at" timestamptz null, "last_login_at" timestamptz null, "updated_at" timestamptz not null,
  "failed_login_count" smallint not null default 0, "login_blocked_until" timestamptz null, constraint "users_pkey" primary key ("id"));
  create unique index "users_email_unique" on "users" ("email");
  create unique index "users_username_lower_unique" on "users" (lower("username"));`;

const SELECT_ME =
  'select id, email, username, first_name, last_name, role, active, email_verified_at, created_at, last_login_at from users where id = $1';

const monitor = await eventLoopMonitor();
let cleanup: () => Promise<void> = async () => {};

async function start(init: BaselineInit): Promise<string> {
  let clientUrl = init.databaseUrl;
  const closers: Array<() => Promise<void>> = [];
  if (!clientUrl) {
    const { PGlite } = await import('@electric-sql/pglite');
    const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
    const dataDir = mkdtempSync(join(tmpdir(), 'bench-baseline-'));
    const db = await PGlite.create({ dataDir: join(dataDir, 'pglite') });
    await db.exec(CREATE_USERS);
    for (const user of init.users) {
      await db.query(
        `insert into users (id, created_at, email, username, password_hash, role, last_login_at, updated_at) values ($1, $2, $3, $4, $5, $6, $7, $2)`,
        [user.id, user.createdAt, user.email, user.username, 'hmac-bcrypt:$2b$12$' + 'x'.repeat(53), user.role, user.lastLoginAt],
      );
    }
    const socketServer = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: 8 });
    await socketServer.start();
    clientUrl = `postgresql://postgres@${socketServer.getServerConn()}/postgres`;
    closers.push(async () => {
      await socketServer.stop();
      await db.close();
      rmSync(dataDir, { recursive: true, force: true });
    });
  }
  const pool = new pg.Pool({ connectionString: clientUrl, max: init.poolSize });
  closers.unshift(() => pool.end());
  // Imported once, as the server does (src/modules/sessions/tokens.ts): the baseline is the bare stack at its best.
  const key = await webcrypto.subtle.importKey('raw', new TextEncoder().encode(init.jwtSecret), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);

  async function me(authorization: string | undefined): Promise<unknown> {
    const token = /^Bearer[ \t]+([A-Za-z0-9._~+/=-]+)[ \t]*$/i.exec(authorization ?? '')?.[1];
    if (!token) return unauthenticated();
    let userId: string;
    try {
      const { payload } = await jwtVerify(token, key, {
        algorithms: ['HS256'],
        issuer: init.issuer,
        audience: init.issuer,
        typ: 'at+jwt',
        requiredClaims: ['exp', 'iat', 'sub', 'sid'],
      });
      if (typeof payload.sub !== 'string' || typeof payload.sid !== 'string') return unauthenticated();
      userId = payload.sub;
    } catch (error) {
      if (error instanceof errors.JOSEError) return unauthenticated();
      throw error;
    }
    const { rows } = await pool.query(SELECT_ME, [userId]);
    const row = rows[0] as Record<string, any> | undefined;
    if (!row || !row.active) return unauthenticated();
    return {
      data: {
        me: {
          id: row.id,
          email: row.email,
          username: row.username,
          firstName: row.first_name,
          lastName: row.last_name,
          role: row.role,
          active: row.active,
          emailVerified: row.email_verified_at !== null,
          createdAt: (row.created_at as Date).toISOString(),
          lastLoginAt: row.last_login_at ? (row.last_login_at as Date).toISOString() : null,
        },
      },
    };
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      let status = 200;
      (async () => {
        if (req.method !== 'POST') {
          status = 405;
          return { errors: [{ message: 'POST only' }] };
        }
        // Parsed like a GraphQL request body would be; the query text itself is not interpreted.
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { query?: unknown };
        if (typeof body.query !== 'string') {
          status = 400;
          return { errors: [{ message: 'query missing' }] };
        }
        return me(req.headers.authorization);
      })()
        .catch((error: unknown) => {
          status = 500;
          return { errors: [{ message: String(error) }] };
        })
        .then((answer) => {
          res.statusCode = status;
          res.setHeader('content-type', 'application/json; charset=utf-8');
          res.end(JSON.stringify(answer));
        });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.unshift(() => new Promise<void>((resolve) => server.close(() => resolve())));
  cleanup = async () => {
    server.closeAllConnections();
    for (const close of closers) await close().catch(() => {});
  };
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
}

function unauthenticated() {
  return { errors: [{ message: 'Authentication required.', extensions: { code: 'UNAUTHENTICATED' } }], data: null };
}

serveParent(
  {
    onInit: async (payload) => {
      const url = await start(payload as BaselineInit);
      // After the reply to `init`, so the parent sees `ready` as the last step.
      setImmediate(() => process.send?.({ type: 'ready', url }));
    },
    onStop: () => cleanup(),
  },
  monitor,
);

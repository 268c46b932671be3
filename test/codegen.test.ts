import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { generate } from '@graphql-codegen/cli';
import type { CodegenConfig } from '@graphql-codegen/cli';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../src/config/paths.js';
import { resetTokenOf, startSmtpServer, type TestSmtpServer } from './support/smtp.js';
import { startTestServer, type TestServer } from './support/server.js';

// A frontend's view of the API: the operations in test/client/*.graphql, typed by GraphQL Code
// Generator (client preset) from schema.graphql, used by the small client in test/client/client.ts.
// The generated code goes to test/client/generated/ (git-ignored; rewritten by every run).

const SCHEMA_FILE = join(PROJECT_ROOT, 'schema.graphql');
const CLIENT_DIR = join(PROJECT_ROOT, 'test', 'client');
const GENERATED_DIR = join(CLIENT_DIR, 'generated');
const CLIENT_FILE = join(CLIENT_DIR, 'client.ts');
const OPERATIONS = ['Register', 'Login', 'Me', 'ForgotPassword', 'ResetPassword', 'UsersPage'];

/** The codegen configuration a frontend would use (README "Clients and codegen"). */
function codegenConfig(scalars: Record<string, string> = { DateTimeISO: 'string' }): CodegenConfig {
  return {
    schema: SCHEMA_FILE,
    documents: [join(CLIENT_DIR, '**', '*.graphql')],
    silent: true,
    generates: {
      [`${GENERATED_DIR}/`]: {
        preset: 'client',
        config: {
          // Every custom scalar must be mapped: a new one in schema.graphql fails generation.
          strictScalars: true,
          scalars,
          enumsAsTypes: true,
          useTypeImports: true,
          // `./graphql.js` rather than `./graphql` in the generated imports (ESM, NodeNext).
          emitLegacyCommonJSImports: false,
        },
      },
    },
  };
}

/** How strictly a frontend project would compile (stricter than this project's own tsconfig). */
const STRICT_OPTIONS: ts.CompilerOptions = {
  strict: true,
  noEmit: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  lib: ['lib.es2023.d.ts'],
  types: ['node'],
  verbatimModuleSyntax: true,
  exactOptionalPropertyTypes: true,
  noUncheckedIndexedAccess: true,
  noImplicitReturns: true,
  noImplicitOverride: true,
  noUnusedLocals: true,
  noUnusedParameters: true,
  noFallthroughCasesInSwitch: true,
  skipLibCheck: true,
};

/**
 * A file that uses the typed client: each line with an expected error must fail to compile with
 * that error, and every other line must compile (so the strict check can fail, and fails for the
 * right reasons).
 */
const MISUSE_LINES: Array<[code: string, expectedError?: RegExp]> = [
  [`import { createUserClient } from ${JSON.stringify(CLIENT_FILE.replace(/\.ts$/, '.js'))};`],
  [`const client = createUserClient('http://127.0.0.1:1/graphql');`],
  [`export async function misuse(): Promise<void> {`],
  // A number as email.
  [`  await client.register({ email: 42, username: 'someone', password: 'a long passphrase' });`, /Type 'number' is not assignable to type 'string'/],
  [`  await client.login({ identifier: 'someone' });`, /Property 'password' is missing/],
  [`  await client.forgotPassword({ email: 'someone@example.com' });`, /'email' does not exist in type 'ForgotPasswordInput'/],
  [`  await client.usersPage({ first: '10' }, 'token');`, /Type 'string' is not assignable to type 'InputMaybe<number>'/],
  [`  await client.usersPage({ filter: { role: 'OWNER' } }, 'token');`, /Type '"OWNER"' is not assignable to type 'InputMaybe<Role>'/],
  [`  const me = await client.me('token');`],
  // strictScalars: DateTimeISO is a string, not a Date.
  [`  const created: Date = me.createdAt;`, /Type 'string' is not assignable to type 'Date'/],
  // Only selected fields exist.
  [`  console.log(created, me.passwordHash);`, /Property 'passwordHash' does not exist/],
  [`  const page = await client.usersPage({ first: 10 }, 'token');`],
  [`  console.log(page.edges[0].node.email);`, /Object is possibly 'undefined'/],
  [`}`],
  [`export async function correctUse(): Promise<string> {`],
  [`  const { accessToken } = await client.login({ identifier: 'someone', password: 'a long passphrase' });`],
  [`  const me = await client.me(accessToken);`],
  [`  const page = await client.usersPage({ first: 10, after: null, filter: { role: 'ADMIN', search: 'a' } }, accessToken);`],
  [`  return [me.createdAt, me.lastLoginAt ?? 'never', page.pageInfo.endCursor ?? '', page.edges[0]?.node.role ?? 'USER'].join();`],
  [`}`],
];

interface Problem {
  file: string;
  line: number;
  message: string;
}

function problemsOf(diagnostics: readonly ts.Diagnostic[]): Problem[] {
  return diagnostics.map((diagnostic) => {
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
    if (!diagnostic.file || diagnostic.start === undefined) return { file: '(global)', line: 0, message };
    const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
    return { file: diagnostic.file.fileName, line: line + 1, message };
  });
}

let generatedFiles: string[] = [];
let misuseDir: string;
let misuseFile: string;
let typeCheck: Promise<Problem[]> | undefined;

/** Compiles test/client (with the generated code) and the misuse file as one strict program. */
function checkTypes(): Promise<Problem[]> {
  typeCheck ??= (async () => {
    const program = ts.createProgram([CLIENT_FILE, ...generatedFiles, misuseFile], STRICT_OPTIONS);
    return problemsOf(ts.getPreEmitDiagnostics(program));
  })();
  return typeCheck;
}

beforeAll(async () => {
  await rm(GENERATED_DIR, { recursive: true, force: true });
  const output = await generate(codegenConfig(), true);
  generatedFiles = output.map((file: { filename: string }) => file.filename);
  misuseDir = await mkdtemp(join(tmpdir(), 'codegen-misuse-'));
  // .mts: an ES module wherever it lies, so that it may import the ESM client.
  misuseFile = join(misuseDir, 'misuse.mts');
  await writeFile(misuseFile, MISUSE_LINES.map(([code]) => code).join('\n'));
});

afterAll(async () => {
  if (misuseDir) await rm(misuseDir, { recursive: true, force: true });
});

describe('typed client code generated from schema.graphql (GraphQL Code Generator, client preset)', () => {
  it('generates a TypedDocumentNode and result/variables types for every operation in test/client', async () => {
    expect(generatedFiles.map((file) => relative(GENERATED_DIR, file)).sort()).toEqual(['fragment-masking.ts', 'gql.ts', 'graphql.ts', 'index.ts']);
    const types = await readFile(join(GENERATED_DIR, 'graphql.ts'), 'utf8');
    for (const name of OPERATIONS) {
      expect(types).toMatch(new RegExp(`export const ${name}Document = \\{`));
      expect(types).toMatch(new RegExp(`export type ${name}(Query|Mutation)Variables = `));
    }
    // strictScalars + scalars: DateTimeISO is a string on the wire and in the types.
    expect(types).toContain('DateTimeISO: { input: string; output: string; }');
    // enumsAsTypes: Role is a union of string literals, not a TypeScript enum.
    const role = types.match(/export type Role =([^;]*);/)?.[1] ?? '';
    expect(role.replace(/\/\*\*.*?\*\//g, '').replace(/\s+/g, ' ').trim()).toBe("| 'ADMIN' | 'USER'");
    expect(types).not.toMatch(/\benum\s+Role\b/);
  });

  it('refuses to generate while a custom scalar has no mapping (strictScalars)', async () => {
    await expect(generate(codegenConfig({}), false)).rejects.toThrow(/Unknown scalar type DateTimeISO/);
  });

  it('type-checks test/client against the generated types with strict compiler options', async () => {
    const problems = (await checkTypes()).filter((problem) => problem.file !== misuseFile);
    expect(problems).toEqual([]);
  });

  it('reports a compile error for each misuse of an operation (so the check above can fail)', async () => {
    const problems = (await checkTypes()).filter((problem) => problem.file === misuseFile);
    const failingLines = [...new Set(problems.map((problem) => problem.line))];
    const expectedLines = MISUSE_LINES.flatMap(([, error], index) => (error ? [index + 1] : []));
    expect(failingLines, JSON.stringify(problems, null, 2)).toEqual(expectedLines);
    MISUSE_LINES.forEach(([code, error], index) => {
      if (!error) return;
      const messages = problems.filter((problem) => problem.line === index + 1).map((problem) => problem.message);
      expect(messages.some((message) => error.test(message)), `${code}\n${messages.join('\n')}`).toBe(true);
    });
  });
});

/**
 * The part of test/client/client.ts that the run-time check calls. The client is imported by path
 * (not by a static import) so that `tsc -p test` needs no generated code; its real types are the
 * ones checked above, and this run checks that the server's answers have those shapes.
 */
interface RuntimeUser {
  id: string;
  email: string;
  username: string;
  role: string;
  createdAt: string;
  lastLoginAt?: string | null;
}
interface RuntimeClient {
  register(input: { email: string; username: string; password: string }): Promise<{ accessToken: string; accessTokenExpiresAt: string; refreshToken: string; user: RuntimeUser }>;
  login(input: { identifier: string; password: string }): Promise<{ accessToken: string; user: RuntimeUser }>;
  me(token: string): Promise<RuntimeUser & { updatedAt: string; active: boolean; emailVerified: boolean }>;
  forgotPassword(input: { identifier: string }): Promise<boolean>;
  resetPassword(input: { token: string; newPassword: string }): Promise<boolean>;
  usersPage(
    variables: { first?: number; after?: string | null; filter?: { search?: string; role?: string; active?: boolean } },
    token: string,
  ): Promise<{ totalCount: number; edges: Array<{ cursor: string; node: RuntimeUser & { active: boolean } }>; pageInfo: { hasNextPage: boolean; endCursor?: string | null } }>;
}
interface RuntimeClientModule {
  createUserClient(endpoint: string): RuntimeClient;
  GraphQLRequestError: new (...args: never[]) => Error & { code: string | undefined; status: number };
}

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const ADMIN = { email: 'codegen-admin@example.com', username: 'codegen_admin', password: 'codegen admin passphrase' };

describe('the typed client against a real server', () => {
  let server: TestServer;
  let smtp: TestSmtpServer;
  let client: RuntimeClient;
  let clientModule: RuntimeClientModule;

  beforeAll(async () => {
    smtp = await startSmtpServer();
    server = await startTestServer({
      SMTP_URL: smtp.url,
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_USERNAME: ADMIN.username,
      ADMIN_PASSWORD: ADMIN.password,
    });
    clientModule = (await import(/* @vite-ignore */ CLIENT_FILE)) as RuntimeClientModule;
    client = clientModule.createUserClient(`${server.origin}/graphql`);
  });
  afterAll(async () => {
    await server?.stop();
    await smtp?.stop();
  });

  it('registers, signs in, reads me, resets the password and lists users with the generated documents', async () => {
    const suffix = randomBytes(4).toString('hex');
    const account = { email: `codegen-${suffix}@example.com`, username: `codegen_${suffix}`, password: `a long passphrase ${suffix}` };

    const registered = await client.register(account);
    expect(registered.user).toMatchObject({ email: account.email, username: account.username, role: 'USER' });
    expect(registered.accessTokenExpiresAt).toMatch(ISO_UTC);
    expect(registered.user.createdAt).toMatch(ISO_UTC);

    const signedIn = await client.login({ identifier: account.username, password: account.password });
    expect(signedIn.user.id).toBe(registered.user.id);
    expect(signedIn.user.lastLoginAt).toMatch(ISO_UTC);

    const me = await client.me(signedIn.accessToken);
    expect(me).toMatchObject({ id: registered.user.id, email: account.email, active: true, emailVerified: false, role: 'USER' });
    for (const value of [me.createdAt, me.updatedAt, me.lastLoginAt]) expect(value).toMatch(ISO_UTC);

    expect(await client.forgotPassword({ identifier: account.email })).toBe(true);
    const mail = await smtp.waitFor((message) => message.to.includes(account.email) && /reset-password\?token=/.test(message.text));
    const newPassword = `another long passphrase ${suffix}`;
    expect(await client.resetPassword({ token: resetTokenOf(mail), newPassword })).toBe(true);
    await client.login({ identifier: account.email, password: newPassword });

    const admin = await client.login({ identifier: ADMIN.username, password: ADMIN.password });
    const page = await client.usersPage({ first: 5, after: null, filter: { search: account.username, role: 'USER', active: true } }, admin.accessToken);
    expect(page.totalCount).toBe(1);
    expect(page.edges.map((edge) => edge.node.id)).toEqual([registered.user.id]);
    expect(page.edges[0]?.node.createdAt).toMatch(ISO_UTC);
    expect(page.pageInfo).toMatchObject({ hasNextPage: false, endCursor: page.edges[0]?.cursor });
  });

  it('turns GraphQL errors into GraphQLRequestError with the extensions.code', async () => {
    const failure = await client.me('not-a-token').catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(clientModule.GraphQLRequestError);
    expect(failure).toMatchObject({ code: 'UNAUTHENTICATED' });
  });
});

import { type Audit, type AuditResult, serverAudits } from 'graphql-http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './support/server.js';

// The GraphQL-over-HTTP conformance audits of the `graphql-http` package (the reference
// implementation of the spec), run against the real server. Every MUST audit has to pass. SHOULD and
// MAY audits are not requirements, but their results are pinned below so that a change of behaviour
// (an Apollo upgrade, a change to src/graphql/http-handler.ts) is noticed and the README's table
// ("GraphQL over HTTP") is updated with it.

type AuditStatus = AuditResult['status'];

/**
 * Expected result of every SHOULD/MAY audit, by audit id (the README explains each one that is not ok).
 * `notice` is what graphql-http reports for an optional (MAY) feature the server does not offer.
 */
const EXPECTED: Record<string, AuditStatus> = {
  // Accept headers and content types.
  '22EB': 'ok', // SHOULD accept application/graphql-response+json and match the content-type
  '47DE': 'ok', // SHOULD accept */* and use application/json for the content-type
  '80D8': 'ok', // SHOULD assume application/json content-type when accept is missing
  '9ABE': 'ok', // SHOULD respond with 4xx status code if content-type is not supplied on POST requests
  // GET: CSRF prevention refuses GET requests without a preflight-forcing header (see CSRF_GET below).
  '5A70': 'notice', // MAY accept application/x-www-form-urlencoded formatted GET requests
  D6D5: 'notice', // MAY allow URL-encoded JSON string {variables} parameter in GETs when accepting application/graphql-response+json
  '6A70': 'notice', // MAY allow URL-encoded JSON string {variables} parameter in GETs when accepting application/json
  '9C48': 'ok', // MAY NOT allow executing mutations on GET requests
  // Malformed request parameters get 400.
  A5BF: 'ok', // MAY use 400 status code when request body is missing on POST
  '423L': 'ok', // MAY use 400 status code on missing {query} parameter
  LKJ0: 'ok', // MAY use 400 status code on object {query} parameter
  LKJ1: 'ok', // MAY use 400 status code on number {query} parameter
  LKJ2: 'ok', // MAY use 400 status code on boolean {query} parameter
  LKJ3: 'ok', // MAY use 400 status code on array {query} parameter
  '34A2': 'ok', // SHOULD allow string {query} parameter when accepting application/graphql-response+json
  '6C00': 'ok', // MAY use 400 status code on object {operationName} parameter
  '6C01': 'ok', // MAY use 400 status code on number {operationName} parameter
  '6C02': 'ok', // MAY use 400 status code on boolean {operationName} parameter
  '6C03': 'ok', // MAY use 400 status code on array {operationName} parameter
  '8161': 'ok', // SHOULD allow string {operationName} parameter when accepting application/graphql-response+json
  '94B0': 'ok', // SHOULD allow null {variables} parameter when accepting application/graphql-response+json
  '94B1': 'ok', // SHOULD allow null {operationName} parameter when accepting application/graphql-response+json
  '94B2': 'ok', // SHOULD allow null {extensions} parameter when accepting application/graphql-response+json
  '4760': 'ok', // MAY use 400 status code on string {variables} parameter
  '4761': 'ok', // MAY use 400 status code on number {variables} parameter
  '4762': 'ok', // MAY use 400 status code on boolean {variables} parameter
  '4763': 'ok', // MAY use 400 status code on array {variables} parameter
  '2EA1': 'ok', // SHOULD allow map {variables} parameter when accepting application/graphql-response+json
  '58B0': 'ok', // MAY use 400 status code on string {extensions} parameter
  '58B1': 'ok', // MAY use 400 status code on number {extensions} parameter
  '58B2': 'ok', // MAY use 400 status code on boolean {extensions} parameter
  '58B3': 'ok', // MAY use 400 status code on array {extensions} parameter
  '428F': 'ok', // SHOULD allow map {extensions} parameter when accepting application/graphql-response+json
  // JSON parsing failures and invalid parameters.
  B6DC: 'ok', // MAY use 2xx, 4xx, or 5xx status codes on JSON parsing failure when accepting application/json
  BCF8: 'ok', // SHOULD use 400 status code on JSON parsing failure when accepting application/json
  B7N8: 'ok', // SHOULD use 400 status code on JSON parsing failure when accepting application/graphql-response+json
  '8764': 'ok', // MAY use 4xx or 5xx status codes if parameters are invalid
  '3E3A': 'ok', // MAY use 400 status code if parameters are invalid
  // Request errors with `accept: application/json`: Apollo answers 400, the spec prefers 200 for
  // legacy clients that only read bodies of 200 responses.
  '572B': 'warn', // SHOULD use 200 status code on document parsing failure when accepting application/json
  FDE2: 'warn', // SHOULD use 200 status code on document validation failure when accepting application/json
  '7B9B': 'warn', // SHOULD use a status code of 200 on variable coercion failure when accepting application/json
  // Request errors with `accept: application/graphql-response+json`: 400 and no `data`, as specified.
  '865D': 'ok', // SHOULD use 4xx or 5xx status codes on document parsing failure when accepting application/graphql-response+json
  '556A': 'ok', // SHOULD use 400 status code on document parsing failure when accepting application/graphql-response+json
  D586: 'ok', // SHOULD not contain the data entry on document parsing failure when accepting application/graphql-response+json
  '51FE': 'ok', // SHOULD use 4xx or 5xx status codes on document validation failure when accepting application/graphql-response+json
  '74FF': 'ok', // SHOULD use 400 status code on document validation failure when accepting application/graphql-response+json
  '5E5B': 'ok', // SHOULD not contain the data entry on document validation failure when accepting application/graphql-response+json
  '86EE': 'ok', // SHOULD use a status code of 400 on variable coercion failure when accepting application/graphql-response+json
};

/** The MUST audits of graphql-http 1.23 (pinned too, so that an audit added or dropped by an upgrade is seen). */
const MUST_AUDITS = ['4655', '82A3', 'BF61', '78D5', '2C94', '03D4', '13EE', 'B8B3', '0220', '0221', '0222', '28B9', '1B7A'];

/** The GET audits that only CSRF prevention turns away: with its preflight header they pass. */
const CSRF_GET = ['5A70', 'D6D5', '6A70'];

/** One request an audit sent and the response it got, kept to explain a failing audit. */
interface Exchange {
  request: string;
  response: Promise<string>;
}

let server: TestServer;
let exchanges: Exchange[] = [];

beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server?.stop();
});

/** `fetch`, recording each exchange; `extraHeaders` are added to GET requests. */
function recordingFetch(extraHeaders: Record<string, string> = {}): typeof fetch {
  return async (input, init = {}) => {
    const method = (init.method ?? 'GET').toUpperCase();
    const headers = new Headers(init.headers);
    if (method === 'GET') for (const [name, value] of Object.entries(extraHeaders)) headers.set(name, value);
    const url = input instanceof Request ? input.url : String(input);
    const response = await fetch(input, { ...init, headers });
    const requestHeaders = [...headers].map(([name, value]) => `${name}: ${value}`).join('\n');
    const copy = response.clone();
    exchanges.push({
      request: `${method} ${url}\n${requestHeaders}${typeof init.body === 'string' ? `\n\n${init.body}` : ''}`,
      response: copy.text().then((body) => {
        const responseHeaders = [...copy.headers].filter(([name]) => !['date', 'x-request-id', 'keep-alive', 'connection'].includes(name));
        return `HTTP ${copy.status}\n${responseHeaders.map(([name, value]) => `${name}: ${value}`).join('\n')}\n\n${body}`;
      }),
    });
    return response;
  };
}

/** Runs one audit and returns its result with a report of every exchange it made. */
async function runAudit(audit: Audit): Promise<{ result: AuditResult; report: string }> {
  exchanges = [];
  const result = await audit.fn();
  const lines = [`${audit.id} ${audit.name}: ${result.status}${result.status === 'ok' ? '' : ` — ${result.reason}`}`];
  for (const exchange of exchanges) lines.push(`--- request\n${exchange.request}\n--- response\n${await exchange.response}`);
  return { result, report: lines.join('\n') };
}

const endpoint = () => `${server.origin}/graphql`;
const audits = serverAudits({ url: endpoint, fetchFn: recordingFetch() });
const isMust = (audit: Audit) => audit.name.startsWith('MUST ');

describe('GraphQL over HTTP: MUST audits of graphql-http (all must pass)', () => {
  for (const audit of audits.filter(isMust)) {
    it(`${audit.id} ${audit.name}`, async () => {
      const { result, report } = await runAudit(audit);
      expect(result.status, report).toBe('ok');
    });
  }
});

describe('GraphQL over HTTP: SHOULD and MAY audits of graphql-http (pinned to the expected results)', () => {
  it('has an expected result for exactly the SHOULD and MAY audits (and knows every MUST audit)', () => {
    const optional = audits.filter((audit) => !isMust(audit)).map((audit) => audit.id);
    expect([...optional].sort()).toEqual(Object.keys(EXPECTED).sort());
    expect(audits.filter(isMust).map((audit) => audit.id).sort()).toEqual([...MUST_AUDITS].sort());
  });

  for (const audit of audits.filter((candidate) => !isMust(candidate))) {
    it(`${audit.id} ${audit.name}`, async () => {
      const { result, report } = await runAudit(audit);
      expect(result.status, report).toBe(EXPECTED[audit.id]);
    });
  }

  it('turns away the GET audits only because of CSRF prevention: with `apollo-require-preflight` they pass', async () => {
    const preflighted = serverAudits({ url: endpoint, fetchFn: recordingFetch({ 'apollo-require-preflight': 'true' }) });
    const getAudits = preflighted.filter((audit) => CSRF_GET.includes(audit.id));
    expect(getAudits.map((audit) => audit.id).sort()).toEqual([...CSRF_GET].sort());
    for (const audit of getAudits) {
      const { result, report } = await runAudit(audit);
      expect(result.status, report).toBe('ok');
    }
    // Without the header, the same query is refused as a possible CSRF attack.
    const response = await fetch(`${endpoint()}?query=${encodeURIComponent('{ __typename }')}`, { headers: { accept: 'application/json' } });
    expect(response.status).toBe(400);
    expect(await response.text()).toMatch(/cross-site request forgery/i);
  });
});

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FORGOT_PASSWORD, fromFreshAddress, LOGIN, ME, newAccountInput, REGISTER, type SignedInAccount, START_UP_ADMIN } from '../support/accounts.js';
import { queriesDuring } from '../support/database.js';
import { rawRequest } from '../support/raw-http.js';
import { errorCode, errorField, type GraphQLResponse, startTestServer, type TestServer } from '../support/server.js';

// One input boundary (src/graphql/input-boundary.ts) and the field rules behind it: hostile strings
// are refused with BAD_USER_INPUT naming the field, before any SQL, instead of reaching PostgreSQL
// ("invalid byte sequence", "date/time field value out of range") and coming back as a 500.
// OWASP ASVS V5.1.3, V5.1.4 and V7.4.1; the Input Validation cheat sheet. Rate limits are on
// (RATE_LIMIT_SCALE=1): their keys were one of the ways a NUL byte reached SQL. TRUST_PROXY=1 gives
// each request an address of its own.
const { ADMIN_EMAIL, ADMIN_PASSWORD } = START_UP_ADMIN;
const USERS = 'query Users($first: Int, $after: String, $filter: UserFilter) { users(first: $first, after: $after, filter: $filter) { totalCount pageInfo { endCursor } } }';
const AUDIT = 'query Audit($after: String) { auditEvents(first: 5, after: $after) { totalCount } }';
const USER_BY_USERNAME = 'query ByName($username: String!) { userByUsername(username: $username) { id } }';
const UPDATE_ME = 'mutation UpdateMe($input: UpdateProfileInput!) { updateMe(input: $input) { firstName lastName } }';
const CREATE_USER = 'mutation Create($input: CreateUserInput!) { createUser(input: $input) { id email } }';

let server: TestServer;
let adminToken: string;

beforeAll(async () => {
  server = await startTestServer({ RATE_LIMIT_SCALE: '1', TRUST_PROXY: '1', ...START_UP_ADMIN });
  const admin = await call(LOGIN, { input: { identifier: ADMIN_EMAIL, password: ADMIN_PASSWORD } });
  adminToken = admin.data!.login.accessToken;
});
afterAll(() => server?.stop());

/** Registers a fresh account from an address of its own (registration is limited per address). */
async function registerAccount(): Promise<SignedInAccount> {
  const input = newAccountInput();
  const response = await call(REGISTER, { input });
  if (!response.data?.register) throw new Error(`register failed: ${JSON.stringify(response.errors)}`);
  return { ...response.data.register, password: input.password as string };
}

function call(query: string, variables: Record<string, unknown> = {}, token?: string): Promise<GraphQLResponse> {
  return server.graphql(query, variables, { token, headers: fromFreshAddress() });
}

/** BAD_USER_INPUT on `field`, no data, not a 5xx, and nothing unexpected in the log. */
function expectBadInput(response: GraphQLResponse, field: string): void {
  expect(response.status, JSON.stringify(response.errors)).toBeLessThan(500);
  expect(response.data?.[Object.keys(response.data ?? {})[0]] ?? null).toBeNull();
  expect(errorCode(response), JSON.stringify(response.errors)).toBe('BAD_USER_INPUT');
  expect(errorField(response)).toBe(field);
}

function unexpectedErrorsLogged(): number {
  return server.logs.filter((line) => line.level >= 50).length;
}

/** A cursor as the server writes them (base64url of "<ISO time>|<uuid>"), for any time text. */
function cursorAt(time: string): string {
  return Buffer.from(`${time}|0b6b8f4e-3f0a-4a51-9d4e-2b8f6a1c9e11`, 'utf8').toString('base64url');
}

describe('the input boundary: NUL bytes and broken Unicode never reach SQL', () => {
  it.each([
    ['login identifier, username-shaped', LOGIN, { input: { identifier: 'nul\u0000user', password: 'a long passphrase 1' } }, 'identifier'],
    ['login identifier, email-shaped', LOGIN, { input: { identifier: 'nul\u0000@example.com', password: 'a long passphrase 1' } }, 'identifier'],
    ['login identifier with an unpaired surrogate', LOGIN, { input: { identifier: 'user\ud800', password: 'a long passphrase 1' } }, 'identifier'],
    ['forgotPassword identifier', FORGOT_PASSWORD, { input: { identifier: 'someone\u0000@example.com' } }, 'identifier'],
    ['register username', REGISTER, { input: newAccountInput({ username: 'nul\u0000name' }) }, 'username'],
    ['register email with an unpaired surrogate', REGISTER, { input: newAccountInput({ email: 'a\udc00@example.com' }) }, 'email'],
  ])('%s: BAD_USER_INPUT before any SQL', async (_name, query, variables, field) => {
    const before = unexpectedErrorsLogged();
    const queries = await queriesDuring(async () => expectBadInput(await call(query, variables), field));
    expect(queries).toEqual([]);
    // forgotPassword used to answer true and then fail in the background.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(unexpectedErrorsLogged()).toBe(before);
  });

  it.each([
    ['userByUsername', USER_BY_USERNAME, { username: 'adm\u0000in' }, 'username'],
    ['users(filter: { search }) with a NUL byte', USERS, { filter: { search: 'a\u0000b' } }, 'search'],
    ['users(filter: { search }) with an unpaired surrogate', USERS, { filter: { search: 'a\ud83d' } }, 'search'],
    ['createUser firstName', CREATE_USER, { input: { ...newAccountInput(), firstName: 'A\u0000da' } }, 'firstName'],
  ])('admin %s: BAD_USER_INPUT, no query beyond the session lookup', async (_name, query, variables, field) => {
    const before = unexpectedErrorsLogged();
    const queries = await queriesDuring(async () => expectBadInput(await call(query, variables, adminToken), field));
    expect(queries.filter((sql) => !/from "sessions"/.test(sql))).toEqual([]);
    expect(unexpectedErrorsLogged()).toBe(before);
  });

  it('still takes a pasted line break around an identifier as the identifier', async () => {
    const account = await registerAccount();
    const response = await call(LOGIN, { input: { identifier: `\t${account.user.email}\r\n`, password: account.password } });
    expect(response.errors).toBeUndefined();
    expect(response.data?.login.user.id).toBe(account.user.id);
  });
});

describe('cursors are validated in format and range', () => {
  it.each([
    ['dated year 0000', cursorAt('0000-01-01T00:00:00.000Z')],
    ['dated year 9999, 31 December, 24:00', cursorAt('9999-12-31T24:00:00.000Z')],
    ['dated 30 February', cursorAt('2026-02-30T10:00:00.000Z')],
    ['dated before 1970', cursorAt('1969-12-31T23:59:59.999Z')],
    ['with "=" padding appended', `${cursorAt('2026-01-01T00:00:00.000Z')}=`],
    ['of plain garbage', 'not a cursor'],
  ])('a cursor %s is BAD_USER_INPUT on after, for users and auditEvents', async (_name, after) => {
    const before = unexpectedErrorsLogged();
    expectBadInput(await call(USERS, { first: 2, after }, adminToken), 'after');
    expectBadInput(await call(AUDIT, { after }, adminToken), 'after');
    expect(unexpectedErrorsLogged()).toBe(before);
  });

  it('accepts the cursors it hands out (control)', async () => {
    await registerAccount();
    await registerAccount();
    const first = await call(USERS, { first: 1 }, adminToken);
    const after = first.data!.users.pageInfo.endCursor;
    const next = await call(USERS, { first: 1, after }, adminToken);
    expect(next.errors).toBeUndefined();
    expect(cursorAt(new Date().toISOString())).toMatch(/^[A-Za-z0-9_-]+$/);
  });
});

describe('names: what a person can write, nothing that hides or reorders text', () => {
  async function updateName(firstName: string) {
    const account = await registerAccount();
    return call(UPDATE_ME, { input: { firstName } }, account.accessToken);
  }

  it.each([
    ['a right-to-left override', 'Ada\u202Eevol'],
    ['a left-to-right isolate', 'Ada\u2066x\u2069'],
    ['a right-to-left mark', 'Ada\u200F'],
    ['a zero-width space', 'A\u200Bda'],
    ['a word joiner', 'A\u2060da'],
    ['a byte-order mark inside', 'A\uFEFFda'],
    ['a soft hyphen', 'A\u00ADda'],
    ['a Hangul filler as the whole name', '\u3164'],
    ['a zero-width joiner at the start', '\u200DAda'],
    ['a line separator', 'Ada\u2028Lovelace'],
    ['a C1 control character', 'Ada\u0085'],
    ['101 emoji', '😀'.repeat(101)],
    ['a Braille blank as the whole name', '\u2800'],
    ['a lone combining mark', '\u0301'],
    ['a noncharacter', 'Ada\uFFFF'],
    ['an interlinear annotation', '\uFFF9Ada\uFFFAx\uFFFB'],
    ['an Arabic number sign', '\u0600Ada'],
    // Joiners and variation selectors only where a script or an emoji uses them: anywhere else they
    // are invisible, and "Ad\u200Dmin" shows as "Admin".
    ['a zero-width joiner between Latin letters', 'Ad\u200Dmin'],
    ['a zero-width non-joiner between Latin letters', 'Ad\u200Cmin'],
    ['a variation selector after a Latin letter', 'Admin\uFE0F'],
    ['an ideographic variation selector after a Latin letter', 'Admin\u{E0100}'],
    ['an emoji variation selector after a digit that is no keycap', 'Admin1\uFE0F'],
    ['a zero-width joiner between a letter and an emoji', 'Ana\u200D👩'],
    ['a zero-width non-joiner between emoji', '👩\u200C💻'],
    ['a zero-width non-joiner between Arabic and Latin letters', 'می\u200Cmin'],
    ['a zero-width joiner between a Devanagari and a Latin letter', 'क्\u200DA'],
    // Zalgo: combining marks stacked on one letter (Unicode TR #39, 5.4).
    ['eight acute accents on one letter', `A${'\u0301'.repeat(8)}dmin`],
    ['70 different combining marks on one letter', `A${Array.from({ length: 70 }, (_, i) => String.fromCodePoint(0x300 + i)).join('')}da`],
    ['five different combining marks on one letter', 'A\u0300\u0301\u0302\u0303\u0304da'],
    ['one combining mark twice on a letter, which can show as once', 'A\u0301\u0301dmin'],
  ])('refuses %s', async (_name, firstName) => {
    expectBadInput(await updateName(firstName), 'firstName');
  });

  it('refuses a hidden joiner in lastName on lastName', async () => {
    const account = await registerAccount();
    expectBadInput(await call(UPDATE_ME, { input: { lastName: 'Ad\u200Dmin' } }, account.accessToken), 'lastName');
  });

  it.each([
    ['100 emoji (100 characters, 200 UTF-16 units)', '😀'.repeat(100)],
    ['an emoji family joined by ZWJ', '👨‍👩‍👧'],
    ['an emoji with a variation selector and ZWJ', '❤️‍🔥'],
    ['a Persian word with a zero-width non-joiner', 'می‌خواهم'],
    ['accents, composed or not', 'Zoe\u0308 Éowyn'],
    ['right-to-left script', 'עדה'],
    ['an emoji ZWJ sequence before a name', '👩\u200D💻 Ana'],
    ['an emoji ZWJ sequence with a skin tone', '👩🏽\u200D💻'],
    ['the rainbow flag (variation selector, then ZWJ)', '🏳\uFE0F\u200D🌈'],
    ['a keycap emoji', '1\uFE0F\u20E3'],
    ['a Persian surname with a zero-width non-joiner', 'حسن\u200Cزاده'],
    ['a Hindi name with ZWJ (half form of क)', 'लक्\u200Dष्मी'],
    ['a Hindi name with ZWNJ (visible virama)', 'लक्\u200Cष्मी'],
    ['a Sinhala name with ZWJ (ශ්‍රී)', 'ශ්\u200Dරී'],
    ['a Bengali name with ZWJ (র‍্য)', 'র\u200D্যাচেল'],
    ['a Malayalam name ending in a chillu written with ZWJ', 'ഉണ്ണികൃഷ്ണന്\u200D'],
    ['a Vietnamese name, composed', 'Nguyễn Thị Ánh Tuyết'],
    ['a Vietnamese name, decomposed', 'Nguye\u0302\u0303n'],
    ['Hindi names with a nukta and vowel signs', 'ज़ीनत हिमांशु'],
    ['a Thai name with vowel and tone marks', 'สมศักดิ์ กิ๊ฟ'],
    ['a Hebrew name with niqqud', 'יְהוֹשֻׁעַ שְׁלֹמֹה'],
    ['an Arabic name with harakat', 'مُحَمَّد'],
    ['a Burmese name', 'ကျော် မြို့'],
    ['a CJK ideograph with an ideographic variation selector', '辻\u{E0100}'],
  ])('accepts %s, stored as sent (NFC)', async (_name, firstName) => {
    const response = await updateName(firstName);
    expect(response.errors, JSON.stringify(response.errors)).toBeUndefined();
    expect(response.data?.updateMe.firstName).toBe(firstName.normalize('NFC'));
  });
});

describe('one email policy', () => {
  it('refuses a quoted local part, which would be a second account for another address\'s mailbox', async () => {
    const victim = await registerAccount();
    const local = victim.user.email.split('@')[0];
    for (const email of [`"${local}"@example.com`, `"${local}@example.com"@example.com`, `${local}(comment)@example.com`]) {
      expectBadInput(await call(REGISTER, { input: newAccountInput({ email }) }), 'email');
    }
  });

  it('takes an internationalised domain in Unicode and in punycode as one address, stored in punycode', async () => {
    const local = `ida_${randomBytes(3).toString('hex')}`;
    const password = `a long passphrase ${randomBytes(3).toString('hex')}`;
    const unicode = await call(REGISTER, { input: newAccountInput({ email: `${local}@Müller.example.com`, password }) });
    expect(unicode.errors).toBeUndefined();
    expect(unicode.data?.register.user.email).toBe(`${local}@xn--mller-kva.example.com`);
    const punycode = await call(REGISTER, { input: newAccountInput({ email: `${local}@xn--mller-kva.example.com` }) });
    expect(errorCode(punycode)).toBe('CONFLICT');
    expect(errorField(punycode)).toBe('email');
    for (const identifier of [`${local}@müller.example.com`, `${local}@XN--MLLER-KVA.example.com`]) {
      const signedIn = await call(LOGIN, { input: { identifier, password } });
      expect(signedIn.data?.login.user.id, identifier).toBe(unicode.data?.register.user.id);
    }
  });

  it('refuses a domain that is not a valid internationalised name, in either form', async () => {
    for (const email of ['a@xn--zz.example.com', 'a@exa mple.com', 'a@exa\u200Bmple.com']) {
      expectBadInput(await call(REGISTER, { input: newAccountInput({ email }) }), 'email');
    }
  });
});

describe('tokens are matched exactly', () => {
  const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

  it('refuses an access token with "=" appended, or with another spelling of its last character', async () => {
    const account = await registerAccount();
    const token = account.accessToken;
    const last = ALPHABET.indexOf(token.at(-1)!);
    // The last of 43 base64url characters carries 4 bits; flipping its lowest bit decodes to the same bytes.
    const respelled = `${token.slice(0, -1)}${ALPHABET[last ^ 1]}`;
    expect((await call(ME, {}, token)).data?.me.id).toBe(account.user.id);
    for (const variant of [`${token}=`, `${token}==`, respelled, ` ${token}`.trim() + '.']) {
      expect(errorCode(await call(ME, {}, variant)), variant.slice(-4)).toBe('UNAUTHENTICATED');
    }
  });
});

describe('request headers kept by the server', () => {
  it('store no control or invisible formatting character of a User-Agent: what an admin reads cannot steer a terminal or reorder text', async () => {
    const account = await registerAccount();
    // Over a raw socket: the header's bytes as an attacker sends them (Latin-1: 0x9B is the C1
    // control sequence introducer, 0x85 a next-line, 0xAD a soft hyphen), with a tab.
    const body = JSON.stringify({ query: 'mutation L($input: LoginInput!) { login(input: $input) { accessToken } }', variables: { input: { identifier: account.user.email, password: account.password } } });
    const hostile = Buffer.concat([Buffer.from('Mozilla/5.0 '), Buffer.from([0x9b, 0x33, 0x31, 0x6d, 0x85, 0x09, 0xad]), Buffer.from(' evil')]);
    const request = Buffer.concat([
      Buffer.from(`POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Forwarded-For: 10.99.0.1\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\nUser-Agent: `),
      hostile,
      Buffer.from(`\r\n\r\n${body}`),
    ]);
    const answer = await rawRequest(Number(new URL(server.origin).port), request);
    expect(answer.status).toBe(200);
    const accessToken = JSON.parse(answer.text.slice(answer.text.indexOf('\r\n\r\n') + 4)).data.login.accessToken as string;
    const sessions = await call('{ sessions { userAgent current } }', {}, accessToken);
    const stored = (sessions.data!.sessions as Array<{ userAgent: string; current: boolean }>).find((session) => session.current)!.userAgent;
    expect(stored).toBe('Mozilla/5.0 \uFFFD31m\uFFFD\uFFFD\uFFFD evil');
    const events = await call('query E($userId: ID) { auditEvents(first: 5, userId: $userId) { edges { node { type userAgent } } } }', { userId: account.user.id }, adminToken);
    const login = (events.data!.auditEvents.edges as Array<{ node: { type: string; userAgent: string } }>).find((edge) => edge.node.type === 'LOGIN_SUCCEEDED')!;
    expect(login.node.userAgent).toBe(stored);
  });
});

import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BadUserInputError } from '../src/errors.js';
import { checkNewPassword, commonPasswords, normalizePassword, PASSWORD_LIMITS } from '../src/modules/passwords/password-policy.js';
import { PasswordHasher } from '../src/modules/passwords/password.js';

const COST = 4;
const PEPPER = randomBytes(32);
const NOBODY = {};

/** A password of `length` code points that is in no list and contains nobody's name. */
function ofLength(length: number): string {
  const seed = 'Vq7!mZt3;kWr9@Lp';
  return seed.repeat(Math.ceil(length / seed.length)).slice(0, length);
}

/** The BadUserInputError that `checkNewPassword` throws, or a failure when it accepts. */
function refusal(password: string, owner: Parameters<typeof checkNewPassword>[1] = NOBODY): BadUserInputError {
  try {
    checkNewPassword(password, owner);
  } catch (error) {
    expect(error).toBeInstanceOf(BadUserInputError);
    expect((error as BadUserInputError).field).toBe('password');
    return error as BadUserInputError;
  }
  throw new Error(`checkNewPassword accepted ${JSON.stringify(password)}`);
}

const EMOJI = '\u{1F600}'; // 4 bytes of UTF-8, 2 UTF-16 code units, 1 code point

describe('checkNewPassword: length', () => {
  it('refuses 11 code points and accepts 12', () => {
    expect(refusal(ofLength(11)).message).toMatch(/at least 12 characters/);
    expect(checkNewPassword(ofLength(12), NOBODY)).toBe(ofLength(12));
  });

  it('accepts 256 code points and refuses 257', () => {
    expect(checkNewPassword(ofLength(256), NOBODY)).toBe(ofLength(256));
    expect(refusal(ofLength(257)).message).toMatch(/at most 256 characters/);
  });

  it('counts code points, not bytes or UTF-16 units', () => {
    expect(Buffer.byteLength(EMOJI.repeat(12))).toBe(48);
    expect(checkNewPassword(EMOJI.repeat(12), NOBODY)).toBe(EMOJI.repeat(12));
    expect(refusal(EMOJI.repeat(11)).message).toMatch(/at least/);
    expect(checkNewPassword(EMOJI.repeat(256), NOBODY)).toBe(EMOJI.repeat(256));
    expect(refusal(EMOJI.repeat(257)).message).toMatch(/at most/);
  });

  it('counts after NFKC: a ligature that expands to two letters counts as two', () => {
    // U+FB01 "ﬁ" becomes "fi": 11 code points as typed, 12 after normalization.
    const password = `${ofLength(10)}\uFB01`;
    expect([...password]).toHaveLength(11);
    expect(checkNewPassword(password, NOBODY)).toBe(`${ofLength(10)}fi`);
    expect(PASSWORD_LIMITS).toEqual({ minLength: 12, maxLength: 256 });
  });
});

describe('checkNewPassword: characters', () => {
  it.each([
    ['NUL', '\u0000'],
    ['a tab', '\t'],
    ['a line feed', '\n'],
    ['a carriage return', '\r'],
    ['an escape', '\u001b'],
    ['DEL', '\u007f'],
    ['a C1 control (NEL)', '\u0085'],
  ])('refuses a password containing %s', (_name, control) => {
    expect(refusal(`${ofLength(8)}${control}${ofLength(8)}`).message).toMatch(/control characters/);
  });

  it('returns the NFKC form: full-width letters become ASCII', () => {
    expect(checkNewPassword('\uFF23\uFF4F\uFF52\uFF52\uFF45\uFF43\uFF54 horse 42', NOBODY)).toBe('Correct horse 42');
  });
});

describe('checkNewPassword: common passwords', () => {
  it('loads the whole list once, normalized and lower-cased', () => {
    const list = commonPasswords();
    expect(list.size).toBeGreaterThan(40_000);
    for (const entry of list) expect(entry).toBe(normalizePassword(entry).toLowerCase());
    expect(commonPasswords()).toBe(list);
  });

  it('refuses a listed password, naming the rule', () => {
    expect(commonPasswords().has('qwerty123456')).toBe(true);
    expect(refusal('qwerty123456').message).toMatch(/commonly used passwords/);
  });

  it('matches ignoring letter case and after NFKC', () => {
    expect(commonPasswords().has('passwordpassword')).toBe(true);
    expect(refusal('PassWordPASSWORD').message).toMatch(/commonly used/);
    // Full-width "ｑｗｅｒｔｙ" normalizes to "qwerty".
    expect(refusal('\uFF51\uFF57\uFF45\uFF52\uFF54\uFF59123456').message).toMatch(/commonly used/);
  });

  it('refuses a listed password padded with digits or symbols to reach the length', () => {
    expect(commonPasswords().has('monkey')).toBe(true);
    expect(refusal('monkey123456').message).toMatch(/digits or symbols added/);
    expect(refusal('!!iloveyou2024!!').message).toMatch(/digits or symbols added/);
  });

  it('does not refuse a listed password inside a longer passphrase', () => {
    expect(checkNewPassword('qwerty123456 and more', NOBODY)).toBe('qwerty123456 and more');
    expect(checkNewPassword('monkey business at noon', NOBODY)).toBe('monkey business at noon');
  });

  it('does not refuse short listed words padded with digits', () => {
    expect(commonPasswords().has('love')).toBe(true);
    expect(checkNewPassword('love-2024-1234-56', NOBODY)).toBe('love-2024-1234-56');
  });
});

describe("checkNewPassword: the owner's email and username", () => {
  const owner = { email: 'bob.jones@example.com', username: 'Alice_Smith' };

  it('refuses a password containing the username in another letter case', () => {
    expect(refusal('my name is ALICE_smith!', owner).message).toMatch(/username/);
  });

  it('refuses a password containing the local part of the email', () => {
    expect(refusal('Bob.Jones rules the world', owner).message).toMatch(/email address/);
  });

  it('accepts a password containing only the domain of the email', () => {
    expect(checkNewPassword('example.com is my site', owner)).toBe('example.com is my site');
  });

  it('ignores a local part shorter than 3 characters', () => {
    expect(checkNewPassword('absolutely fabulous day', { email: 'ab@example.com' })).toBe('absolutely fabulous day');
  });

  it('applies with a 3-character local part', () => {
    expect(refusal('absolutely fabulous day', { email: 'abs@example.com' }).message).toMatch(/email address/);
  });

  it('accepts a password when the owner is unknown or null', () => {
    expect(checkNewPassword('Alice_Smith bob.jones', { email: null, username: null })).toBe('Alice_Smith bob.jones');
  });
});

describe('PasswordHasher', () => {
  let hasher: PasswordHasher;
  beforeAll(async () => {
    hasher = await PasswordHasher.create(COST, PEPPER);
  });
  afterAll(() => hasher?.close());

  it('stores the current scheme, tagged, at the configured cost', async () => {
    const stored = await hasher.hash('correct horse battery staple');
    expect(stored).toMatch(/^hmac-bcrypt:\$2b\$04\$[./A-Za-z0-9]{53}$/);
    expect(await hasher.verify('correct horse battery staple', stored)).toBe(true);
    expect(await hasher.verify('correct horse battery stapl', stored)).toBe(false);
    expect(hasher.needsRehash(stored)).toBe(false);
  });

  // Linux only: thread priorities are read from /proc.
  const threadNice = (): Array<{ tid: number; nice: number }> =>
    readdirSync('/proc/self/task').map((tid) => {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      // Fields after "(comm)": state is field 3, nice is field 19.
      return { tid: Number(tid), nice: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]) };
    });
  const mainNice = existsSync('/proc/self/task') ? threadNice().find((thread) => thread.tid === process.pid)?.nice : undefined;

  it.skipIf(mainNice === undefined || mainNice >= 19)('hashes in worker threads at the lowest CPU priority, while the event loop keeps its own', async () => {
    await hasher.hash('correct horse battery staple');
    const threads = threadNice();
    expect(threads.find((thread) => thread.tid === process.pid)?.nice).toBe(mainNice);
    expect(threads.filter((thread) => thread.nice === 19).length).toBeGreaterThanOrEqual(1);
  });

  it('verifies a password typed in full-width letters against the hash of its ASCII form', async () => {
    const stored = await hasher.hash('Correct horse 42');
    expect(await hasher.verify('\uFF23\uFF4F\uFF52\uFF52\uFF45\uFF43\uFF54 horse 42', stored)).toBe(true);
  });

  describe('never truncates', () => {
    const base = 'p'.repeat(100);
    const differingAt = (byte: number) => `${base.slice(0, byte - 1)}X${base.slice(byte)}`;

    it.each([72, 73, 100])('two 100-byte passwords differing only in byte %i do not verify each other', async (byte) => {
      const a = base;
      const b = differingAt(byte);
      expect(Buffer.byteLength(a)).toBe(100);
      expect(Buffer.byteLength(b)).toBe(100);
      const [hashA, hashB] = await Promise.all([hasher.hash(a), hasher.hash(b)]);
      expect(await hasher.verify(b, hashA)).toBe(false);
      expect(await hasher.verify(a, hashB)).toBe(false);
      expect(await hasher.verify(a, hashA)).toBe(true);
      expect(await hasher.verify(b, hashB)).toBe(true);
    });

    it('plain bcrypt would have confused the byte-73 pair (the test above means something)', async () => {
      const plain = await bcrypt.hash(base, COST);
      expect(await bcrypt.compare(differingAt(73), plain)).toBe(true);
      expect(await bcrypt.compare(differingAt(72), plain)).toBe(false);
    });

    it('tells apart passwords whose only difference is the second byte of a character straddling bytes 72–73', async () => {
      const a = `${'p'.repeat(71)}\u00E9${'q'.repeat(27)}`; // é = C3 A9
      const b = `${'p'.repeat(71)}\u00E8${'q'.repeat(27)}`; // è = C3 A8
      expect(Buffer.byteLength(a)).toBe(100);
      expect(Buffer.from(a).compare(Buffer.from(b), 0, 72, 0, 72)).toBe(0);
      const hashA = await hasher.hash(a);
      expect(await hasher.verify(b, hashA)).toBe(false);
      expect(await hasher.verify(a, hashA)).toBe(true);
    });

    it('tells apart 256-emoji passwords (1 KiB) differing only in the last character', async () => {
      const a = EMOJI.repeat(256);
      const b = `${EMOJI.repeat(255)}\u{1F601}`;
      const hashA = await hasher.hash(a);
      expect(await hasher.verify(b, hashA)).toBe(false);
      expect(await hasher.verify(a, hashA)).toBe(true);
    });
  });

  it('does not verify a hash made with another pepper', async () => {
    const other = await PasswordHasher.create(COST, randomBytes(32));
    const stored = await other.hash('correct horse battery staple');
    await other.close();
    expect(await hasher.verify('correct horse battery staple', stored)).toBe(false);
  });

  it('refuses a pepper shorter than 32 bytes', async () => {
    await expect(PasswordHasher.create(COST, randomBytes(31))).rejects.toThrow(/32 bytes/);
  });

  describe('plain bcrypt hashes from another system', () => {
    // "ﬁ" (U+FB01) changes under NFKC: a plain hash is compared with the password as typed.
    const typed = 'imported pass\uFB01e';

    it.each(['$2b$', '$2a$', '$2y$'])('verifies a %s hash of the password as typed, and asks for a rehash', async (prefix) => {
      const salt = (await bcrypt.genSalt(COST)).replace(/^\$2b\$/, prefix);
      const stored = await bcrypt.hash(typed, salt);
      expect(stored.startsWith(prefix)).toBe(true);
      expect(await hasher.verify(typed, stored)).toBe(true);
      expect(await hasher.verify(normalizePassword(typed), stored)).toBe(false);
      expect(await hasher.verify('imported passfie!', stored)).toBe(false);
      expect(hasher.needsRehash(stored)).toBe(true);
    });
  });

  it('asks for a rehash of a current-scheme hash made at another cost', async () => {
    const costlier = await PasswordHasher.create(COST + 1, PEPPER);
    const stored = await costlier.hash('correct horse battery staple');
    expect(await hasher.verify('correct horse battery staple', stored)).toBe(true);
    expect(hasher.needsRehash(stored)).toBe(true);
    expect(costlier.needsRehash(stored)).toBe(false);
    await costlier.close();
  });

  it.each([
    ['an empty string', ''],
    ['garbage', 'garbage'],
    ['an unknown scheme', 'argon2id:$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA'],
    ['the dropped sha256-bcrypt scheme', `sha256-bcrypt:${bcrypt.hashSync('x', COST)}`],
    ['the current tag with garbage after it', 'hmac-bcrypt:garbage'],
    ['a bcrypt-shaped value with an impossible cost', `$2b$99$${'a'.repeat(53)}`],
    ['a bcrypt-shaped value with an unknown revision', `$2x$04$${'a'.repeat(53)}`],
    ['the current tag with an impossible cost', `hmac-bcrypt:$2b$99$${'a'.repeat(53)}`],
  ])('never verifies against %s, and asks for a rehash', async (_name, stored) => {
    expect(await hasher.verify('x', stored)).toBe(false);
    expect(await hasher.verify('correct horse battery staple', stored)).toBe(false);
    expect(hasher.needsRehash(stored)).toBe(true);
  });

  it('verifyNothing returns false', async () => {
    expect(await hasher.verifyNothing('correct horse battery staple')).toBe(false);
    expect(await hasher.verifyNothing('')).toBe(false);
  });
});

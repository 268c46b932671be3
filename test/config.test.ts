import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, readEnvFile } from '../src/config/config.js';
import { deriveKeys } from '../src/keys.js';

const tempDir = () => mkdtempSync(join(tmpdir(), 'user-server-config-'));
const SECRET = 'x'.repeat(32);

function problemsOf(env: Record<string, string>): readonly string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const dataDir = tempDir();
    const config = loadConfig({ DATA_DIR: dataDir });
    expect(config).toMatchObject({
      nodeEnv: 'development',
      isProduction: false,
      port: 4000,
      host: '0.0.0.0',
      databaseUrl: undefined,
      databaseConnectTimeoutSeconds: 60,
      dataDir,
      appUrl: 'http://localhost:4000',
      smtpUrl: undefined,
      mailFrom: 'no-reply@localhost',
      bcryptCost: 12,
      admin: undefined,
      logLevel: 'info',
      trustProxyHops: 0,
      rateLimitScale: 1,
      links: { resetPassword: 'http://localhost:4000/reset-password', lockdown: 'http://localhost:4000/lockdown' },
      tokenLifetimes: { accessTokenSeconds: 900, refreshTokenSeconds: 2_592_000, refreshReuseIntervalSeconds: 10 },
      corsOrigins: undefined,
      retention: { sessionDays: 30, auditDays: 400, intervalSeconds: 3600 },
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('points links wherever RESET_PASSWORD_URL and LOCKDOWN_URL say, deep links included, without moving the token issuer', () => {
    const config = loadConfig({ DATA_DIR: tempDir(), APP_URL: 'https://auth.example.com', RESET_PASSWORD_URL: 'myapp://reset', LOCKDOWN_URL: 'https://app.example.com/account/lockdown?from=mail' });
    expect(config.appUrl).toBe('https://auth.example.com');
    expect(config.links).toEqual({ resetPassword: 'myapp://reset', lockdown: 'https://app.example.com/account/lockdown?from=mail' });
  });

  it('refuses link targets that are relative, run script, or have a fragment', () => {
    for (const bad of ['/reset', 'reset-password', 'javascript:alert(1)', 'data:text/html,hi', 'file:///etc/passwd', 'https://app.example.com/reset#x', 'https://app.example.com/a b']) {
      const problems = problemsOf({ DATA_DIR: tempDir(), RESET_PASSWORD_URL: bad, LOCKDOWN_URL: bad });
      expect(problems.filter((problem) => /^(RESET_PASSWORD_URL|LOCKDOWN_URL) /.test(problem)), bad).toHaveLength(2);
    }
  });

  it('refuses plain http:// link targets in production, but for loopback', () => {
    const production = { DATA_DIR: tempDir(), NODE_ENV: 'production', JWT_SECRET: 's'.repeat(48) };
    const problems = problemsOf({ ...production, RESET_PASSWORD_URL: 'http://app.example.com/reset', LOCKDOWN_URL: 'http://app.example.com/lockdown' });
    expect(problems.filter((problem) => /^(RESET_PASSWORD_URL|LOCKDOWN_URL) must use https/.test(problem))).toHaveLength(2);
    expect(problemsOf({ ...production, RESET_PASSWORD_URL: 'http://localhost:5173/reset', LOCKDOWN_URL: 'myapp://lockdown' }).filter((problem) => /_URL /.test(problem))).toEqual([]);
    expect(problemsOf({ DATA_DIR: tempDir(), RESET_PASSWORD_URL: 'http://app.example.com/reset' })).toEqual([]);
    // The defaults under APP_URL too.
    expect(problemsOf({ ...production, APP_URL: 'http://auth.example.com' }).filter((problem) => /^(RESET_PASSWORD_URL|LOCKDOWN_URL) \(by default under APP_URL\) must use https/.test(problem))).toHaveLength(2);
    expect(problemsOf({ ...production, APP_URL: 'https://auth.example.com' })).toEqual([]);
  });

  it('reads token lifetimes within their ranges', () => {
    const config = loadConfig({ DATA_DIR: tempDir(), ACCESS_TOKEN_TTL: '60', REFRESH_TOKEN_TTL: '3600', REFRESH_TOKEN_REUSE_INTERVAL: '0' });
    expect(config.tokenLifetimes).toEqual({ accessTokenSeconds: 60, refreshTokenSeconds: 3600, refreshReuseIntervalSeconds: 0 });
    const problems = problemsOf({ DATA_DIR: tempDir(), ACCESS_TOKEN_TTL: '59', REFRESH_TOKEN_TTL: '31536001', REFRESH_TOKEN_REUSE_INTERVAL: '-1' });
    for (const name of ['ACCESS_TOKEN_TTL', 'REFRESH_TOKEN_TTL', 'REFRESH_TOKEN_REUSE_INTERVAL']) expect(problems.some((problem) => problem.startsWith(name)), name).toBe(true);
    expect(problemsOf({ DATA_DIR: tempDir(), ACCESS_TOKEN_TTL: '60', REFRESH_TOKEN_REUSE_INTERVAL: '300' })).toEqual(['REFRESH_TOKEN_REUSE_INTERVAL (300) must not be longer than ACCESS_TOKEN_TTL (60)']);
    expect(problemsOf({ DATA_DIR: tempDir(), ACCESS_TOKEN_TTL: '86400', REFRESH_TOKEN_TTL: '3600' })).toEqual(['REFRESH_TOKEN_TTL (3600) must not be shorter than ACCESS_TOKEN_TTL (86400)']);
  });

  it('reads CORS_ORIGINS as exact origins and refuses anything else', () => {
    const config = loadConfig({ DATA_DIR: tempDir(), CORS_ORIGINS: ' https://App.Example.com , http://localhost:5173' });
    expect(config.corsOrigins).toEqual(['https://app.example.com', 'http://localhost:5173']);
    for (const bad of ['*', 'app.example.com', 'https://app.example.com/', 'https://app.example.com/path', 'ftp://files.example.com', ',']) {
      expect(problemsOf({ DATA_DIR: tempDir(), CORS_ORIGINS: bad }).some((problem) => problem.startsWith('CORS_ORIGINS')), bad).toBe(true);
    }
    // Production: https only, but for loopback.
    const production = { DATA_DIR: tempDir(), NODE_ENV: 'production', JWT_SECRET: SECRET };
    expect(problemsOf({ ...production, CORS_ORIGINS: 'http://app.example.com' })).toEqual(['CORS_ORIGINS entry "http://app.example.com" must use https:// in production']);
    expect(problemsOf({ ...production, CORS_ORIGINS: 'https://app.example.com,http://localhost:5173' })).toEqual([]);
  });

  it('refuses a wildcard in CORS_ORIGINS, which the URL parser would otherwise keep as a literal host no browser sends', () => {
    for (const bad of ['https://*.example.com', '*', 'https://app.example.com,https://*.example.com', 'http://localhost:*']) {
      expect(problemsOf({ DATA_DIR: tempDir(), CORS_ORIGINS: bad }), bad).toEqual([
        `CORS_ORIGINS entry "${bad.split(',').at(-1)}" has a wildcard: CORS_ORIGINS lists exact origins (name each one, e.g. https://app.example.com,https://admin.example.com; leave it unset to allow any origin without credentials)`,
      ]);
    }
  });

  it('refuses an APP_URL with a ?query, #fragment or user info, which would misplace every default link and the issuer', () => {
    const problem =
      "APP_URL must be an origin with an optional path, such as https://auth.example.com or https://example.com/auth, without a ?query, #fragment or user:password@ (it is the access tokens' issuer and audience, and the base of the links in emails)";
    for (const bad of ['http://localhost:41203#app', 'https://h.example.com/?a=b', 'https://h.example.com/auth?', 'https://h.example.com/#', 'https://user:pw@h.example.com', 'https://user@h.example.com/auth', 'https://@h.example.com']) {
      expect(problemsOf({ DATA_DIR: tempDir(), APP_URL: bad }), bad).toEqual([problem]);
      // One problem, also in production (the links' default is not reported a second time).
      expect(problemsOf({ DATA_DIR: tempDir(), NODE_ENV: 'production', JWT_SECRET: SECRET, APP_URL: bad }), bad).toEqual([problem]);
    }
    // An origin with a path is fine; a path segment with "@" in it is a path, not user info.
    const config = loadConfig({ DATA_DIR: tempDir(), APP_URL: 'https://example.com/auth/' });
    expect(config.appUrl).toBe('https://example.com/auth');
    expect(config.links).toEqual({ resetPassword: 'https://example.com/auth/reset-password', lockdown: 'https://example.com/auth/lockdown' });
    expect(loadConfig({ DATA_DIR: tempDir(), APP_URL: 'https://example.com/@auth' }).appUrl).toBe('https://example.com/@auth');
  });

  it('keeps WEBHOOK_ALLOWED_HOSTS entries as the URL parser writes hosts, so an IP matches however it is spelt', () => {
    const entries = ['0:0:0:0:0:0:0:1', '[::ffff:127.0.0.1]', '127.1', 'FD00::0001', '0x7f.0.0.2', 'Hooks.Example.com', 'hook_receiver'];
    const { allowedHosts } = loadConfig({ DATA_DIR: tempDir(), WEBHOOK_ALLOWED_HOSTS: entries.join(' , ') }).webhooks;
    expect(allowedHosts).toEqual(['::1', '::ffff:7f00:1', '127.0.0.1', 'fd00::1', '127.0.0.2', 'hooks.example.com', 'hook_receiver']);
    // Each matches the host of the URL that names it, as that URL's parser writes it.
    const urls = ['http://[0:0:0:0:0:0:0:1]:41510/', 'http://[::ffff:127.0.0.1]/', 'http://127.1/', 'http://[fd00::0001]/', 'http://0x7f.0.0.2/', 'https://HOOKS.example.com/', 'http://hook_receiver:8080/'];
    expect(urls.map((url) => new URL(url).hostname.replace(/^\[(.*)\]$/, '$1'))).toEqual(allowedHosts);
  });

  it('refuses WEBHOOK_ALLOWED_HOSTS entries with a scheme, port, path, user or space, and IP addresses the URL parser refuses', () => {
    for (const bad of ['https://hooks.example.com', 'hooks.example.com:8080', 'hooks.example.com/path', 'user@hooks.example.com', 'hook receiver', '[::1]:80', 'fe80::1%eth0']) {
      expect(problemsOf({ DATA_DIR: tempDir(), WEBHOOK_ALLOWED_HOSTS: bad }), bad).toEqual([
        `WEBHOOK_ALLOWED_HOSTS entry "${bad}" must be a host name or an IP address (no scheme, port or path)`,
      ]);
    }
    for (const bad of ['999.1.1.1', '1.2.3.4.5', '1:2:3:4:5:6:7:8:9', ':::1']) {
      expect(problemsOf({ DATA_DIR: tempDir(), WEBHOOK_ALLOWED_HOSTS: bad }), bad).toEqual([`WEBHOOK_ALLOWED_HOSTS entry "${bad}" is not a valid host name or IP address`]);
    }
  });

  it('reports every invalid variable at once, in one message', () => {
    const env = {
      NODE_ENV: 'staging',
      PORT: 'eighty',
      DATABASE_URL: 'mysql://localhost/db',
      APP_URL: 'not a url',
      SMTP_URL: 'http://mail',
      MAIL_FROM: 'nobody',
      BCRYPT_COST: '3',
      ADMIN_EMAIL: 'admin@example.com',
      LOG_LEVEL: 'loud',
      TRUST_PROXY: '-1',
      RATE_LIMIT_SCALE: 'lots',
      JWT_SECRET: 'short',
      HMAC_SECRET: 'short',
      DATABASE_CONNECT_TIMEOUT: '-5',
      SESSION_RETENTION_DAYS: '0',
      AUDIT_RETENTION_DAYS: 'a year',
      MAINTENANCE_INTERVAL_SECONDS: '0.5',
      DATA_DIR: tempDir(),
    };
    const problems = problemsOf(env);
    const names = ['NODE_ENV', 'PORT', 'DATABASE_URL', 'APP_URL', 'SMTP_URL', 'MAIL_FROM', 'BCRYPT_COST', 'ADMIN_PASSWORD', 'LOG_LEVEL', 'TRUST_PROXY', 'RATE_LIMIT_SCALE', 'JWT_SECRET', 'HMAC_SECRET',
      'DATABASE_CONNECT_TIMEOUT', 'SESSION_RETENTION_DAYS', 'AUDIT_RETENTION_DAYS', 'MAINTENANCE_INTERVAL_SECONDS'];
    for (const name of names) {
      expect(problems.some((problem) => problem.includes(name)), name).toBe(true);
    }
    expect(() => loadConfig(env)).toThrow(/^Invalid configuration:\n {2}- /);
  });

  it('refuses to start in production without a JWT secret', () => {
    expect(problemsOf({ NODE_ENV: 'production', DATA_DIR: tempDir() })).toEqual([
      'JWT_SECRET is required in production (at least 32 random bytes)',
    ]);
  });

  it('in production requires JWT_SECRET with EdDSA only when HMAC_SECRET, which would default to it, is unset', () => {
    const dataDir = tempDir();
    const privateKey = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const eddsa = { NODE_ENV: 'production', DATA_DIR: dataDir, JWT_ALGORITHM: 'EdDSA', JWT_PRIVATE_KEY: privateKey };
    const config = loadConfig({ ...eddsa, HMAC_SECRET: 'h'.repeat(32) });
    expect(config.jwtSigning.algorithm).toBe('EdDSA');
    expect(config.jwtSecretGenerated).toBe(false);
    // Nothing kept in DATA_DIR: production never generates a secret there.
    expect(existsSync(join(dataDir, 'jwt-secret'))).toBe(false);
    expect(problemsOf(eddsa)).toEqual([
      'JWT_SECRET or HMAC_SECRET is required in production with JWT_ALGORITHM=EdDSA (at least 32 random bytes): the password pepper and other keys are derived from HMAC_SECRET, or from JWT_SECRET when HMAC_SECRET is unset; set HMAC_SECRET',
    ]);
    expect(problemsOf({ ...eddsa, JWT_SECRET: SECRET })).toEqual([]);
    // HS256 signs with it: required whatever HMAC_SECRET says.
    expect(problemsOf({ NODE_ENV: 'production', DATA_DIR: tempDir(), HMAC_SECRET: 'h'.repeat(32) })).toEqual(['JWT_SECRET is required in production (at least 32 random bytes)']);
    expect(problemsOf({ NODE_ENV: 'production', DATA_DIR: tempDir(), JWT_ALGORITHM: 'HS256', HMAC_SECRET: 'h'.repeat(32) })).toEqual(['JWT_SECRET is required in production (at least 32 random bytes)']);
  });

  it('refuses a JWT secret shorter than 32 bytes', () => {
    expect(problemsOf({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(31) })).toEqual(['JWT_SECRET must be at least 32 bytes long']);
  });

  it('accepts a production configuration with a strong secret and never generates one', () => {
    const dataDir = tempDir();
    const config = loadConfig({ NODE_ENV: 'production', JWT_SECRET: SECRET, DATA_DIR: dataDir });
    expect(config.jwtSecret).toBe(SECRET);
    expect(config.jwtSecretGenerated).toBe(false);
    expect(() => statSync(join(dataDir, 'jwt-secret'))).toThrow();
  });

  it('outside production generates a JWT secret once and keeps it in DATA_DIR', () => {
    const dataDir = tempDir();
    const first = loadConfig({ DATA_DIR: dataDir });
    const second = loadConfig({ DATA_DIR: dataDir });
    expect(first.jwtSecretGenerated).toBe(true);
    expect(Buffer.byteLength(first.jwtSecret)).toBeGreaterThanOrEqual(32);
    expect(second.jwtSecret).toBe(first.jwtSecret);
    expect(readFileSync(join(dataDir, 'jwt-secret'), 'utf8').trim()).toBe(first.jwtSecret);
    expect(statSync(join(dataDir, 'jwt-secret')).mode & 0o077).toBe(0);
  });

  it('derives APP_URL from PORT and drops a trailing slash from a configured one', () => {
    expect(loadConfig({ PORT: '8080', DATA_DIR: tempDir() }).appUrl).toBe('http://localhost:8080');
    expect(loadConfig({ APP_URL: 'https://auth.example.com/', DATA_DIR: tempDir() }).appUrl).toBe('https://auth.example.com');
  });

  it('creates the first admin only from a complete pair, with username "admin" by default', () => {
    expect(loadConfig({ ADMIN_EMAIL: 'root@example.com', ADMIN_PASSWORD: 'p'.repeat(12), DATA_DIR: tempDir() }).admin).toEqual({
      email: 'root@example.com',
      password: 'p'.repeat(12),
      username: 'admin',
    });
    expect(problemsOf({ ADMIN_PASSWORD: 'p'.repeat(12), DATA_DIR: tempDir() })).toEqual(['ADMIN_EMAIL and ADMIN_PASSWORD must be set together']);
    expect(problemsOf({ ADMIN_USERNAME: 'root', DATA_DIR: tempDir() })).toEqual(['ADMIN_USERNAME is set without ADMIN_EMAIL and ADMIN_PASSWORD, which it goes with']);
  });
});

describe('.env file', () => {
  it('is parsed when present and absent otherwise', () => {
    const dir = tempDir();
    expect(readEnvFile(dir)).toEqual({});
    writeFileSync(join(dir, '.env'), '# comment\nPORT=5000\nAPP_URL="https://example.com"\n');
    expect(readEnvFile(dir)).toEqual({ PORT: '5000', APP_URL: 'https://example.com' });
  });
});

describe('derived keys', () => {
  it('come from HMAC_SECRET when set, so JWT_SECRET can be rotated without touching password hashes', () => {
    const hmacSecret = 'h'.repeat(32);
    const before = deriveKeys(loadConfig({ JWT_SECRET: 'a'.repeat(32), HMAC_SECRET: hmacSecret, DATA_DIR: tempDir() }));
    const after = deriveKeys(loadConfig({ JWT_SECRET: 'b'.repeat(32), HMAC_SECRET: hmacSecret, DATA_DIR: tempDir() }));
    expect(after.passwordPepper.equals(before.passwordPepper)).toBe(true);
    expect(after.oneTimeTokens.equals(before.oneTimeTokens)).toBe(true);
  });

  it('differ per purpose, and follow JWT_SECRET when HMAC_SECRET is unset', () => {
    const keys = deriveKeys(loadConfig({ JWT_SECRET: 'a'.repeat(32), DATA_DIR: tempDir() }));
    expect(new Set([keys.passwordPepper, keys.oneTimeTokens, keys.mailOutbox].map((key) => key.toString('hex'))).size).toBe(3);
    const rotated = deriveKeys(loadConfig({ JWT_SECRET: 'b'.repeat(32), DATA_DIR: tempDir() }));
    expect(rotated.passwordPepper.equals(keys.passwordPepper)).toBe(false);
  });
});

import type { Database } from './db/database.js';
import type { Config } from './config/config.js';
import { OutageLog } from './db/outage.js';
import { deriveKeys } from './keys.js';
import type { Logger } from './logger.js';
import { namedStatements } from './db/named-statements.js';
import { MailOutbox, type OutboxOptions } from './mail/outbox.js';
import { createMailTransport } from './mail/transport.js';
import { AuditService } from './modules/audit/audit.service.js';
import { OneTimeTokenService } from './modules/one-time-tokens/one-time-token.service.js';
import { PasswordHasher } from './modules/passwords/password.js';
import { RecoveryService } from './modules/recovery/recovery.service.js';
import { SessionService } from './modules/sessions/session.service.js';
import { SignInGate } from './modules/sessions/sign-in-gate.js';
import { AccessTokens } from './modules/sessions/tokens.js';
import { AuthService } from './modules/sign-in/auth.service.js';
import { DeviceTokens } from './modules/sign-in/device-tokens.js';
import { LoginBackoff } from './modules/sign-in/login-backoff.js';
import { LoginGuard } from './modules/sign-in/login-guard.js';
import { Reauthentication } from './modules/sign-in/reauthentication.js';
import { ProfileService } from './modules/users/profile.service.js';
import { UserAdminService } from './modules/users/user-admin.service.js';
import { UserService } from './modules/users/user.service.js';
import { VerificationService } from './modules/verification/verification.service.js';
import { RateLimits } from './rate-limits.js';
import { SecretBox } from './secret-box.js';
import { EmailChangeService } from './modules/email-change/email-change.service.js';
import { LockdownService } from './modules/lockdown/lockdown.service.js';
import { SecurityNotices } from './modules/lockdown/security-notices.js';
import { MfaService } from './modules/mfa/mfa.service.js';
import { RecoveryCodes } from './modules/mfa/recovery-codes.js';
import { SecondFactor } from './modules/mfa/second-factor.js';
import { TotpAuthenticator } from './modules/mfa/totp.js';
import { DestinationPolicy, type HostResolver } from './modules/webhooks/destination.js';
import { UserEvents } from './modules/webhooks/user-events.js';
import { DEFAULT_WEBHOOK_OPTIONS, WebhookDispatcher, type WebhookDispatchOptions } from './modules/webhooks/webhook-dispatcher.js';
import { WebhookService } from './modules/webhooks/webhook.service.js';

/** The application's services: created once per app, stateless, given an EntityManager per call. */
export interface Services {
  auth: AuthService;
  users: UserService;
  recovery: RecoveryService;
  profile: ProfileService;
  userAdmin: UserAdminService;
  audit: AuditService;
  verification: VerificationService;
  mfa: MfaService;
  /** Signs and verifies access tokens; publishes their public keys. */
  accessTokens: AccessTokens;
  emailChange: EmailChangeService;
  lockdown: LockdownService;
  /** Webhook endpoints, and the fan-out of account events to them. */
  webhooks: WebhookService;
  outbox: MailOutbox;
  limits: RateLimits;
  passwords: PasswordHasher;
  /** Where a database outage is logged: once per interval, for requests and the mail worker alike. */
  outages: OutageLog;
  /** Closed by the app when shutdown cuts the requests in flight: no session is issued after that. */
  signInGate: SignInGate;
  /** Starts the background workers: the mail outbox and the webhook dispatcher (the app does, once it listens; the CLI does not). */
  start(): void;
  /**
   * Stops what the services run and releases what they hold, in order: the mail worker (sends still
   * out at the drain limit are cut and handed back), the webhook dispatcher (attempts in flight are
   * cut short and retried later),
   * the Redis connection of the rate limiter, the hashing workers, and last the database they run on.
   * The one place that knows this order.
   */
  close(): Promise<void>;
}

/** Tuning of the background workers (tests shorten the delays), and the resolver webhooks use. */
export interface WorkerOptions {
  outbox?: OutboxOptions;
  webhooks?: WebhookDispatchOptions;
  /** How webhook hosts are resolved (default: the system resolver; tests give their own). */
  resolveHost?: HostResolver;
}

/** Wires the services from configuration, on `database` (which their `close()` closes last). */
export async function createServices(config: Config, database: Database, logger: Logger, workers: WorkerOptions = {}): Promise<Services> {
  const { orm } = database;
  const keys = deriveKeys(config);
  const passwords = await PasswordHasher.create(config.bcryptCost, keys.passwordPepper);
  const mailLogger = logger.child({ component: 'mail' });
  const outages = new OutageLog(logger);
  namedStatements.onTurnedOff = (error) =>
    logger.warn({ err: error }, 'the database cannot keep named statements (a pooler in transaction mode, or a table changed by a migration?): statements are sent unnamed from now on');
  const outbox = new MailOutbox(orm, createMailTransport(config, mailLogger), keys.mailOutbox, config.links, mailLogger, outages, workers.outbox);
  const tokens = new OneTimeTokenService(keys.oneTimeTokens);
  const users = new UserService(passwords, new UserEvents(outbox), tokens);
  const signInGate = new SignInGate();
  const sessions = new SessionService(config.tokenLifetimes, signInGate, keys.refreshTokens);
  const audit = new AuditService();
  const destinations = new DestinationPolicy(config.webhooks, workers.resolveHost);
  const webhookSecrets = new SecretBox(keys.webhookSecrets);
  const dispatcher = new WebhookDispatcher(orm, destinations, webhookSecrets, logger.child({ component: 'webhooks' }), outages, workers.webhooks ?? DEFAULT_WEBHOOK_OPTIONS);
  const limits = RateLimits.create(config, orm, logger.child({ component: 'rate-limits' }));
  const backoff = new LoginBackoff();
  const totp = new TotpAuthenticator(new SecretBox(keys.totpSecrets), new URL(config.appUrl).hostname);
  const recoveryCodes = new RecoveryCodes(keys.recoveryCodes);
  const secondFactor = new SecondFactor(totp, recoveryCodes, audit, limits);
  const notices = new SecurityNotices(tokens, outbox);
  const guard = new LoginGuard(users, limits, backoff, new DeviceTokens(keys.deviceTokens));
  const reauthentication = new Reauthentication(guard, passwords, secondFactor);
  const verification = new VerificationService(tokens, outbox, audit, limits, users);
  const accessTokens = await AccessTokens.create(config.jwtSigning, config.jwtSecret, config.appUrl, config.tokenLifetimes.accessTokenSeconds);
  const mfa = new MfaService({ totp, recoveryCodes, secondFactor, reauthentication, tokens, notices, audit, limits });
  return {
    users,
    auth: new AuthService({ users, sessions, passwords, accessTokens, verification, audit, limits, guard, tokens, secondFactor }),
    profile: new ProfileService(users, audit, reauthentication),
    userAdmin: new UserAdminService(users, sessions, audit, notices),
    audit,
    recovery: new RecoveryService({ users, sessions, passwords, tokens, outbox, audit, limits, reauthentication, notices, guard, fork: () => orm.em.fork() }),
    verification,
    mfa,
    accessTokens,
    emailChange: new EmailChangeService({ users, sessions, tokens, outbox, notices, reauthentication, audit, limits }),
    lockdown: new LockdownService({ users, sessions, tokens, mfa, outbox, audit, limits, logger: logger.child({ component: 'lockdown' }) }),
    webhooks: new WebhookService(orm, destinations, webhookSecrets, dispatcher, audit, outbox),
    outbox,
    limits,
    passwords,
    outages,
    signInGate,
    start() {
      outbox.start();
      dispatcher.start();
    },
    async close() {
      await outbox.stop();
      await dispatcher.stop();
      await limits.stop();
      await passwords.close();
      await database.close();
    },
  };
}

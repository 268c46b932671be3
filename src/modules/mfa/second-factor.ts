import type { EntityManager } from '@mikro-orm/postgresql';
import type { RateLimits } from '../../rate-limits.js';
import type { AuditService } from '../audit/audit.service.js';
import { AuditEventType } from '../audit/audit-event.entity.js';
import type { RequestMeta } from '../sessions/request-meta.js';
import type { RecoveryCodes } from './recovery-codes.js';
import type { TotpAuthenticator } from './totp.js';

/**
 * The second factor of an account with MFA on: a TOTP code (each accepted once) or a recovery
 * code (each once). Used by verifyMfa and by every re-authentication that asks for a code.
 */
export class SecondFactor {
  constructor(
    private readonly totp: TotpAuthenticator,
    private readonly recoveryCodes: RecoveryCodes,
    private readonly audit: AuditService,
    private readonly limits: RateLimits,
  ) {}

  /**
   * Whether `code` proves the second factor of the account now, spending it: a TOTP code's time
   * step (and every earlier one) cannot be used again, a recovery code is gone. Failures and spent
   * recovery codes are recorded and flushed here; callers have nothing else pending in `em`.
   */
  async check(em: EntityManager, userId: string, code: string, meta: RequestMeta, payer = userId): Promise<boolean> {
    // Counted wherever a code is asked for (sign-in and every re-authentication), apart from the
    // password's backoff: a caller who knows the password gets no more guesses by also proving it.
    // `payer` is the account, or a trusted device signing in (which pays on its own).
    await this.limits.consume('codeAttemptsPerIp', meta.ip);
    await this.limits.consume('codeAttemptsPerAccount', payer);
    const typed = code.replace(/\s/g, '');
    let proven = false;
    if (/^\d{6}$/.test(typed)) {
      // Read and written by statements: the request's unit of work may hold this user (the backoff
      // mapped it), and a flush must never write a stale step back over the accepted one.
      const [secret] = await em.getConnection().execute<Array<{ totp_secret: string }>>(
        `select "totp_secret" from "users" where "id" = ? and "mfa_enabled_at" is not null and "totp_secret" is not null`,
        [userId],
        'all',
        em.getTransactionContext(),
      );
      const step = secret ? this.totp.matchingStep(secret.totp_secret, typed) : null;
      proven = step !== null && (await this.acceptStep(em, userId, step));
    } else if (await this.recoveryCodes.use(em, userId, typed)) {
      proven = true;
      this.audit.record(em, AuditEventType.MFA_RECOVERY_CODE_USED, { userId, actorId: userId }, meta);
    }
    if (!proven) this.audit.record(em, AuditEventType.MFA_FAILED, { userId }, meta);
    await em.flush();
    return proven;
  }

  /**
   * Records `step` as the account's latest accepted TOTP step, in one conditional UPDATE: `false`
   * when that step or a later one was accepted already (a replayed code, or two requests racing
   * with one code: exactly one wins).
   */
  async acceptStep(em: EntityManager, userId: string, step: number): Promise<boolean> {
    const accepted = await em.getConnection().execute<unknown[]>(
      `update "users" set "totp_last_step" = ? where "id" = ? and ("totp_last_step" is null or "totp_last_step" < ?) returning "id"`,
      [step, userId, step],
      'all',
      em.getTransactionContext(),
    );
    return accepted.length > 0;
  }
}

import { Migration } from '@mikro-orm/migrations';

/** The audit log records MFA_ENROLLMENT_STARTED. */
export class Migration20261130095612 extends Migration {

  override async up(): Promise<void> {
    // Existing rows hold only the older types: not checked again (no scan under the table lock).
    this.addSql(`alter table "audit_events" drop constraint if exists "audit_events_type_check";`);

    this.addSql(`alter table "audit_events" add constraint "audit_events_type_check" check("type" in ('LOGIN_SUCCEEDED', 'LOGIN_FAILED', 'LOGOUT', 'SESSION_REVOKED', 'REFRESH_REUSE_DETECTED', 'PASSWORD_RESET_REQUESTED', 'PASSWORD_RESET_COMPLETED', 'PASSWORD_CHANGED', 'EMAIL_VERIFIED', 'USER_CREATED', 'USER_UPDATED', 'ROLE_CHANGED', 'USER_DEACTIVATED', 'USER_DELETED', 'MFA_CHALLENGED', 'MFA_ENROLLMENT_STARTED', 'MFA_FAILED', 'MFA_RECOVERY_CODE_USED', 'MFA_ENABLED', 'MFA_DISABLED', 'MFA_RECOVERY_CODES_REGENERATED', 'EMAIL_CHANGE_REQUESTED', 'EMAIL_CHANGED', 'ACCOUNT_LOCKED', 'EMAIL_RESTORED', 'WEBHOOK_ENDPOINT_CREATED', 'WEBHOOK_ENDPOINT_DELETED')) not valid;`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "audit_events" drop constraint if exists "audit_events_type_check";`);

    this.addSql(`alter table "audit_events" add constraint "audit_events_type_check" check("type" in ('LOGIN_SUCCEEDED', 'LOGIN_FAILED', 'LOGOUT', 'SESSION_REVOKED', 'REFRESH_REUSE_DETECTED', 'PASSWORD_RESET_REQUESTED', 'PASSWORD_RESET_COMPLETED', 'PASSWORD_CHANGED', 'EMAIL_VERIFIED', 'USER_CREATED', 'USER_UPDATED', 'ROLE_CHANGED', 'USER_DEACTIVATED', 'USER_DELETED', 'MFA_CHALLENGED', 'MFA_FAILED', 'MFA_RECOVERY_CODE_USED', 'MFA_ENABLED', 'MFA_DISABLED', 'MFA_RECOVERY_CODES_REGENERATED', 'EMAIL_CHANGE_REQUESTED', 'EMAIL_CHANGED', 'ACCOUNT_LOCKED', 'EMAIL_RESTORED', 'WEBHOOK_ENDPOINT_CREATED', 'WEBHOOK_ENDPOINT_DELETED'));`);
  }

}

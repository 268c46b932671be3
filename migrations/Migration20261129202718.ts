import { Migration } from '@mikro-orm/migrations';

export class Migration20261129202718 extends Migration {

  override async up(): Promise<void> {
    this.addSql(`create table "recovery_codes" ("id" uuid not null, "created_at" timestamptz not null, "user_id" uuid not null, "code_hash" char(64) not null, "used_at" timestamptz null, constraint "recovery_codes_pkey" primary key ("id"));`);
    this.addSql(`create index "recovery_codes_user_idx" on "recovery_codes" ("user_id");`);

    this.addSql(`alter table "recovery_codes" add constraint "recovery_codes_user_id_foreign" foreign key ("user_id") references "users" ("id") on update cascade on delete cascade;`);

    this.addSql(`alter table "audit_events" drop constraint if exists "audit_events_type_check";`);

    this.addSql(`alter table "sessions" drop constraint if exists "sessions_revoked_reason_check";`);

    this.addSql(`alter table "one_time_tokens" drop constraint if exists "one_time_tokens_purpose_check";`);

    this.addSql(`alter table "audit_events" add constraint "audit_events_type_check" check("type" in ('LOGIN_SUCCEEDED', 'LOGIN_FAILED', 'LOGOUT', 'SESSION_REVOKED', 'REFRESH_REUSE_DETECTED', 'PASSWORD_RESET_REQUESTED', 'PASSWORD_RESET_COMPLETED', 'PASSWORD_CHANGED', 'EMAIL_VERIFIED', 'USER_CREATED', 'USER_UPDATED', 'ROLE_CHANGED', 'USER_DEACTIVATED', 'USER_DELETED', 'MFA_CHALLENGED', 'MFA_FAILED', 'MFA_RECOVERY_CODE_USED', 'MFA_ENABLED', 'MFA_DISABLED', 'MFA_RECOVERY_CODES_REGENERATED', 'EMAIL_CHANGE_REQUESTED', 'EMAIL_CHANGED', 'ACCOUNT_LOCKED'));`);

    this.addSql(`alter table "users" add column "totp_secret" varchar(128) null, add column "mfa_enabled_at" timestamptz null, add column "totp_last_step" int null, add column "previous_email" varchar(254) null, add column "email_changed_at" timestamptz null;`);

    this.addSql(`alter table "sessions" add constraint "sessions_revoked_reason_check" check("revoked_reason" in ('ROTATED', 'LOGOUT', 'LOGOUT_ALL', 'REVOKED', 'REUSE_DETECTED', 'PASSWORD_RESET', 'PASSWORD_CHANGED', 'DEACTIVATED', 'EMAIL_CHANGED', 'LOCKED'));`);

    this.addSql(`alter table "one_time_tokens" add column "target" varchar(254) null;`);
    this.addSql(`alter table "one_time_tokens" add constraint "one_time_tokens_purpose_check" check("purpose" in ('PASSWORD_RESET', 'EMAIL_VERIFICATION', 'EMAIL_CHANGE', 'MFA_CHALLENGE', 'LOCKDOWN'));`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "recovery_codes" cascade;`);

    this.addSql(`alter table "audit_events" drop constraint if exists "audit_events_type_check";`);

    this.addSql(`alter table "sessions" drop constraint if exists "sessions_revoked_reason_check";`);

    this.addSql(`alter table "one_time_tokens" drop constraint if exists "one_time_tokens_purpose_check";`);

    this.addSql(`alter table "audit_events" add constraint "audit_events_type_check" check("type" in ('LOGIN_SUCCEEDED', 'LOGIN_FAILED', 'LOGOUT', 'SESSION_REVOKED', 'REFRESH_REUSE_DETECTED', 'PASSWORD_RESET_REQUESTED', 'PASSWORD_RESET_COMPLETED', 'PASSWORD_CHANGED', 'EMAIL_VERIFIED', 'USER_CREATED', 'USER_UPDATED', 'ROLE_CHANGED', 'USER_DEACTIVATED', 'USER_DELETED'));`);

    this.addSql(`alter table "users" drop column "totp_secret", drop column "mfa_enabled_at", drop column "totp_last_step", drop column "previous_email", drop column "email_changed_at";`);

    this.addSql(`alter table "sessions" add constraint "sessions_revoked_reason_check" check("revoked_reason" in ('ROTATED', 'LOGOUT', 'LOGOUT_ALL', 'REVOKED', 'REUSE_DETECTED', 'PASSWORD_RESET', 'PASSWORD_CHANGED', 'DEACTIVATED'));`);

    this.addSql(`alter table "one_time_tokens" drop column "target";`);

    this.addSql(`alter table "one_time_tokens" add constraint "one_time_tokens_purpose_check" check("purpose" in ('PASSWORD_RESET', 'EMAIL_VERIFICATION'));`);
  }

}

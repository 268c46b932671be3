import { Migration } from '@mikro-orm/migrations';

export class Migration20261129233809 extends Migration {

  override async up(): Promise<void> {
    this.addSql(`create table "webhook_endpoints" ("id" uuid not null, "created_at" timestamptz not null, "url" varchar(2048) not null, "events" text[] not null, "secret" varchar(255) not null, constraint "webhook_endpoints_pkey" primary key ("id"));`);

    this.addSql(`create table "webhook_deliveries" ("id" uuid not null, "endpoint_id" uuid not null, "webhook_id" varchar(64) not null, "event_type" varchar(40) not null, "attempt" smallint not null, "status" smallint null, "error" varchar(500) null, "created_at" timestamptz not null, constraint "webhook_deliveries_pkey" primary key ("id"));`);
    this.addSql(`create index "webhook_deliveries_created_idx" on "webhook_deliveries" ("created_at");`);
    this.addSql(`create index "webhook_deliveries_endpoint_created_idx" on "webhook_deliveries" ("endpoint_id", "created_at");`);

    this.addSql(`create table "webhook_messages" ("id" uuid not null, "created_at" timestamptz not null, "endpoint_id" uuid not null, "event_id" varchar(64) not null, "event_type" varchar(40) not null, "body" text null, "attempts" smallint not null default 0, "next_attempt_at" timestamptz not null, "locked_until" timestamptz null, "delivered_at" timestamptz null, "failed_at" timestamptz null, constraint "webhook_messages_pkey" primary key ("id"));`);
    this.addSql(`create index "webhook_messages_due_idx" on "webhook_messages" ("next_attempt_at") where "delivered_at" is null and "failed_at" is null;`);
    this.addSql(`alter table "webhook_messages" add constraint "webhook_messages_endpoint_event_unique" unique ("endpoint_id", "event_id");`);

    this.addSql(`alter table "webhook_deliveries" add constraint "webhook_deliveries_endpoint_id_foreign" foreign key ("endpoint_id") references "webhook_endpoints" ("id") on update cascade on delete cascade;`);

    this.addSql(`alter table "webhook_messages" add constraint "webhook_messages_endpoint_id_foreign" foreign key ("endpoint_id") references "webhook_endpoints" ("id") on update cascade on delete cascade;`);

    this.addSql(`alter table "audit_events" drop constraint if exists "audit_events_type_check";`);

    this.addSql(`alter table "audit_events" add constraint "audit_events_type_check" check("type" in ('LOGIN_SUCCEEDED', 'LOGIN_FAILED', 'LOGOUT', 'SESSION_REVOKED', 'REFRESH_REUSE_DETECTED', 'PASSWORD_RESET_REQUESTED', 'PASSWORD_RESET_COMPLETED', 'PASSWORD_CHANGED', 'EMAIL_VERIFIED', 'USER_CREATED', 'USER_UPDATED', 'ROLE_CHANGED', 'USER_DEACTIVATED', 'USER_DELETED', 'MFA_CHALLENGED', 'MFA_FAILED', 'MFA_RECOVERY_CODE_USED', 'MFA_ENABLED', 'MFA_DISABLED', 'MFA_RECOVERY_CODES_REGENERATED', 'EMAIL_CHANGE_REQUESTED', 'EMAIL_CHANGED', 'ACCOUNT_LOCKED', 'WEBHOOK_ENDPOINT_CREATED', 'WEBHOOK_ENDPOINT_DELETED'));`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "webhook_deliveries" drop constraint "webhook_deliveries_endpoint_id_foreign";`);

    this.addSql(`alter table "webhook_messages" drop constraint "webhook_messages_endpoint_id_foreign";`);

    this.addSql(`drop table if exists "webhook_endpoints" cascade;`);

    this.addSql(`drop table if exists "webhook_deliveries" cascade;`);

    this.addSql(`drop table if exists "webhook_messages" cascade;`);

    this.addSql(`alter table "audit_events" drop constraint if exists "audit_events_type_check";`);

    this.addSql(`alter table "audit_events" add constraint "audit_events_type_check" check("type" in ('LOGIN_SUCCEEDED', 'LOGIN_FAILED', 'LOGOUT', 'SESSION_REVOKED', 'REFRESH_REUSE_DETECTED', 'PASSWORD_RESET_REQUESTED', 'PASSWORD_RESET_COMPLETED', 'PASSWORD_CHANGED', 'EMAIL_VERIFIED', 'USER_CREATED', 'USER_UPDATED', 'ROLE_CHANGED', 'USER_DEACTIVATED', 'USER_DELETED', 'MFA_CHALLENGED', 'MFA_FAILED', 'MFA_RECOVERY_CODE_USED', 'MFA_ENABLED', 'MFA_DISABLED', 'MFA_RECOVERY_CODES_REGENERATED', 'EMAIL_CHANGE_REQUESTED', 'EMAIL_CHANGED', 'ACCOUNT_LOCKED'));`);
  }

}

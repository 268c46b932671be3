import { Migration } from '@mikro-orm/migrations';

export class Migration20261121085149 extends Migration {

  override async up(): Promise<void> {
    this.addSql(`create table "audit_events" ("id" uuid not null, "created_at" timestamptz not null, "type" text check ("type" in ('LOGIN_SUCCEEDED', 'LOGIN_FAILED', 'LOGOUT', 'SESSION_REVOKED', 'REFRESH_REUSE_DETECTED', 'PASSWORD_RESET_REQUESTED', 'PASSWORD_RESET_COMPLETED', 'PASSWORD_CHANGED', 'EMAIL_VERIFIED', 'USER_CREATED', 'USER_UPDATED', 'ROLE_CHANGED', 'USER_DEACTIVATED', 'USER_DELETED')) not null, "user_id" uuid null, "actor_id" uuid null, "ip" varchar(64) null, "user_agent" varchar(512) null, constraint "audit_events_pkey" primary key ("id"));`);
    this.addSql(`create index "audit_events_created_idx" on "audit_events" ("created_at");`);
    this.addSql(`create index "audit_events_user_created_idx" on "audit_events" ("user_id", "created_at");`);

    this.addSql(`create table "mail_outbox" ("id" uuid not null, "created_at" timestamptz not null, "recipient" varchar(254) not null, "template" varchar(32) not null, "payload" text null, "attempts" smallint not null default 0, "next_attempt_at" timestamptz not null, "locked_until" timestamptz null, "sent_at" timestamptz null, "failed_at" timestamptz null, "last_error" varchar(500) null, constraint "mail_outbox_pkey" primary key ("id"));`);
    this.addSql(`create index "mail_outbox_due_idx" on "mail_outbox" ("next_attempt_at") where "sent_at" is null and "failed_at" is null;`);

    this.addSql(`create table "one_time_tokens" ("id" uuid not null, "created_at" timestamptz not null, "user_id" uuid not null, "purpose" text check ("purpose" in ('PASSWORD_RESET', 'EMAIL_VERIFICATION')) not null, "token_hash" char(64) not null, "expires_at" timestamptz not null, "used_at" timestamptz null, "attempts" smallint not null default 0, constraint "one_time_tokens_pkey" primary key ("id"));`);
    this.addSql(`create index "one_time_tokens_token_hash_idx" on "one_time_tokens" ("token_hash");`);
    this.addSql(`create index "one_time_tokens_user_purpose_idx" on "one_time_tokens" ("user_id", "purpose");`);

    this.addSql(`alter table "one_time_tokens" add constraint "one_time_tokens_user_id_foreign" foreign key ("user_id") references "users" ("id") on update cascade on delete cascade;`);

    this.addSql(`alter table "sessions" drop constraint if exists "sessions_revoked_reason_check";`);

    this.addSql(`alter table "sessions" add constraint "sessions_revoked_reason_check" check("revoked_reason" in ('ROTATED', 'LOGOUT', 'LOGOUT_ALL', 'REVOKED', 'REUSE_DETECTED', 'PASSWORD_RESET', 'PASSWORD_CHANGED'));`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "audit_events" cascade;`);

    this.addSql(`drop table if exists "mail_outbox" cascade;`);

    this.addSql(`drop table if exists "one_time_tokens" cascade;`);

    this.addSql(`alter table "sessions" drop constraint if exists "sessions_revoked_reason_check";`);

    this.addSql(`alter table "sessions" add constraint "sessions_revoked_reason_check" check("revoked_reason" in ('ROTATED', 'LOGOUT', 'LOGOUT_ALL', 'REVOKED', 'REUSE_DETECTED'));`);
  }

}

import { Migration } from '@mikro-orm/migrations';

export class Migration20261121082135 extends Migration {

  override async up(): Promise<void> {
    this.addSql(`create table "users" ("id" uuid not null, "created_at" timestamptz not null, "email" varchar(254) not null, "username" varchar(32) not null, "first_name" varchar(100) null, "last_name" varchar(100) null, "password_hash" varchar(255) not null, "role" text check ("role" in ('USER', 'ADMIN')) not null default 'USER', "active" boolean not null default true, "email_verified_at" timestamptz null, "last_login_at" timestamptz null, "updated_at" timestamptz not null, constraint "users_pkey" primary key ("id"));`);
    this.addSql(`alter table "users" add constraint "users_email_unique" unique ("email");`);
    this.addSql(`create unique index "users_username_lower_unique" on "users" (lower("username"));`);

    this.addSql(`create table "sessions" ("id" uuid not null, "created_at" timestamptz not null, "user_id" uuid not null, "refresh_token_hash" char(64) not null, "family" uuid not null, "user_agent" varchar(512) null, "ip" varchar(64) null, "last_used_at" timestamptz null, "expires_at" timestamptz not null, "revoked_at" timestamptz null, "revoked_reason" text check ("revoked_reason" in ('ROTATED', 'LOGOUT', 'LOGOUT_ALL', 'REVOKED', 'REUSE_DETECTED')) null, constraint "sessions_pkey" primary key ("id"));`);
    this.addSql(`alter table "sessions" add constraint "sessions_refresh_token_hash_unique" unique ("refresh_token_hash");`);
    this.addSql(`create index "sessions_family_idx" on "sessions" ("family");`);
    this.addSql(`create index "sessions_user_active_idx" on "sessions" ("user_id", "revoked_at");`);

    this.addSql(`alter table "sessions" add constraint "sessions_user_id_foreign" foreign key ("user_id") references "users" ("id") on update cascade on delete cascade;`);
  }

}

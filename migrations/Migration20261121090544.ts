import { Migration } from '@mikro-orm/migrations';

export class Migration20261121090544 extends Migration {

  override async up(): Promise<void> {
    // Added by hand: the trigram index below needs the extension (trusted, so a database owner may
    // create it; PGlite loads it in src/db/embedded.ts).
    this.addSql(`create extension if not exists "pg_trgm";`);

    this.addSql(`alter table "sessions" drop constraint if exists "sessions_revoked_reason_check";`);

    this.addSql(`create index "users_search_trgm_idx" on "users" using gin ((lower("email" || ' ' || "username" || ' ' || coalesce("first_name", '') || ' ' || coalesce("last_name", ''))) gin_trgm_ops);`);
    this.addSql(`create index "users_created_at_id_idx" on "users" ("created_at", "id");`);

    this.addSql(`alter table "sessions" add constraint "sessions_revoked_reason_check" check("revoked_reason" in ('ROTATED', 'LOGOUT', 'LOGOUT_ALL', 'REVOKED', 'REUSE_DETECTED', 'PASSWORD_RESET', 'PASSWORD_CHANGED', 'DEACTIVATED'));`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "sessions" drop constraint if exists "sessions_revoked_reason_check";`);

    this.addSql(`drop index "users_search_trgm_idx";`);
    this.addSql(`drop index "users_created_at_id_idx";`);

    this.addSql(`alter table "sessions" add constraint "sessions_revoked_reason_check" check("revoked_reason" in ('ROTATED', 'LOGOUT', 'LOGOUT_ALL', 'REVOKED', 'REUSE_DETECTED', 'PASSWORD_RESET', 'PASSWORD_CHANGED'));`);
  }

}

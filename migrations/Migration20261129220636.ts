import { Migration } from '@mikro-orm/migrations';

export class Migration20261129220636 extends Migration {

  // A lockdown link now remembers the address it was mailed to (one_time_tokens.target): that is the
  // address a lockdown restores, and the one kept reserved while the link lives. The per-user
  // "previous address" columns, which could restore an address the owner had left on purpose, go.
  override async up(): Promise<void> {
    this.addSql(`alter table "users" drop column "previous_email", drop column "email_changed_at";`);

    this.addSql(`create index "one_time_tokens_lockdown_target_idx" on "one_time_tokens" ("target") where "purpose" = 'LOCKDOWN' and "used_at" is null;`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "users" add column "previous_email" varchar(254) null, add column "email_changed_at" timestamptz null;`);

    this.addSql(`drop index "one_time_tokens_lockdown_target_idx";`);
  }

}

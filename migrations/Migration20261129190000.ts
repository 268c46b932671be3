import { Migration } from '@mikro-orm/migrations';

export class Migration20261129190000 extends Migration {

  // Added by hand (src/db/lease.ts owns it; no entity): who runs a background job that one instance
  // at a time may run, until when.
  override async up(): Promise<void> {
    this.addSql(`create table "leases" ("name" varchar(64) primary key, "holder" uuid not null, "expires_at" timestamptz not null);`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "leases";`);
  }

}

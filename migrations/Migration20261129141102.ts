import { Migration } from '@mikro-orm/migrations';

export class Migration20261129141102 extends Migration {

  override async up(): Promise<void> {
    this.addSql(`drop index "sessions_family_idx";`);

    this.addSql(`create index "sessions_family_live_idx" on "sessions" ("family") where "revoked_at" is null;`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop index "sessions_family_live_idx";`);

    this.addSql(`create index "sessions_family_idx" on "sessions" ("family");`);
  }

}

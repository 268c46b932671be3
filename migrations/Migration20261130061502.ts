import { Migration } from '@mikro-orm/migrations';

export class Migration20261130061502 extends Migration {

  override async up(): Promise<void> {
    this.addSql(`alter table "audit_events" add column "detail" varchar(600) null;`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "audit_events" drop column "detail";`);
  }

}

import { Migration } from '@mikro-orm/migrations';

export class Migration20261130061150 extends Migration {

  override async up(): Promise<void> {
    this.addSql(`alter table "users" add column "reset_device" varchar(48) null;`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "users" drop column "reset_device";`);
  }

}

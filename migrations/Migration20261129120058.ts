import { Migration } from '@mikro-orm/migrations';

export class Migration20261129120058 extends Migration {

  override async up(): Promise<void> {
    this.addSql(`alter table "sessions" add column "device_id" uuid null;`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "sessions" drop column "device_id";`);
  }

}

import { Migration } from '@mikro-orm/migrations';

export class Migration20261129131849 extends Migration {

  override async up(): Promise<void> {
    this.addSql(`alter table "users" add column "credentials_version" int not null default 0;`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "users" drop column "credentials_version";`);
  }

}

import { Migration } from '@mikro-orm/migrations';

/** Outbox rows are due from the database's clock when written, like every claim of them. */
export class Migration20261130091710 extends Migration {

  override async up(): Promise<void> {
    this.addSql(`alter table "mail_outbox" alter column "next_attempt_at" set default now();`);
    this.addSql(`alter table "webhook_messages" alter column "next_attempt_at" set default now();`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "mail_outbox" alter column "next_attempt_at" drop default;`);
    this.addSql(`alter table "webhook_messages" alter column "next_attempt_at" drop default;`);
  }

}

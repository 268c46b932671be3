import { Migration } from '@mikro-orm/migrations';

export class Migration20261130035613 extends Migration {

  override async up(): Promise<void> {
    this.addSql(`create index "mail_outbox_sent_at_idx" on "mail_outbox" ("sent_at") where "sent_at" is not null;`);
    this.addSql(`create index "mail_outbox_failed_at_idx" on "mail_outbox" ("failed_at") where "failed_at" is not null;`);

    this.addSql(`create index "sessions_revoked_at_idx" on "sessions" ("revoked_at") where "revoked_at" is not null;`);
    this.addSql(`create index "sessions_expires_at_idx" on "sessions" ("expires_at");`);

    this.addSql(`create index "one_time_tokens_used_at_idx" on "one_time_tokens" ("used_at") where "used_at" is not null;`);
    this.addSql(`create index "one_time_tokens_expires_at_idx" on "one_time_tokens" ("expires_at");`);

    this.addSql(`create index "webhook_messages_delivered_at_idx" on "webhook_messages" ("delivered_at") where "delivered_at" is not null;`);
    this.addSql(`create index "webhook_messages_failed_at_idx" on "webhook_messages" ("failed_at") where "failed_at" is not null;`);

    // Added by hand (the rate limiter's table has no entity; src/maintenance.ts names the index).
    this.addSql(`create index "rate_limits_expire_idx" on "rate_limits" ("expire") where "expire" is not null;`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop index "mail_outbox_sent_at_idx";`);
    this.addSql(`drop index "mail_outbox_failed_at_idx";`);

    this.addSql(`drop index "sessions_revoked_at_idx";`);
    this.addSql(`drop index "sessions_expires_at_idx";`);

    this.addSql(`drop index "one_time_tokens_used_at_idx";`);
    this.addSql(`drop index "one_time_tokens_expires_at_idx";`);

    this.addSql(`drop index "webhook_messages_delivered_at_idx";`);
    this.addSql(`drop index "webhook_messages_failed_at_idx";`);

    this.addSql(`drop index "rate_limits_expire_idx";`);
  }

}

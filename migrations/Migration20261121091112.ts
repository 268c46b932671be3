import { Migration } from '@mikro-orm/migrations';

export class Migration20261121091112 extends Migration {

  override async up(): Promise<void> {
    this.addSql(`alter table "users" add column "failed_login_count" smallint not null default 0, add column "login_blocked_until" timestamptz null;`);

    // Added by hand: the counters of rate-limiter-flexible (src/rate-limits.ts), in the layout that
    // library expects; MikroORM's schema comparison skips this table.
    this.addSql(`create table if not exists "rate_limits" ("key" varchar(255) primary key, "points" integer not null default 0, "expire" bigint);`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "users" drop column "failed_login_count", drop column "login_blocked_until";`);
    this.addSql(`drop table if exists "rate_limits";`);
  }

}

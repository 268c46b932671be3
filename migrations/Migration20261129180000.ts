import { Migration } from '@mikro-orm/migrations';

export class Migration20261129180000 extends Migration {

  // Rate-limit counters are unlogged: their writes skip the write-ahead log, so counting a sign-in
  // attempt no longer waits for a WAL flush (most of what a counter cost PostgreSQL per login, see
  // BENCHMARKS.md). A database crash empties the table, which forgets counts of at most one window,
  // as a Redis without persistence would; standbys do not carry it (only the primary counts).
  override async up(): Promise<void> {
    this.addSql(`alter table "rate_limits" set unlogged;`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "rate_limits" set logged;`);
  }

}

// Schema migrations, listed in code (not globbed from disk) so they run the same
// under type stripping, in the embedded PGlite and on a real PostgreSQL.
// Append new migrations; never edit one that has shipped.

import { Migration } from '@mikro-orm/migrations';

export class Migration0001Journal extends Migration {
  override name = 'Migration0001Journal';

  override up(): void {
    this.addSql(`create table if not exists journal (
      persistence_key text not null,
      sequence_nr bigint not null,
      data jsonb not null,
      tags jsonb not null default '[]',
      created_at timestamptz not null default now(),
      primary key (persistence_key, sequence_nr)
    )`);
    // One row per entity: the latest snapshot wins (older ones are never read).
    this.addSql(`create table if not exists snapshot (
      persistence_key text primary key,
      sequence_nr bigint not null,
      data jsonb not null,
      created_at timestamptz not null default now()
    )`);
    this.addSql(`create table if not exists reminder (
      entity_key text not null,
      name text not null,
      shard integer not null,
      due_at timestamptz not null,
      primary key (entity_key, name)
    )`);
    this.addSql('create index if not exists reminder_shard_idx on reminder (shard)');
  }

  override down(): void {
    this.addSql('drop table if exists reminder');
    this.addSql('drop table if exists snapshot');
    this.addSql('drop table if exists journal');
  }
}

export const migrations = [{ name: 'Migration0001Journal', class: Migration0001Journal }];

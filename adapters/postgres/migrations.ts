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

export class Migration0002ReadModels extends Migration {
  override name = 'Migration0002ReadModels';

  override up(): void {
    // Bookings as the API lists them, kept from the booking actors' events. `version`
    // (the timeline length) keeps a late write from overwriting a newer one.
    this.addSql(`create table if not exists booking_view (
      id text primary key,
      shard integer not null,
      rider_id text not null,
      driver_id text,
      status text not null,
      vehicle_type text not null,
      pickup_cell text not null,
      scheduled_at timestamptz,
      created_at timestamptz not null,
      updated_at timestamptz not null,
      version integer not null,
      data jsonb not null
    )`);
    this.addSql('create index if not exists booking_view_due_idx on booking_view (status, scheduled_at)');
    this.addSql('create index if not exists booking_view_rider_idx on booking_view (rider_id, created_at desc)');
    this.addSql('create index if not exists booking_view_created_idx on booking_view (created_at desc)');
    // Analytics per hour and cell, summed from domain events.
    this.addSql(`create table if not exists analytics_hour_cell (
      hour timestamptz not null,
      cell text not null,
      requests integer not null default 0,
      completed integer not null default 0,
      cancelled integer not null default 0,
      no_driver integer not null default 0,
      revenue bigint not null default 0,
      fare_count integer not null default 0,
      wait_ms_sum bigint not null default 0,
      wait_count integer not null default 0,
      surge_sum double precision not null default 0,
      surge_count integer not null default 0,
      trip_ms_sum bigint not null default 0,
      primary key (hour, cell)
    )`);
    this.addSql(`create table if not exists analytics_driver_hour (
      hour timestamptz not null,
      driver_id text not null,
      primary key (hour, driver_id)
    )`);
    this.addSql(`create table if not exists analytics_rider (
      rider_id text primary key,
      first_seen timestamptz not null
    )`);
  }

  override down(): void {
    for (const table of ['analytics_rider', 'analytics_driver_hour', 'analytics_hour_cell', 'booking_view']) {
      this.addSql(`drop table if exists ${table}`);
    }
  }
}

export class Migration0003FleetViews extends Migration {
  override name = 'Migration0003FleetViews';

  override up(): void {
    this.addSql(`create table if not exists driver_view (
      id text primary key,
      status text not null,
      updated_at timestamptz not null default now(),
      data jsonb not null
    )`);
    this.addSql('create index if not exists driver_view_status_idx on driver_view (status)');
    this.addSql(`create table if not exists vehicle_view (
      id text primary key,
      driver_id text,
      deleted boolean not null default false,
      updated_at timestamptz not null default now(),
      data jsonb not null
    )`);
  }

  override down(): void {
    this.addSql('drop table if exists vehicle_view');
    this.addSql('drop table if exists driver_view');
  }
}

export class Migration0004EdgeTables extends Migration {
  override name = 'Migration0004EdgeTables';

  override up(): void {
    this.addSql(`create table if not exists account (
      id text primary key,
      email text not null unique,
      name text not null,
      phone text,
      role text not null,
      password_hash text not null,
      created_at timestamptz not null default now()
    )`);
    this.addSql(`create table if not exists setting (
      key text primary key,
      value jsonb not null,
      updated_at timestamptz not null default now()
    )`);
  }

  override down(): void {
    this.addSql('drop table if exists setting');
    this.addSql('drop table if exists account');
  }
}

export class Migration0005OccupiedCells extends Migration {
  override name = 'Migration0005OccupiedCells';

  override up(): void {
    // Cells that ever held a driver (cluster mode): searches skip the others without waking them.
    this.addSql(`create table if not exists occupied_cell (
      cell text primary key,
      first_at timestamptz not null default now()
    )`);
  }

  override down(): void {
    this.addSql('drop table if exists occupied_cell');
  }
}

export class Migration0006AnalyticsByCell extends Migration {
  override name = 'Migration0006AnalyticsByCell';

  override up(): void {
    // Active drivers and new riders per pickup cell, so an analytics item grouped by cell
    // carries its own counts (the hourly tables know no cell).
    this.addSql(`create table if not exists analytics_driver_hour_cell (
      hour timestamptz not null,
      cell text not null,
      driver_id text not null,
      primary key (hour, cell, driver_id)
    )`);
    this.addSql('alter table analytics_rider add column if not exists first_cell text');
  }

  override down(): void {
    this.addSql('alter table analytics_rider drop column if exists first_cell');
    this.addSql('drop table if exists analytics_driver_hour_cell');
  }
}

export class Migration0007DeadLetters extends Migration {
  override name = 'Migration0007DeadLetters';

  override up(): void {
    // Commands that could not be handled, set aside so their shard goes on (runtime/errors.ts).
    this.addSql(`create table if not exists dead_letter (
      id text primary key,
      shard integer not null,
      log_offset bigint not null,
      -- base64 of the command's JSON: kept byte for byte, even what text and jsonb refuse (a NUL)
      command text not null,
      failure_kind text not null,
      failure_message text not null,
      attempts integer not null,
      created_at timestamptz not null
    )`);
  }

  override down(): void {
    this.addSql('drop table if exists dead_letter');
  }
}

export class Migration0008Projections extends Migration {
  override name = 'Migration0008Projections';

  override up(): void {
    // Read models are projected from the journal (adapters/postgres/projections.ts). Each
    // journal row carries the shard of its entity and the id of the transaction that wrote it
    // (xid8): a projection reads a shard's rows in (tx, persistence_key, sequence_nr) order,
    // only below the oldest transaction still running, so a row that commits late is never
    // passed over (see projections.ts for why).
    this.addSql('alter table journal add column if not exists shard integer');
    this.addSql('alter table journal add column if not exists tx xid8 not null default pg_current_xact_id()');
    this.addSql(`alter table journal add column if not exists kind text generated always as (split_part(persistence_key, ':', 1)) stored`);
    this.addSql('create index if not exists journal_projection_idx on journal (kind, shard, tx, persistence_key, sequence_nr)');
    // Where each projection stands, per shard: moved in the same transaction as the view rows.
    this.addSql(`create table if not exists projection_offset (
      projection text not null,
      shard integer not null,
      tx xid8 not null default '0',
      persistence_key text not null default '',
      sequence_nr bigint not null default 0,
      updated_at timestamptz not null default now(),
      primary key (projection, shard)
    )`);
    // Driver and vehicle rows keep the folded state and the journal sequence number they reflect.
    this.addSql('alter table driver_view add column if not exists version bigint not null default 0');
    this.addSql(`alter table driver_view add column if not exists state jsonb`);
    this.addSql('alter table vehicle_view add column if not exists version bigint not null default 0');
    this.addSql(`alter table vehicle_view add column if not exists state jsonb`);
    this.addSql('alter table booking_view alter column version type bigint');
    // The views were fed from published events (lossy); they are rebuilt from the journal.
    this.addSql(
      'truncate booking_view, driver_view, vehicle_view, ' +
      'analytics_hour_cell, analytics_driver_hour, analytics_driver_hour_cell, analytics_rider',
    );
  }

  override down(): void {
    this.addSql('drop table if exists projection_offset');
    this.addSql('drop index if exists journal_projection_idx');
    this.addSql('alter table journal drop column if exists kind');
    this.addSql('alter table journal drop column if exists tx');
    this.addSql('alter table journal drop column if exists shard');
  }
}

export class Migration0009CommandIds extends Migration {
  override name = 'Migration0009CommandIds';

  override up(): void {
    // A redelivered command is recognised by the entry its first handling journaled, however
    // long ago (runtime/dedupe.ts): looked up by entity and command id.
    this.addSql("create index if not exists journal_command_idx on journal (persistence_key, (data->>'cmd'))");
  }

  override down(): void {
    this.addSql('drop index if exists journal_command_idx');
  }
}

export class Migration0010ShardEpochs extends Migration {
  override name = 'Migration0010ShardEpochs';

  override up(): void {
    // Fencing tokens (runtime/fencing.ts): a node that gains a shard takes the next epoch;
    // every write of the shard is conditional on it, so a node that lost the shard writes nothing.
    this.addSql(`create table if not exists shard_epoch (
      shard integer primary key,
      epoch bigint not null,
      owner text not null,
      updated_at timestamptz not null default now()
    )`);
  }

  override down(): void {
    this.addSql('drop table if exists shard_epoch');
  }
}

export class Migration0011SealedAccounts extends Migration {
  override name = 'Migration0011SealedAccounts';

  override up(): void {
    // Accounts hold their email, name and phone sealed (runtime/personal-data.ts), so an
    // email is found, and kept unique, by its keyed hash. Rows from before have none until
    // `npm run keys -- rotate` seals them; until then they are found by their plaintext email.
    this.addSql('alter table account add column if not exists email_hash text');
    this.addSql('create unique index if not exists account_email_hash_idx on account (email_hash)');
  }

  override down(): void {
    this.addSql('drop index if exists account_email_hash_idx');
    this.addSql('alter table account drop column if exists email_hash');
  }
}

export const migrations = [
  { name: 'Migration0001Journal', class: Migration0001Journal },
  { name: 'Migration0002ReadModels', class: Migration0002ReadModels },
  { name: 'Migration0003FleetViews', class: Migration0003FleetViews },
  { name: 'Migration0004EdgeTables', class: Migration0004EdgeTables },
  { name: 'Migration0005OccupiedCells', class: Migration0005OccupiedCells },
  { name: 'Migration0006AnalyticsByCell', class: Migration0006AnalyticsByCell },
  { name: 'Migration0007DeadLetters', class: Migration0007DeadLetters },
  { name: 'Migration0008Projections', class: Migration0008Projections },
  { name: 'Migration0009CommandIds', class: Migration0009CommandIds },
  { name: 'Migration0010ShardEpochs', class: Migration0010ShardEpochs },
  { name: 'Migration0011SealedAccounts', class: Migration0011SealedAccounts },
];

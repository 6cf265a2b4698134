-- migrate:up
-- Read models are projected from the journal (adapters/postgres/projections.ts). Each
-- journal row carries the shard of its entity and the id of the transaction that wrote it
-- (xid8): a projection reads a shard's rows in (tx, persistence_key, sequence_nr) order,
-- only below the oldest transaction still running, so a row that commits late is never
-- passed over (see projections.ts for why).
alter table journal add column if not exists shard integer;
alter table journal add column if not exists tx xid8 not null default pg_current_xact_id();
alter table journal add column if not exists kind text generated always as (split_part(persistence_key, ':', 1)) stored;
create index if not exists journal_projection_idx on journal (kind, shard, tx, persistence_key, sequence_nr);
-- Where each projection stands, per shard: moved in the same transaction as the view rows.
create table if not exists projection_offset (
  projection text not null,
  shard integer not null,
  tx xid8 not null default '0',
  persistence_key text not null default '',
  sequence_nr bigint not null default 0,
  updated_at timestamptz not null default now(),
  primary key (projection, shard)
);
-- Driver and vehicle rows keep the folded state and the journal sequence number they reflect.
alter table driver_view add column if not exists version bigint not null default 0;
alter table driver_view add column if not exists state jsonb;
alter table vehicle_view add column if not exists version bigint not null default 0;
alter table vehicle_view add column if not exists state jsonb;
alter table booking_view alter column version type bigint;
-- The views were fed from published events (lossy); they are rebuilt from the journal.
truncate booking_view, driver_view, vehicle_view, analytics_hour_cell, analytics_driver_hour, analytics_driver_hour_cell, analytics_rider;

-- migrate:down
drop table if exists projection_offset;
drop index if exists journal_projection_idx;
alter table journal drop column if exists kind;
alter table journal drop column if exists tx;
alter table journal drop column if exists shard;

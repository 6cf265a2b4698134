-- migrate:up
create table if not exists journal (
  persistence_key text not null,
  sequence_nr bigint not null,
  data jsonb not null,
  tags jsonb not null default '[]',
  created_at timestamptz not null default now(),
  primary key (persistence_key, sequence_nr)
);
-- One row per entity: the latest snapshot wins (older ones are never read).
create table if not exists snapshot (
  persistence_key text primary key,
  sequence_nr bigint not null,
  data jsonb not null,
  created_at timestamptz not null default now()
);
create table if not exists reminder (
  entity_key text not null,
  name text not null,
  shard integer not null,
  due_at timestamptz not null,
  primary key (entity_key, name)
);
create index if not exists reminder_shard_idx on reminder (shard);

-- migrate:down
drop table if exists reminder;
drop table if exists snapshot;
drop table if exists journal;

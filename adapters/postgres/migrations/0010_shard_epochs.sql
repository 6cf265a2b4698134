-- migrate:up
-- Fencing tokens (runtime/fencing.ts): a node that gains a shard takes the next epoch;
-- every write of the shard is conditional on it, so a node that lost the shard writes nothing.
create table if not exists shard_epoch (
  shard integer primary key,
  epoch bigint not null,
  owner text not null,
  updated_at timestamptz not null default now()
);

-- migrate:down
drop table if exists shard_epoch;

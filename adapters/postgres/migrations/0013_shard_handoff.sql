-- migrate:up
-- A shard's hand-off between nodes (runtime/shard-handoff.ts). `released`: the epoch's owner
-- has drained the shard (its last commit made, its entities stopped) and let it go, so the
-- next owner takes it at once instead of waiting for the old one to be declared gone.
alter table shard_epoch add column if not exists released boolean not null default false;
-- Where each shard's consumption of its log resumes: the offset after the last record handled,
-- written by the shard's owner under its epoch (a node that lost the shard moves nothing).
create table if not exists shard_offset (
  log text not null,
  shard integer not null,
  next_offset bigint not null,
  updated_at timestamptz not null default now(),
  primary key (log, shard)
);

-- migrate:down
drop table if exists shard_offset;
alter table shard_epoch drop column if exists released;

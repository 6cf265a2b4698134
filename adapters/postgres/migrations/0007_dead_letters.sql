-- migrate:up
-- Commands that could not be handled, set aside so their shard goes on (runtime/errors.ts).
create table if not exists dead_letter (
  id text primary key,
  shard integer not null,
  log_offset bigint not null,
  -- base64 of the command's JSON: kept byte for byte, even what text and jsonb refuse (a NUL)
  command text not null,
  failure_kind text not null,
  failure_message text not null,
  attempts integer not null,
  created_at timestamptz not null
);

-- migrate:down
drop table if exists dead_letter;

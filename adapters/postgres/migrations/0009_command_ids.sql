-- migrate:up
-- A redelivered command is recognised by the entry its first handling journaled, however
-- long ago (runtime/dedupe.ts): looked up by entity and command id.
create index if not exists journal_command_idx on journal (persistence_key, (data->>'cmd'));

-- migrate:down
drop index if exists journal_command_idx;

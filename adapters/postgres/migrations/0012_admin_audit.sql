-- migrate:up
-- What admins did (http/audit.ts): who, what, when and from where. Kept apart from the
-- journal: an action refused before it reached an entity is recorded too. Summaries name
-- the fields changed, never personal data in clear.
create table if not exists admin_audit (
  id bigserial primary key,
  at timestamptz not null,
  actor_sub text not null,
  actor_role text not null,
  method text not null,
  route text not null,
  target text,
  summary text not null,
  status integer not null,
  client_ip text not null,
  request_id text not null
);
create index if not exists admin_audit_actor_idx on admin_audit (actor_sub, id desc);

-- migrate:down
drop table if exists admin_audit;

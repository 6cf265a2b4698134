-- migrate:up
create table if not exists driver_view (
  id text primary key,
  status text not null,
  updated_at timestamptz not null default now(),
  data jsonb not null
);
create index if not exists driver_view_status_idx on driver_view (status);
create table if not exists vehicle_view (
  id text primary key,
  driver_id text,
  deleted boolean not null default false,
  updated_at timestamptz not null default now(),
  data jsonb not null
);

-- migrate:down
drop table if exists vehicle_view;
drop table if exists driver_view;

-- migrate:up
create table if not exists account (
  id text primary key,
  email text not null unique,
  name text not null,
  phone text,
  role text not null,
  password_hash text not null,
  created_at timestamptz not null default now()
);
create table if not exists setting (
  key text primary key,
  value jsonb not null,
  updated_at timestamptz not null default now()
);

-- migrate:down
drop table if exists setting;
drop table if exists account;

-- migrate:up
-- Bookings as the API lists them, kept from the booking actors' events. `version`
-- (the timeline length) keeps a late write from overwriting a newer one.
create table if not exists booking_view (
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
);
create index if not exists booking_view_due_idx on booking_view (status, scheduled_at);
create index if not exists booking_view_rider_idx on booking_view (rider_id, created_at desc);
create index if not exists booking_view_created_idx on booking_view (created_at desc);
-- Analytics per hour and cell, summed from domain events.
create table if not exists analytics_hour_cell (
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
);
create table if not exists analytics_driver_hour (
  hour timestamptz not null,
  driver_id text not null,
  primary key (hour, driver_id)
);
create table if not exists analytics_rider (
  rider_id text primary key,
  first_seen timestamptz not null
);

-- migrate:down
drop table if exists analytics_rider;
drop table if exists analytics_driver_hour;
drop table if exists analytics_hour_cell;
drop table if exists booking_view;

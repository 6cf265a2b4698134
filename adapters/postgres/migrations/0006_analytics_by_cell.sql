-- migrate:up
-- Active drivers and new riders per pickup cell, so an analytics item grouped by cell
-- carries its own counts (the hourly tables know no cell).
create table if not exists analytics_driver_hour_cell (
  hour timestamptz not null,
  cell text not null,
  driver_id text not null,
  primary key (hour, cell, driver_id)
);
alter table analytics_rider add column if not exists first_cell text;

-- migrate:down
alter table analytics_rider drop column if exists first_cell;
drop table if exists analytics_driver_hour_cell;

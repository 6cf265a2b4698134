-- migrate:up
-- Cells that ever held a driver (cluster mode): searches skip the others without waking them.
create table if not exists occupied_cell (
  cell text primary key,
  first_at timestamptz not null default now()
);

-- migrate:down
drop table if exists occupied_cell;

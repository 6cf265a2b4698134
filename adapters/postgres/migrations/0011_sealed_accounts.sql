-- migrate:up
-- Accounts hold their email, name and phone sealed (runtime/personal-data.ts), so an
-- email is found, and kept unique, by its keyed hash. Rows from before have none until
-- `npm run keys -- rotate` seals them; until then they are found by their plaintext email.
alter table account add column if not exists email_hash text;
create unique index if not exists account_email_hash_idx on account (email_hash);

-- migrate:down
drop index if exists account_email_hash_idx;
alter table account drop column if exists email_hash;

// The schema's SQL files: how they are read, and that each one in the folder is listed.

import test from 'ava';
import { readdirSync } from 'node:fs';
import { migrations, parseMigration } from '../adapters/postgres/migrations.ts';

test('statements end with a ; at the end of a line; comments are not sent, and a ; inside one ends nothing', (t) => {
  const sql = parseMigration([
    '-- migrate:up',
    '-- why: the first table; it holds rows',
    'create table a (',
    '  id text primary key, -- its key; unique',
    '  n integer',
    ');',
    "create index a_idx on a ((id || ';'));",
    '',
    '-- migrate:down',
    'drop table a;',
  ].join('\n'));
  t.deepEqual(sql.up, ['create table a (\n  id text primary key, -- its key; unique\n  n integer\n)', "create index a_idx on a ((id || ';'))"]);
  t.deepEqual(sql.down, ['drop table a']);
});

test('a file without both sections, or with a statement left open, is refused with its name', (t) => {
  t.throws(() => parseMigration('-- migrate:up\ncreate table a (id text);\n', '0099_x.sql'), { message: /0099_x\.sql: needs .*migrate:down/ });
  t.throws(() => parseMigration('-- migrate:up\ncreate table a (id text)\n-- migrate:down\n', '0099_x.sql'), {
    message: /0099_x\.sql: a statement without its closing ';'/,
  });
});

test('every SQL file in the folder is a listed migration, in the order of its number, and each has statements', (t) => {
  const files = readdirSync(new URL('../adapters/postgres/migrations/', import.meta.url)).filter((f) => f.endsWith('.sql')).sort();
  const numbers = files.map((f) => f.slice(0, 4));
  t.deepEqual(migrations.map((m) => m.name.slice('Migration'.length, 'Migration'.length + 4)), numbers);
  for (const m of migrations) {
    const sent: string[] = [];
    const instance = new m.class({} as never, {} as never);
    Object.assign(instance, { addSql: (s: string) => sent.push(s) });
    instance.up();
    t.true(sent.length > 0, `${m.name} sends statements`);
  }
});

// Re-seals personal data under the active key (`npm run keys -- rotate`): account rows,
// driver views, journal entries, snapshots and dead letters. Also seals what was stored in
// plaintext before sealing existed (account columns, drivers' profile name and phone), and
// gives old accounts their email hash.
//
// Safe while nodes run: each batch is one transaction over rows it locks (FOR UPDATE), so a
// node's write to the same row waits for it or goes first; every value stays readable
// throughout, as the keyring still holds the old keys. A value a node still holds in memory
// may be written under an old key after a run (an entity's state, saved in its next
// snapshot), so the old key is removed only after a run that re-sealed nothing (see README).

import type { Orm } from './orm.ts';
import { inTransaction, type Sql } from './transaction.ts';
import { driverContactPath, resealJson, type Keyring } from '../../runtime/personal-data.ts';

export interface RotationCounts {
  /** Rows looked at and rows changed, per table. */
  readonly [table: string]: { readonly rows: number; readonly changed: number; readonly values: number };
}

const BATCH = 200;

export async function rotateKeys(orm: Orm, keys: Keyring, batch = BATCH): Promise<RotationCounts> {
  return {
    account: await pages(orm, batch, 'account', ['id'], 'id, email, email_hash, name, phone', '', (row) => accountRow(keys, row)),
    driver_view: await pages(orm, batch, 'driver_view', ['id'], 'id, data, state', '', (row) => jsonColumns(
      keys, row, ['data', 'state'], (path) => path.length === 1 && ['name', 'phone'].includes(path[0]!) || driverContactPath(path),
    )),
    journal: await pages(orm, batch, 'journal', ['persistence_key', 'sequence_nr'], 'persistence_key, sequence_nr, data',
      `(persistence_key like 'driver:%' or position('"pd1.' in data::text) > 0)`, (row) => jsonColumns(keys, row, ['data'], plainFor(row))),
    snapshot: await pages(orm, batch, 'snapshot', ['persistence_key'], 'persistence_key, data',
      `(persistence_key like 'driver:%' or position('"pd1.' in data::text) > 0)`, (row) => jsonColumns(keys, row, ['data'], plainFor(row))),
    dead_letter: await pages(orm, batch, 'dead_letter', ['id'], 'id, command', '', (row) => deadLetterRow(keys, row)),
  };
}

type Row = Record<string, unknown>;
/** The columns to write for a row (none: unchanged), and how many values were re-sealed. */
type Change = { set: Row; values: number };

/** Walks a table in primary-key order, one transaction per page. */
async function pages(
  orm: Orm, batch: number, table: string, pk: readonly string[], columns: string, filter: string, change: (row: Row) => Change,
) {
  let after: unknown[] | undefined;
  let rows = 0, changed = 0, values = 0;
  for (;;) {
    const page = await inTransaction(orm, async (sql: Sql) => {
      const where = [filter, after ? `(${pk.join(', ')}) > (${pk.map(() => '?').join(', ')})` : ''].filter(Boolean).join(' and ');
      const found = await sql<Row>(
        `select ${columns} from ${table} ${where ? `where ${where}` : ''} order by ${pk.join(', ')} limit ? for update`,
        [...(after ?? []), batch],
      );
      for (const row of found) {
        const c = change(row);
        const names = Object.keys(c.set);
        if (names.length === 0) continue;
        await sql(`update ${table} set ${names.map((n) => `${n} = ?`).join(', ')} where ${pk.map((k) => `${k} = ?`).join(' and ')}`,
          [...names.map((n) => c.set[n]), ...pk.map((k) => row[k])]);
        changed += 1;
        values += c.values;
      }
      return found;
    });
    rows += page.length;
    if (page.length < batch) return { rows, changed, values };
    after = pk.map((k) => page.at(-1)![k]);
  }
}

function accountRow(keys: Keyring, row: Row): Change {
  const set: Row = {};
  for (const column of ['email', 'name', 'phone']) {
    const value = row[column];
    if (typeof value !== 'string') continue;
    const next = keys.reseal(value);
    if (next !== undefined) set[column] = next;
  }
  if (row.email_hash === null) set.email_hash = keys.emailIndex(keys.reveal(row.email as string));
  return { set, values: ['email', 'name', 'phone'].filter((c) => c in set).length };
}

/** Drivers' journal entries and snapshots may hold a profile in plaintext from before sealing. */
function plainFor(row: Row): ((path: readonly string[]) => boolean) | undefined {
  return String(row.persistence_key).startsWith('driver:') ? driverContactPath : undefined;
}

function jsonColumns(keys: Keyring, row: Row, columns: readonly string[], plain?: (path: readonly string[]) => boolean): Change {
  const set: Row = {};
  let values = 0;
  for (const column of columns) {
    if (row[column] === null || row[column] === undefined) continue;
    const parsed = typeof row[column] === 'string' ? JSON.parse(row[column]) : row[column];
    const out = resealJson(keys, parsed, plain);
    if (out.resealed === 0) continue;
    set[column] = JSON.stringify(out.value);
    values += out.resealed;
  }
  return { set, values };
}

/** A dead letter keeps its command as base64 of the JSON; it is rewritten only if a value in it is re-sealed. */
function deadLetterRow(keys: Keyring, row: Row): Change {
  const text = Buffer.from(String(row.command), 'base64').toString('utf8');
  if (!text.includes('"pd1.')) return { set: {}, values: 0 };
  let parsed: unknown;
  try { parsed = JSON.parse(text); } catch { return { set: {}, values: 0 }; }
  const out = resealJson(keys, parsed);
  return out.resealed === 0
    ? { set: {}, values: 0 }
    : { set: { command: Buffer.from(JSON.stringify(out.value), 'utf8').toString('base64') }, values: out.resealed };
}

/** Sealed values per key id in the tables rotate covers: what an old key still opens. */
export async function sealedByKey(orm: Orm): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  const add = (text: string) => {
    for (const m of text.matchAll(/pd1\.([A-Za-z0-9_-]{1,32})\./g)) counts[m[1]!] = (counts[m[1]!] ?? 0) + 1;
  };
  const conn = orm.em.getConnection();
  for (const q of [
    'select email || coalesce(name, \'\') || coalesce(phone, \'\') as t from account',
    'select data::text || coalesce(state::text, \'\') as t from driver_view',
    `select data::text as t from journal where position('"pd1.' in data::text) > 0`,
    `select data::text as t from snapshot where position('"pd1.' in data::text) > 0`,
  ]) {
    for (const row of await conn.execute(q) as { t: string }[]) add(row.t);
  }
  return counts;
}

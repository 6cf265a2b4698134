// Re-seals personal data under the active key (`npm run keys -- rotate`): account rows,
// driver views, journal entries, snapshots and dead letters. Also seals what was stored in
// plaintext before sealing existed (account columns, drivers' profile name and phone), moves
// pd1 values to pd2 (bound to their record and field, runtime/personal-data.ts), and gives
// old accounts their email hash.
//
// Only the places personal data lives are looked at (PLACES): a rating comment or a cancel
// reason shaped like a sealed value is text, not a value to open. A value there that does
// not open (altered, copied from another record, under a key no longer held, or text a
// request planted before requests were always sealed) is reported with where it is and
// left as it is; the run carries on, so one bad value cannot keep a key from being retired.
//
// Safe while nodes run: each batch is one transaction over rows it locks (FOR UPDATE), so a
// node's write to the same row waits for it or goes first; every value stays readable
// throughout, as the keyring still holds the old keys. A value a node still holds in memory
// may be written under an old key after a run (an entity's state, saved in its next
// snapshot), so the old key is removed only after a run that re-sealed nothing (see README).

import type { Orm } from './orm.ts';
import { inTransaction, type Sql } from './transaction.ts';
import { driverContact, isSealed, keyIdOf, mapPersonalJson, PersonalDataError, type Keyring, type SealContext } from '../../runtime/personal-data.ts';

/** Rows looked at and changed, values re-sealed and values that would not open, in one table. */
export interface TableCounts { readonly rows: number; readonly changed: number; readonly values: number; readonly unreadable: number }

/** A personal value that does not open: its table, its row's key, and the column and path in it. */
export interface UnreadableValue { readonly table: string; readonly row: string; readonly at: string }

export interface RotationReport {
  readonly counts: Readonly<Record<string, TableCounts>>;
  /** Every value that did not open (left as it was), at most UNREADABLE_LISTED of them. */
  readonly unreadable: readonly UnreadableValue[];
}

const BATCH = 200;
/** How many unreadable values a report lists (all are counted). */
export const UNREADABLE_LISTED = 100;

type Row = Record<string, unknown>;
/** Offered each personal value of a row: its replacement, or undefined to keep it. */
type Visit = (value: string, context: SealContext, at: string) => string | undefined;

/** A table that holds personal data, and where in its rows. */
interface Place {
  readonly table: string;
  readonly pk: readonly string[];
  readonly columns: string;
  readonly filter: string;
  /** The columns to write once each personal value of the row has been through `visit` (none: unchanged). */
  readonly map: (row: Row, visit: Visit) => Row;
}

const PLACES: readonly Place[] = [
  {
    table: 'account', pk: ['id'], columns: 'id, email, email_hash, name, phone', filter: '',
    map: (row, visit) => {
      const set: Row = {};
      for (const field of ['email', 'name', 'phone']) {
        const value = row[field];
        if (typeof value !== 'string') continue;
        const next = visit(value, { scope: 'account', id: String(row.id), field }, field);
        if (next !== undefined) set[field] = next;
      }
      return set;
    },
  },
  {
    // A view row holds the driver as admins see it (name and phone at the top) and its state (under profile).
    table: 'driver_view', pk: ['id'], columns: 'id, data, state', filter: '',
    map: (row, visit) => jsonColumns(row, ['data', 'state'], (path) => driverContact(String(row.id), path, true), visit),
  },
  {
    table: 'journal', pk: ['persistence_key', 'sequence_nr'], columns: 'persistence_key, sequence_nr, data',
    filter: `persistence_key like 'driver:%' and position('"profile"' in data::text) > 0`,
    map: (row, visit) => jsonColumns(row, ['data'], (path) => driverContact(driverOf(row), path), visit),
  },
  {
    table: 'snapshot', pk: ['persistence_key'], columns: 'persistence_key, data', filter: `persistence_key like 'driver:%'`,
    map: (row, visit) => jsonColumns(row, ['data'], (path) => driverContact(driverOf(row), path), visit),
  },
  { table: 'dead_letter', pk: ['id'], columns: 'id, command', filter: '', map: deadLetter },
];

/** The driver id of a driver's journal or snapshot row (`driver:<id>`; ids may hold `:` themselves). */
const driverOf = (row: Row) => String(row.persistence_key).slice('driver:'.length);

function jsonColumns(row: Row, columns: readonly string[], where: (path: readonly string[]) => SealContext | undefined, visit: Visit): Row {
  const set: Row = {};
  for (const column of columns) {
    if (row[column] === null || row[column] === undefined) continue;
    const parsed = typeof row[column] === 'string' ? JSON.parse(row[column]) : row[column];
    const out = mapPersonalJson(parsed, where, (value, context, path) => visit(value, context, [column, ...path].join('.')));
    if (out.changed > 0) set[column] = JSON.stringify(out.value);
  }
  return set;
}

/** A dead letter keeps its command as base64 of the JSON; a command to a driver may carry its profile. */
function deadLetter(row: Row, visit: Visit): Row {
  let command: { to?: { kind?: unknown; id?: unknown } } | undefined;
  try { command = JSON.parse(Buffer.from(String(row.command), 'base64').toString('utf8')); } catch { return {}; }
  if (command?.to?.kind !== 'driver' || typeof command.to.id !== 'string') return {};
  const id = command.to.id;
  const out = mapPersonalJson(command, (path) => driverContact(id, path), (value, context, path) => visit(value, context, `command.${path.join('.')}`));
  return out.changed > 0 ? { command: Buffer.from(JSON.stringify(out.value), 'utf8').toString('base64') } : {};
}

export async function rotateKeys(orm: Orm, keys: Keyring, batch = BATCH): Promise<RotationReport> {
  const counts: Record<string, TableCounts> = {};
  const unreadable: UnreadableValue[] = [];
  for (const place of PLACES) {
    let values = 0;
    let bad = 0;
    const pages = await walk(orm, place, batch, true, (row) => {
      const set = place.map(row, (value, context, at) => {
        try {
          const next = keys.reseal(value, context);
          if (next !== undefined) values += 1;
          return next;
        } catch (error) {
          if (!(error instanceof PersonalDataError)) throw error;
          bad += 1;
          if (unreadable.length < UNREADABLE_LISTED) unreadable.push({ table: place.table, row: rowKey(place, row), at });
          return undefined;
        }
      });
      if (place.table === 'account' && row.email_hash === null) addEmailHash(keys, row, set);
      return set;
    });
    counts[place.table] = { ...pages, values, unreadable: bad };
  }
  return { counts, unreadable };
}

/** An account from before email hashes gets one, from its email as it opens (an unreadable email is reported already). */
function addEmailHash(keys: Keyring, row: Row, set: Row): void {
  try {
    set.email_hash = keys.emailIndex(keys.reveal(String(row.email), { scope: 'account', id: String(row.id), field: 'email' }));
  } catch (error) {
    if (!(error instanceof PersonalDataError)) throw error;
  }
}

/** Sealed values that open, per key id, and how many do not, in the places rotate covers: what an old key still opens. */
export async function surveySealed(orm: Orm, keys: Keyring, batch = BATCH): Promise<{ byKey: Record<string, number>; unreadable: number }> {
  const byKey: Record<string, number> = {};
  let unreadable = 0;
  for (const place of PLACES) {
    await walk(orm, place, batch, false, (row) => place.map(row, (value, context) => {
      if (!isSealed(value)) return undefined;
      try {
        keys.open(value, context);
        const id = keyIdOf(value)!;
        byKey[id] = (byKey[id] ?? 0) + 1;
      } catch (error) {
        if (!(error instanceof PersonalDataError)) throw error;
        unreadable += 1;
      }
      return undefined;
    }));
  }
  return { byKey, unreadable };
}

const rowKey = (place: Place, row: Row) => place.pk.map((k) => String(row[k])).join(' ');

/** Walks a table in primary-key order, one transaction per page; with `write`, rows are locked and `change`'s columns written. */
async function walk(
  orm: Orm, place: Place, batch: number, write: boolean, change: (row: Row) => Row,
): Promise<{ rows: number; changed: number }> {
  const { table, pk, columns, filter } = place;
  let after: unknown[] | undefined;
  let rows = 0, changed = 0;
  for (;;) {
    const page = await inTransaction(orm, async (sql: Sql) => {
      const where = [filter, after ? `(${pk.join(', ')}) > (${pk.map(() => '?').join(', ')})` : ''].filter(Boolean).join(' and ');
      const found = await sql<Row>(
        `select ${columns} from ${table} ${where ? `where ${where}` : ''} order by ${pk.join(', ')} limit ?${write ? ' for update' : ''}`,
        [...(after ?? []), batch],
      );
      for (const row of found) {
        const set = change(row);
        const names = Object.keys(set);
        if (!write || names.length === 0) continue;
        await sql(`update ${table} set ${names.map((n) => `${n} = ?`).join(', ')} where ${pk.map((k) => `${k} = ?`).join(' and ')}`,
          [...names.map((n) => set[n]), ...pk.map((k) => row[k])]);
        changed += 1;
      }
      return found;
    });
    rows += page.length;
    if (page.length < batch) return { rows, changed };
    after = pk.map((k) => page.at(-1)![k]);
  }
}

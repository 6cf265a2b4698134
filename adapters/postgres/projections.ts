// Read models projected from the journal, exactly once.
//
// The journal is the truth; every view (booking_view, analytics_*, driver_view,
// vehicle_view) is a projection of it. A projection reads the journal rows of one
// entity kind, shard by shard, in order, folds their domain events, writes the view
// rows and moves its offset for that shard IN THE SAME TRANSACTION. A crash, a timeout
// that lets the transaction commit and then retries it, or two nodes working the same
// shard during a handover: the next batch starts from the stored offset, so every
// journal row changes the views exactly once.
//
// Order without gaps. A global bigserial is not a safe cursor: ids are taken when a
// row is inserted, not when it commits, so id 11 can be visible before id 10 and a
// reader that moved past 11 never sees 10. Here each journal row carries the id of the
// transaction that wrote it (`tx xid8`, pg_current_xact_id()) and a projection reads
// only rows whose transaction is older than the oldest one still running
// (`tx < pg_snapshot_xmin(pg_current_snapshot())`): every such transaction has ended,
// so no row below that bound can appear later. Rows are read in (tx, persistence_key,
// sequence_nr) order and the offset is that triple. One entity's rows are in sequence
// order too: its next append starts only after the previous one committed, so it has
// a larger xid. The cost: a long transaction anywhere on the server holds every
// projection back (lag, never loss). xid8 is 64 bits, so it does not wrap.
//
// Shards. Each row records its entity's shard; offsets are kept per (projection,
// shard) in projection_offset. A node projects the shards it owns; when a shard moves,
// the new owner starts from the stored offset. A batch takes a transaction-scoped
// advisory lock on (projection, shard), so a batch of the old owner still running and
// one of the new owner (or a rebuild) are serialised and the second re-reads the offset.
// With a WriteFence, a batch's offset write is also conditional on this node's epoch for
// the shard (shard-epochs.ts): a node that lost the shard without noticing has its whole
// batch (views and offset) rolled back.
//
// Folding. Bookings and analytics fold each booking's journal history (bookings live
// minutes: short histories); drivers and vehicles, whose histories are long (presence
// timers), keep their folded state and the sequence number it reflects in their view
// row. Every view row carries the journal sequence number of its entity that it
// reflects and is only ever replaced by a newer one.

import type { Orm } from './orm.ts';
import { inTransaction, type Sql } from './transaction.ts';
import type { Guard } from '../resilience.ts';
import type { WriteFence } from '../../runtime/ports.ts';
import type { ProjectionStatus, Projections } from '../../http/ports.ts';
import { epochFor, fencedBy } from './shard-epochs.ts';
import type { JournalRecord } from '../../runtime/entity-actor.ts';
import { applyBooking, bookingView, initialBooking, type BookingEvent, type BookingState } from '../../actors/booking.ts';
import { applyDriver, driverView, initialDriver, type DriverEvent, type DriverState } from '../../actors/driver.ts';
import { applyVehicle, vehicleView, type VehicleEvent, type VehicleState } from '../../actors/vehicle.ts';
import { analyticsDelta, type BookingEventView, type Increments } from '../../actors/analytics.ts';

export type { Sql } from './transaction.ts';

/** One journal row as a projection sees it. */
export interface JournalRow {
  readonly key: string;
  readonly id: string;
  readonly seq: number;
  readonly tx: string;
  /** The shard it was journaled on (a batch reads several). */
  readonly shard: number;
  readonly record: ProjectedRecord;
}

/** What projections read of a journal record: its events and when it was handled. */
export type ProjectedRecord = Pick<JournalRecord, 'at' | 'events'>;

/**
 * The select-list item of a journal row's record as projections read it: its events and time,
 * not the tells and timers beside them (about half a booking's record, parsed for nothing).
 */
const PROJECTED = `jsonb_build_object('at', data->'at', 'events', data->'events') as data`;

export interface Projection {
  readonly name: string;
  /** The entity kind whose journal rows it reads. */
  readonly kind: string;
  /** The tables it owns alone: emptied by a rebuild. */
  readonly tables: readonly string[];
  /**
   * Writes what `rows` (of one or more shards, each entity's in sequence order) change in the views.
   * `memo`: entity states this projection folded in earlier batches (a rebuild's, or a node's live ones), by
   * persistence key, each at the sequence number it reflects. A state is a function of the
   * journal up to its sequence number, so it stays right whoever projects next; a row that
   * follows it at once is folded on it instead of reading the entity's history again.
   */
  apply(sql: Sql, rows: readonly JournalRow[], memo?: StateMemo): Promise<void>;
  /**
   * Optional, for a projection whose writes of several reads add up in memory (sums, the latest
   * state of an entity): a Stage that gathers them, so a transaction reading the journal in
   * several passes writes each view row once, not once per pass. `apply` is stage, add, flush.
   */
  stage?(): Stage;
}

/** What a projection will write, gathered from the rows of one or more reads of one transaction. */
export interface Stage {
  add(sql: Sql, rows: readonly JournalRow[], memo?: StateMemo): Promise<void>;
  /** View rows waiting to be written (a transaction flushes when they are many). */
  readonly size: number;
  /** Writes them and starts empty again. */
  flush(sql: Sql): Promise<void>;
}

/** `apply` of a projection that stages: every row in one add and one flush. */
function applyStaged(stage: () => Stage): Projection['apply'] {
  return async (sql, rows, memo) => {
    const s = stage();
    await s.add(sql, rows, memo);
    await s.flush(sql);
  };
}

/** See Projection.apply: at most `max` states, the least recently folded going first. */
export type StateMemo = Map<string, { readonly seq: number; readonly state: unknown }> & { readonly max: number };

export function stateMemo(max: number): StateMemo {
  return Object.assign(new Map<string, { readonly seq: number; readonly state: unknown }>(), { max });
}

/**
 * States a node's own (live) batches keep per projection. A booking's rows come a few at a
 * time, a batch every wake-up: without them, every batch read each of its bookings' whole
 * history again, the heaviest statement of the embedded node's projections (7 to 17 ms each
 * in PGlite). A few thousand bookings in flight fit; one that fell out is read again.
 */
export const LIVE_MEMO_MAX = 5_000;

// ---------------------------------------------------------------------------------------
// Folds, shared with the checker in test/helpers (the truth computed from the journal).

export const INITIAL_VEHICLE: VehicleState = { exists: false, deleted: false, plate: '', vehicleType: '', capacity: 0, maintenance: [] };

/** Events of a record as the current reducers read them (all kinds are at event version 1, none upcasts). */
function eventsOf<E>(record: ProjectedRecord): readonly E[] {
  return (record.events ?? []) as readonly E[];
}

export function foldBooking(state: BookingState, record: ProjectedRecord): BookingState {
  return eventsOf<BookingEvent>(record).reduce(applyBooking, state);
}

/**
 * What the booking announced when this record moved it, as the actor publishes it
 * (actors/booking.ts: a change of status, or a rating): the input of analyticsDelta. The
 * booking is the state itself, not the API's view of it: analytics reads a few fields, and
 * building the view (ISO strings for the whole timeline) at every transition was a tenth of
 * a rebuild's time.
 */
export function bookingTransition(before: BookingState, after: BookingState, record: ProjectedRecord): BookingEventView | undefined {
  if (after.status !== before.status) {
    return {
      type: `booking.${after.status}`, at: after.timeline.at(-1)?.at, booking: after,
      pickupCell: after.pickupCell, driverId: after.driverId ?? after.offer?.driverId,
    };
  }
  if (eventsOf<BookingEvent>(record).some((e) => e.type === 'rated')) {
    return {
      type: 'booking.rated', at: record.at, booking: after, pickupCell: after.pickupCell,
    };
  }
  return undefined;
}

function parseJson(value: unknown): unknown {
  return typeof value === 'string' ? JSON.parse(value) : value;
}

function placeholders(n: number): string {
  return Array.from({ length: n }, () => '?').join(',');
}

/**
 * Many rows in one statement: they travel as one jsonb array, typed by `columns`
 * (`computed` columns take an SQL expression instead). A batch costs one round trip
 * per table, not one per row. `tail` is the ON CONFLICT clause; the rows must not
 * repeat a conflict key (one statement cannot update a row twice).
 *
 * Rows are written in the order of `key`, the table's conflict key. Batches of two shards
 * run at once and may write the same rows (analytics of one hour and cell, a rider seen in
 * both): each locks the rows it writes until it commits, and two batches taking the same
 * rows in different orders deadlock (PostgreSQL then aborts one). In one order, the second
 * waits for the first.
 */
export async function insertMany(
  sql: Sql, table: string, key: readonly string[], columns: Readonly<Record<string, string>>, rows: readonly Record<string, unknown>[],
  tail: string, computed: Readonly<Record<string, string>> = {},
): Promise<void> {
  if (rows.length === 0) return;
  const names = Object.keys(columns);
  const all = [...names, ...Object.keys(computed)];
  // The rows are quoted here and the statement has no parameters left: `sql` would quote them
  // a character at a time, and a rebuild's writes (17 MB of JSON) spent longer in that than in
  // JSON.stringify, and more again in the garbage collector.
  await sql(
    `insert into ${table} (${all.join(', ')})
     select ${[...names.map((n) => `r.${n}`), ...Object.values(computed)].join(', ')}
     from jsonb_to_recordset(${sqlLiteral(JSON.stringify(rows))}::jsonb) as r(${names.map((n) => `${n} ${columns[n]}`).join(', ')})
     order by ${key.map((k) => `r.${k}`).join(', ')}
     ${tail}`);
}

/**
 * Many rows in one statement, as insertMany writes them, but column by column: one array per
 * column, unnested, where insertMany sends one jsonb array of objects. For wide tables of numbers
 * and short strings (analytics): the server parsed the jsonb of a rebuild's (hour, cell) sums in
 * longer than it took to insert them (19k rows: 290 ms with jsonb, 140 ms with arrays).
 * `columns` gives each column's SQL type; `values` its values, one per row, in the same order.
 */
export async function insertColumns(
  sql: Sql, table: string, key: readonly string[], columns: Readonly<Record<string, string>>,
  values: Readonly<Record<string, readonly (string | number | null)[]>>, tail: string,
): Promise<void> {
  const names = Object.keys(columns);
  if ((values[names[0]!]?.length ?? 0) === 0) return;
  await sql(
    `insert into ${table} (${names.join(', ')})
     select ${names.map((n) => `r.${n}`).join(', ')}
     from unnest(${names.map((n) => `${sqlLiteral(arrayLiteral(values[n]!))}::${columns[n]}[]`).join(', ')}) as r(${names.join(', ')})
     order by ${key.map((k) => `r.${k}`).join(', ')}
     ${tail}`);
}

/** `values` as the text of a PostgreSQL array (array_in's input): strings quoted, `"` and `\\` escaped. */
export function arrayLiteral(values: readonly (string | number | null)[]): string {
  return `{${values.map((v) => v === null ? 'NULL' : typeof v === 'number' ? String(v) : `"${v.replace(/["\\]/g, '\\$&')}"`).join(',')}}`;
}

/** `text` as an SQL string literal, as pg's escapeLiteral writes it (quotes and backslashes doubled, E'' when there are backslashes). */
export function sqlLiteral(text: string): string {
  const quoted = `'${text.replaceAll("'", "''")}'`;
  return text.includes('\\') ? ` E${quoted.replaceAll('\\', '\\\\')}` : quoted;
}

/** Every journal row of these entities up to the last one of the batch, in sequence order. */
async function histories(sql: Sql, rows: readonly JournalRow[]): Promise<Map<string, JournalRow[]>> {
  const upTo = new Map<string, number>();
  for (const r of rows) upTo.set(r.key, Math.max(upTo.get(r.key) ?? 0, r.seq));
  const keys = [...upTo.keys()];
  const found = await sql<{ persistence_key: string; sequence_nr: string | number; data: unknown }>(
    `select persistence_key, sequence_nr, ${PROJECTED} from journal where persistence_key in (${placeholders(keys.length)}) ` +
    'order by persistence_key, sequence_nr',
    keys,
  );
  const out = new Map<string, JournalRow[]>();
  for (const f of found) {
    const seq = Number(f.sequence_nr);
    if (seq > upTo.get(f.persistence_key)!) continue;
    const list = out.get(f.persistence_key) ?? [];
    list.push({
      key: f.persistence_key,
      id: f.persistence_key.slice(f.persistence_key.indexOf(':') + 1),
      seq,
      tx: '',
      shard: -1, // (a history row is folded, never written)
      record: parseJson(f.data) as ProjectedRecord,
    });
    out.set(f.persistence_key, list);
  }
  return out;
}

/** Most booking states a rebuild keeps between batches (the oldest go first): a few thousand bookings per shard fit. */
const MEMO_MAX = 50_000;

/**
 * For each booking row of the batch: the booking before and after it. A booking whose rows
 * here start at its first, or follow its state in `memo` at once, is folded from there; the
 * others from their history, read again.
 */
async function bookingSteps(sql: Sql, rows: readonly JournalRow[], memo?: StateMemo) {
  const byKey = new Map<string, JournalRow[]>();
  for (const r of rows) {
    const list = byKey.get(r.key);
    if (list) list.push(r); else byKey.set(r.key, [r]);
  }
  // `read`: a history read again, of which only the batch's rows are steps (the others are all steps).
  const starts: [key: string, history: readonly JournalRow[], state: BookingState, read: boolean][] = [];
  const unknown: JournalRow[] = [];
  for (const [key, list] of byKey) {
    const known = list[0]!.seq === 1 ? { seq: 0, state: initialBooking(key.slice(key.indexOf(':') + 1)) } : memo?.get(key);
    if (known && list.every((r, i) => r.seq === known.seq + 1 + i)) starts.push([key, list, known.state as BookingState, false]);
    else unknown.push(...list);
  }
  for (const [key, history] of unknown.length > 0 ? await histories(sql, unknown) : []) {
    starts.push([key, history, initialBooking(key.slice(key.indexOf(':') + 1)), true]);
  }
  // A key-and-sequence string per row, for every row of a rebuild, was a fifth of its folding
  // time (2.9 s against 3.9 s): only the rows of histories read again need looking up.
  // A step is the batch's row, not the history's copy of it: that one knows neither its shard nor its tx
  // (booking_view took shard -1 from it, and the scheduler looks for due bookings by shard).
  const wanted = new Map(unknown.map((r) => [`${r.key}#${r.seq}`, r]));
  const steps: { row: JournalRow; before: BookingState; after: BookingState }[] = [];
  for (const [key, history, first, read] of starts) {
    let state = first;
    for (const h of history) {
      const next = foldBooking(state, h.record);
      const row = read ? wanted.get(`${key}#${h.seq}`) : h;
      if (row) steps.push({ row, before: state, after: next });
      state = next;
    }
    if (memo) remember(memo, key, history.at(-1)!.seq, state);
  }
  return steps;
}

function remember(memo: StateMemo, key: string, seq: number, state: unknown): void {
  memo.delete(key);
  memo.set(key, { seq, state });
  if (memo.size > memo.max) memo.delete(memo.keys().next().value!);
}

/** booking_view: the latest state of each booking, by the journal sequence number it reflects. */
function bookingsStage(): Stage {
  const latest = new Map<string, { seq: number; shard: number; state: BookingState }>();
  return {
    get size() { return latest.size; },
    async add(sql, rows, memo) {
      for (const s of await bookingSteps(sql, rows, memo)) {
        if (s.row.record.events.length === 0 || s.after.status === 'none') continue;
        const seen = latest.get(s.row.key);
        if (!seen || seen.seq < s.row.seq) latest.set(s.row.key, { seq: s.row.seq, shard: s.row.shard, state: s.after });
      }
    },
    async flush(sql) {
      const rows = [...latest.values()];
      latest.clear();
      await insertMany(sql, 'booking_view', ['id'], {
        id: 'text', shard: 'integer', rider_id: 'text', driver_id: 'text', status: 'text', vehicle_type: 'text', pickup_cell: 'text',
        scheduled_at: 'timestamptz', created_at: 'timestamptz', version: 'bigint', data: 'jsonb',
      }, rows.map(({ seq, shard, state: b }) => ({
        id: b.id, shard, rider_id: b.riderId, driver_id: b.driverId ?? null, status: b.status, vehicle_type: b.vehicleType,
        pickup_cell: b.pickupCell ?? '', scheduled_at: b.scheduledAt !== undefined ? new Date(b.scheduledAt) : null,
        created_at: new Date(b.createdAt), version: seq, data: bookingView(b),
      })), `on conflict (id) do update set driver_id = excluded.driver_id, status = excluded.status, updated_at = now(),
         version = excluded.version, data = excluded.data, shard = excluded.shard
       where booking_view.version < excluded.version`, { updated_at: 'now()' });
    },
  };
}

export const bookingsProjection: Projection = {
  name: 'bookings',
  kind: 'booking',
  tables: ['booking_view'],
  apply: applyStaged(bookingsStage),
  stage: bookingsStage,
};

/** Sums of one (hour, cell) and the drivers active there. */
export interface CellSums { readonly hour: number; readonly cell: string; readonly i: Increments; readonly drivers: Set<string> }

/** Analytics additions of booking transitions: sums and the drivers active per (hour, cell), each rider's first request. */
export interface AnalyticsSums {
  /** By hour, then cell. */
  readonly cells: Map<number, Map<string, CellSums>>;
  readonly riders: Map<string, { hour: number; cell: string }>;
  /** (hour, cell) sums and drivers in them: what the first two tables get. */
  rows: number;
}

/**
 * Analytics additions of a set of booking transitions, summed per (hour, cell); added to `into` when given.
 * A rebuild adds some 400k deltas here, so no key string is built per delta: sums are found by hour,
 * then cell, and each active driver goes in its cell's set. A key of hour and cell per delta (the
 * function's costliest line, the hour's digits), and a key and an object per driver and delta, made
 * this a third of a rebuild's folding.
 */
export function analyticsOf(events: readonly BookingEventView[], into?: AnalyticsSums): AnalyticsSums {
  const sums = into ?? { cells: new Map(), riders: new Map(), rows: 0 };
  const { cells, riders } = sums;
  for (const event of events) {
    const delta = analyticsDelta(event, event.pickupCell ?? '');
    if (!delta) continue;
    let hour = cells.get(delta.hour);
    if (!hour) cells.set(delta.hour, hour = new Map());
    let c = hour.get(delta.cell);
    if (!c) {
      c = {
        hour: delta.hour, cell: delta.cell, drivers: new Set(),
        i: { requests: 0, completed: 0, cancelled: 0, noDriver: 0, revenue: 0, fareCount: 0, waitMsSum: 0, waitCount: 0, surgeSum: 0, surgeCount: 0, tripMsSum: 0 },
      };
      hour.set(delta.cell, c);
      sums.rows++;
    }
    const inc = delta.increments;
    for (const name in inc) c.i[name as keyof Increments] += inc[name as keyof Increments] ?? 0;
    if (delta.activeDriver && !c.drivers.has(delta.activeDriver)) { c.drivers.add(delta.activeDriver); sums.rows++; }
    if (delta.rider) {
      const r = riders.get(delta.rider);
      if (!r || delta.hour < r.hour || (delta.hour === r.hour && delta.cell < r.cell)) {
        riders.set(delta.rider, { hour: delta.hour, cell: delta.cell });
      }
    }
  }
  return sums;
}

/** Every (hour, cell) of `sums`. */
export function cellSums(sums: AnalyticsSums): CellSums[] {
  return [...sums.cells.values()].flatMap((hour) => [...hour.values()]);
}

/**
 * The drivers active per (hour, cell) and per hour, from one list of cells with their drivers: a
 * row per driver, and the hour's rows derived from them in the statement, were twice the JSON for
 * this process to write and the server to parse (a rebuild of the bench's 100k bookings: 150k rows).
 * Each table's rows go in key order, as insertMany's (see there why).
 */
async function writeDrivers(sql: Sql, cells: readonly CellSums[]): Promise<void> {
  const hours: string[] = [], cellIds: string[] = [], drivers: string[] = [];
  for (const c of cells) {
    if (c.drivers.size === 0) continue;
    const hour = new Date(c.hour).toISOString();
    for (const driver of c.drivers) { hours.push(hour); cellIds.push(c.cell); drivers.push(driver); }
  }
  if (drivers.length === 0) return;
  await sql(
    `with d as (
       select * from unnest(${sqlLiteral(arrayLiteral(hours))}::timestamptz[], ${sqlLiteral(arrayLiteral(cellIds))}::text[],
         ${sqlLiteral(arrayLiteral(drivers))}::text[]) as d(hour, cell, driver_id)),
     by_cell as (
       insert into analytics_driver_hour_cell (hour, cell, driver_id) select hour, cell, driver_id from d order by hour, cell, driver_id
       on conflict do nothing)
     insert into analytics_driver_hour (hour, driver_id) select distinct hour, driver_id from d order by hour, driver_id
     on conflict do nothing`);
}

/** The analytics tables: sums, drivers and riders of many reads added up, then written once. */
function analyticsStage(): Stage {
  let sums: AnalyticsSums = { cells: new Map(), riders: new Map(), rows: 0 };
  return {
    get size() { return sums.rows + sums.riders.size; },
    async add(sql, rows, memo) {
      const steps = await bookingSteps(sql, rows, memo);
      analyticsOf(steps.flatMap((s) => bookingTransition(s.before, s.after, s.row.record) ?? []), sums);
    },
    async flush(sql) {
      const cells = cellSums(sums);
      const { riders } = sums;
      sums = { cells: new Map(), riders: new Map(), rows: 0 };
      const counters = [
        'requests', 'completed', 'cancelled', 'no_driver', 'revenue', 'fare_count',
        'wait_ms_sum', 'wait_count', 'surge_sum', 'surge_count', 'trip_ms_sum',
      ];
      await insertColumns(sql, 'analytics_hour_cell', ['hour', 'cell'], {
        hour: 'timestamptz', cell: 'text', requests: 'integer', completed: 'integer', cancelled: 'integer', no_driver: 'integer',
        revenue: 'bigint', fare_count: 'integer', wait_ms_sum: 'bigint', wait_count: 'integer', surge_sum: 'double precision',
        surge_count: 'integer', trip_ms_sum: 'bigint',
      }, {
        hour: cells.map((c) => new Date(c.hour).toISOString()), cell: cells.map((c) => c.cell),
        requests: cells.map((c) => c.i.requests), completed: cells.map((c) => c.i.completed), cancelled: cells.map((c) => c.i.cancelled),
        no_driver: cells.map((c) => c.i.noDriver), revenue: cells.map((c) => c.i.revenue), fare_count: cells.map((c) => c.i.fareCount),
        wait_ms_sum: cells.map((c) => Math.round(c.i.waitMsSum)), wait_count: cells.map((c) => c.i.waitCount),
        surge_sum: cells.map((c) => c.i.surgeSum), surge_count: cells.map((c) => c.i.surgeCount), trip_ms_sum: cells.map((c) => Math.round(c.i.tripMsSum)),
      }, `on conflict (hour, cell) do update set ${counters.map((c) => `${c} = analytics_hour_cell.${c} + excluded.${c}`).join(', ')}`);
      await writeDrivers(sql, cells);
      // A rider's first request may be projected after a later one (another shard): the earliest wins, whatever the order.
      const riderRows = [...riders];
      await insertColumns(sql, 'analytics_rider', ['rider_id'], { rider_id: 'text', first_seen: 'timestamptz', first_cell: 'text' }, {
        rider_id: riderRows.map(([riderId]) => riderId), first_seen: riderRows.map(([, r]) => new Date(r.hour).toISOString()),
        first_cell: riderRows.map(([, r]) => r.cell),
      }, `on conflict (rider_id) do update set first_seen = excluded.first_seen, first_cell = excluded.first_cell
         where (excluded.first_seen, excluded.first_cell) < (analytics_rider.first_seen, coalesce(analytics_rider.first_cell, ''))`);
    },
  };
}

export const analyticsProjection: Projection = {
  name: 'analytics',
  kind: 'booking',
  tables: ['analytics_hour_cell', 'analytics_driver_hour', 'analytics_driver_hour_cell', 'analytics_rider'],
  apply: applyStaged(analyticsStage),
  stage: analyticsStage,
};

/** Drivers and vehicles: the view row holds the folded state and the sequence number it reflects. */
function stateProjection<S>(o: {
  name: string; kind: string; table: string; initial: (id: string) => S; apply: (s: S, e: any) => S;
  /** The view's columns besides id, version and state, with their SQL types. */
  columns: Readonly<Record<string, string>>;
  row: (id: string, state: S) => Record<string, unknown>;
}): Projection {
  const update = [...Object.keys(o.columns), 'version', 'state'].map((c) => `${c} = excluded.${c}`).join(', ');
  return {
    name: o.name, kind: o.kind, tables: [o.table],
    async apply(sql, rows) {
      const ids = [...new Set(rows.map((r) => r.id))];
      const current = await sql<{ id: string; version: string | number; state: unknown }>(
        `select id, version, state from ${o.table} where id in (${placeholders(ids.length)})`, ids);
      const states = new Map(current.map((c) => [
        c.id,
        { seq: Number(c.version), state: (parseJson(c.state) ?? o.initial(c.id)) as S, changed: false },
      ]));
      for (const r of rows) {
        const s = states.get(r.id) ?? { seq: 0, state: o.initial(r.id), changed: false };
        // A row at or below the stored version is already in the state (never applied twice).
        if (r.seq <= s.seq || r.record.events.length === 0) { states.set(r.id, s); continue; }
        states.set(r.id, { seq: r.seq, state: eventsOf(r.record).reduce(o.apply, s.state), changed: true });
      }
      const changed = [...states].filter(([, s]) => s.changed)
        .map(([id, s]) => ({ id, ...o.row(id, s.state), version: s.seq, state: s.state }));
      await insertMany(sql, o.table, ['id'], { id: 'text', ...o.columns, version: 'bigint', state: 'jsonb' }, changed,
        `on conflict (id) do update set ${update}, updated_at = now() where ${o.table}.version < excluded.version`,
        { updated_at: 'now()' });
    },
  };
}

export const driversProjection = stateProjection<DriverState>({
  name: 'drivers', kind: 'driver', table: 'driver_view', initial: () => initialDriver(), apply: (s, e: DriverEvent) => applyDriver(s, e),
  columns: { status: 'text', data: 'jsonb' },
  row: (id, state) => ({ status: state.status, data: driverView(id, state) }),
});

export const vehiclesProjection = stateProjection<VehicleState>({
  name: 'vehicles', kind: 'vehicle', table: 'vehicle_view', initial: () => INITIAL_VEHICLE,
  apply: (s, e: VehicleEvent) => applyVehicle(s, e),
  columns: { driver_id: 'text', deleted: 'boolean', data: 'jsonb' },
  row: (id, state) => ({ driver_id: state.driverId ?? null, deleted: state.deleted, data: vehicleView(id, state) }),
});

export const PROJECTIONS: readonly Projection[] = [bookingsProjection, analyticsProjection, driversProjection, vehiclesProjection];

// ---------------------------------------------------------------------------------------
// The runner.

export interface ProjectorOptions {
  readonly orm: Orm;
  /** The shared PostgreSQL policy: while its breaker is open, projections wait (lag grows, nothing is lost). */
  readonly guard?: Guard;
  readonly projections?: readonly Projection[];
  /** Shards this node owns now. */
  readonly owned: () => readonly number[];
  /** Makes each batch's offset write conditional on this node's epoch for the shard (not a rebuild's). */
  readonly fence?: WriteFence;
  readonly totalShards: number;
  /**
   * How often every owned shard is looked at even without a wake-up (default 1 s): rows a
   * wake-up found not yet visible (an older transaction still open), rows no wake-up
   * announced. After a few sweeps that found nothing with no wake-up between them, the
   * sweeps back off, doubling up to `idlePollMs`: an idle node costs nothing to speak of.
   * Any wake-up, any row found, or a change of the owned shards sweeps at `pollMs` again.
   */
  readonly pollMs?: number;
  /** The longest a quiet node waits between sweeps (default 30 s; never below pollMs). */
  readonly idlePollMs?: number;
  /** How long after a wake-up its projection runs, so the rows of that while go in one batch (default 50 ms; 0: at once). */
  readonly wakeDelayMs?: number;
  readonly batchSize?: number;
  /** Shards one projection catches up at once (default SHARDS_AT_ONCE; 1 for a database of one connection). */
  readonly shardsAtOnce?: number;
  /**
   * Journal rows per read of a rebuild of a projection that stages (default 2,000; see REBUILD_PAGE),
   * and per batch of a rebuild of one that does not (default 20,000, about a shard of the bench's 100k
   * bookings). A rebuild reads the whole journal and nobody waits on its single rows, so it
   * takes big batches: each batch is a transaction and re-reads its bookings' histories, which
   * at the live batch size was most of a rebuild's time.
   */
  readonly rebuildBatchSize?: number;
  /**
   * Shards a rebuild of a projection that stages takes in one transaction (default all): their
   * views are written once for all of them. Its connection is held throughout: the embedded
   * database, which has one, takes one shard at a time so other statements get their turn.
   */
  readonly rebuildShardsPerTransaction?: number;
  readonly now?: () => number;
  readonly onError?: (error: unknown, context: string) => void;
  /** Test hook: runs after a batch committed, inside the guarded call (a slow one makes the guard time out and retry). */
  readonly afterCommit?: (projection: string, shard: number, rows: number) => Promise<void>;
}

/** A transaction's work: rows projected by shard, and the shards whose last read was full (more may wait). */
interface Batch {
  readonly rows: ReadonlyMap<number, number>;
  readonly full: readonly number[];
}

/** The fence refused the offsets of these shards (another node holds them): the whole transaction was rolled back. */
class Refused extends Error {
  readonly shards: readonly number[];
  override readonly cause: Error;
  constructor(shards: readonly number[], cause: Error) {
    super(cause.message, { cause });
    this.shards = shards;
    this.cause = cause;
  }
}

/**
 * `shards` cut into at most `count` groups, each in shard order, each a transaction at a time:
 * a batch of all a group's shards is a handful of statements where one per shard was as many
 * for each (at 200 bookings/s a batch was ten statements of about 4 ms each, for 7 rows).
 */
export function shardGroups(shards: readonly number[], count: number): number[][] {
  const sorted = [...shards].sort((a, b) => a - b);
  const n = Math.max(1, Math.min(count, sorted.length));
  const groups = Array.from({ length: n }, () => [] as number[]);
  sorted.forEach((shard, i) => groups[i % n]!.push(shard));
  return groups.filter((g) => g.length > 0);
}

/**
 * Up to `perShard` journal rows of each of `shards` that this projection can project now, after
 * the shard's stored offset, in (shard, tx, persistence_key, sequence_nr) order. One statement
 * for every shard, taken after their locks: it sees the offsets of any batch that committed before.
 */
async function readJournal(sql: Sql, p: Projection, shards: readonly number[], perShard: number): Promise<JournalRow[]> {
  const rows = await sql<ReadRow & { shard: number }>(
    `select s.shard, j.tx::text as tx, j.persistence_key, j.sequence_nr, j.data
     from unnest(array[${placeholders(shards.length)}]::int[]) as s(shard)
     left join projection_offset o on o.projection = ? and o.shard = s.shard
     cross join lateral (
       select jr.tx, jr.persistence_key, jr.sequence_nr, ${PROJECTED.replaceAll('data->', 'jr.data->')} from journal jr
       where jr.kind = ? and jr.shard = s.shard and jr.tx < pg_snapshot_xmin(pg_current_snapshot())
         and (jr.tx, jr.persistence_key, jr.sequence_nr) > (coalesce(o.tx, '0'::xid8), coalesce(o.persistence_key, ''), coalesce(o.sequence_nr, 0))
       order by jr.tx, jr.persistence_key, jr.sequence_nr limit ?) j
     order by s.shard, j.tx, j.persistence_key, j.sequence_nr`,
    [...shards, p.name, p.kind, perShard]);
  return rows.map((r) => journalRow(r, Number(r.shard), parseJson(r.data) as ProjectedRecord));
}

/** A journal row as a read returns it (`data` or `at` and `events`, as the select has them). */
interface ReadRow { tx: string; persistence_key: string; sequence_nr: string | number; data?: unknown; at?: string | number | null; events?: unknown }

function journalRow(r: ReadRow, shard: number, record: ProjectedRecord): JournalRow {
  const key = r.persistence_key;
  return { key, id: key.slice(key.indexOf(':') + 1), seq: Number(r.sequence_nr), tx: r.tx, shard, record };
}

/** Where a rebuild's read of a shard stands: after this (tx, persistence_key, sequence_nr). */
type Position = Pick<JournalRow, 'tx' | 'key' | 'seq'>;

const START: Position = { tx: '0', key: '', seq: 0 };

/**
 * Up to `limit` journal rows of one shard after `after`, in (tx, persistence_key, sequence_nr)
 * order, that a projection can project now: a page of a rebuild, which keeps its own position
 * (its offsets are written once, at the end of its transaction). The record's time and events
 * come as text columns of their own: the jsonb_build_object of `PROJECTED` cost the server more
 * than the rest of the read, and `->` (a jsonb value made, then printed) 1.6 times what `->>` does.
 * The rows come as the server sent them, their events unparsed (see pages, and pageRows).
 */
function readPage(sql: Sql, kind: string, shard: number, after: Position, limit: number): Promise<ReadRow[]> {
  return sql<ReadRow>(
    // (j.tx in the order: the bare name would be the text column of the select list, and '10' < '9'.)
    `select j.tx::text as tx, j.persistence_key, j.sequence_nr, j.data->>'at' as at, j.data->>'events' as events from journal j
     where j.kind = ? and j.shard = ? and j.tx < pg_snapshot_xmin(pg_current_snapshot())
       and (j.tx, j.persistence_key, j.sequence_nr) > (?::xid8, ?, ?)
     order by j.tx, j.persistence_key, j.sequence_nr limit ?`,
    [kind, shard, after.tx, after.key, after.seq, limit]);
}

/** A page's rows as projections read them: each record's events parsed. */
function pageRows(rows: readonly ReadRow[], shard: number): JournalRow[] {
  return rows.map((r) => journalRow(r, shard, { at: (r.at == null ? r.at : Number(r.at)) as number, events: (parseJson(r.events) ?? []) as ProjectedRecord['events'] }));
}

/**
 * Each shard's offset moved to its last row read, in one statement. With `epochs` (an owner's
 * batch), only where this node's epoch of the shard is still the current one: the shards
 * whose offset was not written are given to `refused`, whose error rolls the whole batch back.
 */
async function writeOffsets(
  sql: Sql, name: string, last: readonly JournalRow[], epochs: ReadonlyMap<number, number | undefined> | undefined,
  refused: (shards: number[]) => Error,
): Promise<void> {
  if (last.length === 0) return;
  const offsets = last.map((r) => ({ shard: r.shard, tx: r.tx, key: r.key, seq: r.seq, epoch: epochs?.get(r.shard) ?? null }));
  const written = await sql<{ shard: number }>(
    `insert into projection_offset (projection, shard, tx, persistence_key, sequence_nr, updated_at)
     select ?, r.shard, r.tx::xid8, r.key, r.seq, now()
     from jsonb_to_recordset(?::jsonb) as r(shard int, tx text, key text, seq bigint, epoch bigint)
     ${epochs ? `where ${fencedBy('r.shard', 'r.epoch')}` : ''}
     order by r.shard
     on conflict (projection, shard) do update set tx = excluded.tx, persistence_key = excluded.persistence_key,
       sequence_nr = excluded.sequence_nr, updated_at = excluded.updated_at
     returning shard`,
    [name, JSON.stringify(offsets)]);
  if (written.length === last.length) return;
  const ok = new Set(written.map((w) => Number(w.shard)));
  throw refused(last.map((r) => r.shard).filter((shard) => !ok.has(shard)));
}

/**
 * The pages of `shards`, one shard after another, each read from `from(shard)` to its end. The
 * next page is asked for as soon as a page arrives, before its events are parsed and before the
 * caller works on it: the server reads while this process parses and folds (one connection runs
 * one statement at a time, so this is as much overlap as a transaction gets). Parsing first, then
 * asking, left the server idle while each page was parsed (JSON.parse of the events: 0.7 s of a
 * 4.9 s rebuild of the bench's 100k bookings, in --cpu-prof).
 */
async function* pages(sql: Sql, kind: string, shards: readonly number[], from: (shard: number) => Position, size: number) {
  const read = (i: number, after: Position) => {
    const rows = readPage(sql, kind, shards[i]!, after, size);
    rows.catch(() => {}); // (awaited below, or abandoned with the transaction when the caller fails first)
    return { i, rows };
  };
  let next = shards.length > 0 ? read(0, from(shards[0]!)) : undefined;
  while (next) {
    const { i, rows: reading } = next;
    const rows = await reading;
    const last = rows.at(-1);
    next = rows.length === size && last ? read(i, { tx: last.tx, key: last.persistence_key, seq: Number(last.sequence_nr) })
      : i + 1 < shards.length ? read(i + 1, from(shards[i + 1]!)) : undefined;
    yield { shard: shards[i]!, rows: pageRows(rows, shards[i]!) };
  }
}

/**
 * Journal rows per read of a rebuild that stages. Small enough that a page and the garbage of its
 * fold die young: the collector took about 40% less with pages of 1-2k rows than of 20k (bench's
 * 100k bookings, --trace-gc), and the reads, each an index range, cost the server no more.
 */
const REBUILD_PAGE = 2_000;

/** View rows a rebuild's stage may hold before it writes them (the bench's 100k bookings make about 120k). */
const REBUILD_FLUSH_AT = 500_000;

interface ShardState {
  /** Since when journal rows may wait for this shard (undefined: caught up as far as this node knows). */
  pendingSince: number | undefined;
}

export type { ProjectionStatus };

/**
 * Shards one projection catches up at once, each a transaction on a connection of its own:
 * two overlap their round trips (at 200 bookings/s the bench's lag p99 went from 1.5 s to
 * 0.4 s); four per projection, 16 for a pool of 10 shared with the journal, made it worse (7.8 s).
 */
const SHARDS_AT_ONCE = 2;

/** Sweeps after this many quiet ones in a row come at pollMs still (rows of the last wake-up that were not visible yet). */
const QUIET_SWEEPS_AT_POLL = 3;

/** The wait before the next sweep after `quiet` quiet sweeps in a row: pollMs, then doubling up to idlePollMs. */
export function quietPollMs(pollMs: number, idlePollMs: number, quiet: number): number {
  if (quiet < QUIET_SWEEPS_AT_POLL) return pollMs;
  return Math.min(idlePollMs, pollMs * 2 ** Math.min(30, quiet - QUIET_SWEEPS_AT_POLL + 1));
}

function lockKey(name: string): number {
  let h = 0x5eed;
  for (const c of name) h = (Math.imul(h, 31) + c.charCodeAt(0)) | 0;
  return h;
}

export class Projector implements Projections {
  readonly #o: ProjectorOptions;
  readonly #projections: readonly Projection[];
  readonly #now: () => number;
  readonly #state = new Map<string, Map<number, ShardState>>();
  readonly #woken = new Map<string, Set<number>>();
  readonly #signal = new Map<string, () => void>();
  readonly #stats = new Map<string, { rows: number; failures: number; lastError?: string }>();
  readonly #loops: Promise<void>[] = [];
  /** Projections whose loop a wake-up will signal shortly (see #soon). */
  readonly #waking = new Set<string>();
  /** Per projection: the states its live batches folded (LIVE_MEMO_MAX). */
  readonly #liveMemos = new Map<string, StateMemo>();
  #stopped = true;

  constructor(options: ProjectorOptions) {
    this.#o = options;
    this.#projections = options.projections ?? PROJECTIONS;
    this.#now = options.now ?? Date.now;
    for (const p of this.#projections) {
      this.#state.set(p.name, new Map());
      this.#woken.set(p.name, new Set());
      this.#stats.set(p.name, { rows: 0, failures: 0 });
    }
  }

  get names(): readonly string[] {
    return this.#projections.map((p) => p.name);
  }

  #projection(name: string): Projection {
    const p = this.#projections.find((x) => x.name === name);
    if (!p) throw new Error(`no projection ${name} (there are ${this.names.join(', ')})`);
    return p;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    for (const p of this.#projections) this.#loops.push(this.#loop(p));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const wake of this.#signal.values()) wake();
    await Promise.all(this.#loops.splice(0));
  }

  /** A journal row of this kind was written on this shard: project it soon. */
  wake(kind: string, shard: number): void {
    const at = this.#now();
    for (const p of this.#projections) {
      if (p.kind !== kind) continue;
      const s = this.#shard(p.name, shard);
      s.pendingSince ??= at;
      this.#woken.get(p.name)!.add(shard);
      this.#soon(p.name);
    }
  }

  /**
   * Wakes a projection's loop `wakeDelayMs` after the first wake-up since it last ran: the
   * rows of that while are projected in one batch per shard, not one per row. Each batch is
   * a transaction of several statements; on the embedded node they queue with the commands'
   * own on its one connection, and one per journal row held the commands back.
   */
  #soon(name: string): void {
    const delay = this.#o.wakeDelayMs ?? 50;
    if (delay <= 0) { this.#signal.get(name)?.(); return; }
    if (this.#waking.has(name)) return;
    this.#waking.add(name);
    setTimeout(() => { this.#waking.delete(name); this.#signal.get(name)?.(); }, delay).unref();
  }

  #liveMemo(name: string): StateMemo {
    let memo = this.#liveMemos.get(name);
    if (!memo) { memo = stateMemo(LIVE_MEMO_MAX); this.#liveMemos.set(name, memo); }
    return memo;
  }

  #shard(name: string, shard: number): ShardState {
    const shards = this.#state.get(name)!;
    let s = shards.get(shard);
    if (!s) { s = { pendingSince: this.#now() }; shards.set(shard, s); }
    return s;
  }

  status(): ProjectionStatus[] {
    const now = this.#now();
    const owned = this.#o.owned();
    return this.#projections.map((p) => {
      const stats = this.#stats.get(p.name)!;
      const lag = Math.max(0, ...owned.map((shard) => {
        const since = this.#shard(p.name, shard).pendingSince;
        return since === undefined ? 0 : now - since;
      }));
      return {
        name: p.name,
        lagMs: lag,
        shards: owned.length,
        rowsProjected: stats.rows,
        failures: stats.failures,
        ...(stats.lastError ? { lastError: stats.lastError } : {}),
      };
    });
  }

  lagMs(...names: string[]): number {
    return Math.max(0, ...this.status().filter((s) => names.length === 0 || names.includes(s.name)).map((s) => s.lagMs));
  }

  async #loop(p: Projection): Promise<void> {
    const pollMs = this.#o.pollMs ?? 1_000;
    const idlePollMs = Math.max(pollMs, this.#o.idlePollMs ?? 30_000);
    let lastSweep = 0;
    /** Sweeps in a row that found nothing with no wake-up in between, and the owned shards last seen. */
    let quiet = 0;
    let lastOwned = '';
    while (!this.#stopped) {
      const owned = this.#o.owned();
      const woken = this.#woken.get(p.name)!;
      const ownedNow = owned.join();
      if (woken.size > 0 || ownedNow !== lastOwned) quiet = 0;
      lastOwned = ownedNow;
      const every = quietPollMs(pollMs, idlePollMs, quiet);
      const sweep = this.#now() - lastSweep >= every;
      if (sweep) lastSweep = this.#now();
      const asked = sweep ? owned : owned.filter((s) => woken.has(s));
      // Every wake is taken now: those of shards this node no longer owns are not its to project,
      // and one left behind would end the wait below at once, for ever (a loop with no work).
      woken.clear();
      let failed = false;
      let found = 0;
      let targets = asked;
      if (sweep && asked.length > 0) {
        // One statement says which shards have rows to project; only those are caught up.
        try {
          targets = await this.#waiting(p, asked);
        } catch (error) {
          targets = asked; // asked one by one, as before: their own failure is reported there
          this.#o.onError?.(error, `projection ${p.name}: which shards have rows`);
        }
      }
      await this.#eachGroup(targets, async (shards) => {
        try {
          const n = await this.#catchUp(p.name, shards, true, undefined, this.#liveMemo(p.name)); // (not `found += await`: it would read found before the wait)
          found += n;
        } catch (error) {
          failed = true; // the database is likely down: the others stop too; wait, then sweep again
          this.#failure(p.name, error, `projection ${p.name} shards ${shards.join(',')}`);
        }
      }, () => !this.#stopped && !failed);
      if (failed) lastSweep = 0;
      if (failed || found > 0 || (!sweep && targets.length > 0)) quiet = 0;
      else if (sweep) quiet++;
      if (this.#stopped) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, failed ? Math.min(pollMs, 500) : quietPollMs(pollMs, idlePollMs, quiet));
        function done() { clearTimeout(timer); resolve(); }
        this.#signal.set(p.name, done);
        if (woken.size > 0) this.#soon(p.name);
      });
    }
  }

  /**
   * The shards among `shards` with journal rows this projection can project now (the same
   * visibility and offsets a batch reads). The others are caught up as of now: their lag
   * ends, as a batch that found nothing would end it.
   */
  async #waiting(p: Projection, shards: readonly number[]): Promise<number[]> {
    const startedAt = this.#now();
    const rows = await this.#guarded(() => this.#o.orm.em.getConnection().execute(
      `select s.shard from unnest(array[${shards.map(() => '?').join(',')}]::int[]) s(shard)
       left join projection_offset o on o.projection = ? and o.shard = s.shard
       where exists (select 1 from journal j where j.kind = ? and j.shard = s.shard and j.tx < pg_snapshot_xmin(pg_current_snapshot())
         and (j.tx, j.persistence_key, j.sequence_nr) > (coalesce(o.tx, '0'::xid8), coalesce(o.persistence_key, ''), coalesce(o.sequence_nr, 0)))`,
      [...shards, p.name, p.kind]) as Promise<{ shard: number }[]>);
    const waiting = new Set(rows.map((r) => Number(r.shard)));
    for (const shard of shards) {
      if (waiting.has(shard)) continue;
      const s = this.#shard(p.name, shard);
      if (s.pendingSince !== undefined && s.pendingSince <= startedAt) s.pendingSince = undefined;
    }
    return shards.filter((shard) => waiting.has(shard));
  }

  /**
   * Runs `work` for each group of `shards` (shardGroups), the groups at once, while `goOn` says
   * so: each group is caught up by transactions of its own, mostly waiting on the database, and
   * the groups' shards are disjoint (a lock each), so one group's waits are filled by another's work.
   */
  async #eachGroup(shards: readonly number[], work: (group: readonly number[]) => Promise<void>, goOn: () => boolean = () => true): Promise<void> {
    await Promise.all(shardGroups(shards, this.#o.shardsAtOnce ?? SHARDS_AT_ONCE).map(async (group) => { if (goOn()) await work(group); }));
  }

  #failure(name: string, error: unknown, context: string): void {
    const stats = this.#stats.get(name)!;
    stats.failures++;
    stats.lastError = error instanceof Error ? error.message : String(error);
    this.#o.onError?.(error, context);
  }

  /** Projects one shard until no visible journal row is left; returns the rows projected. */
  catchUp(name: string, shard: number): Promise<number> {
    return this.#catchUp(name, [shard], false, undefined, this.#liveMemo(name));
  }

  /**
   * Projects `shards` until no visible journal row is left; returns the rows projected.
   * `fenced`: as their owner (offset writes carry its epochs). `memo`: a rebuild's (see Projection.apply).
   */
  async #catchUp(name: string, shards: readonly number[], fenced: boolean, perShard = this.#o.batchSize ?? 200, memo?: StateMemo): Promise<number> {
    const p = this.#projection(name);
    let total = 0;
    let left: readonly number[] = [...shards].sort((a, b) => a - b);
    while (left.length > 0) {
      const startedAt = this.#now();
      let done: Batch;
      try {
        done = await this.#guarded(() => this.#batch(p, left, perShard, fenced, memo));
      } catch (error) {
        if (!(error instanceof Refused)) throw error;
        // Shards another node holds now: the others of the group go on without them.
        this.#failure(name, error.cause, `projection ${name} shards ${error.shards.join(',')}`);
        left = left.filter((shard) => !error.shards.includes(shard));
        continue;
      }
      for (const n of done.rows.values()) total += n;
      this.#stats.get(name)!.rows += [...done.rows.values()].reduce((a, n) => a + n, 0);
      for (const shard of left) {
        if (done.full.includes(shard)) continue;
        const s = this.#shard(name, shard);
        if (s.pendingSince !== undefined && s.pendingSince <= startedAt) s.pendingSince = undefined;
      }
      left = done.full;
    }
    return total;
  }

  #guarded<T>(work: () => Promise<T>): Promise<T> {
    return this.#o.guard ? this.#o.guard.run(work) : work();
  }

  /**
   * One transaction over `shards`: takes their locks, reads up to `perShard` rows of each, writes
   * the views, then each shard's offset. Returns the rows projected by shard and the shards
   * whose read was full (more may wait).
   */
  async #batch(p: Projection, shards: readonly number[], perShard: number, fenced: boolean, memo?: StateMemo): Promise<Batch> {
    const fence = fenced ? this.#o.fence : undefined;
    const what = (shard: number) => `projection ${p.name} offset of shard ${shard}`;
    // A shard handed over since the loop read `owned`: its new owner projects it.
    const held = fence ? shards.filter((shard) => fence.epochOf(shard) !== undefined) : shards;
    if (held.length === 0) return { rows: new Map(), full: [] };
    const epochs = new Map(held.map((shard) => [shard, fence ? epochFor(fence, shard, what(shard)) : undefined]));
    const done = await inTransaction(this.#o.orm, async (sql) => {
      // Serialises batches of each (projection, shard): an old owner's, a new owner's, a rebuild's.
      // Taken in shard order, so two transactions wanting shards in common never wait on each other in a cycle.
      // (An advisory lock takes no transaction id, so a batch that finds nothing holds no one back.)
      await sql(`select count(pg_advisory_xact_lock(?, u.shard)) from unnest(array[${placeholders(held.length)}]::int[]) as u(shard)`,
        [lockKey(p.name), ...held]);
      const read = await readJournal(sql, p, held, perShard);
      if (read.length > 0) await p.apply(sql, read, memo);
      const last = new Map<number, JournalRow>();
      const rows = new Map<number, number>();
      for (const r of read) { rows.set(r.shard, (rows.get(r.shard) ?? 0) + 1); last.set(r.shard, r); }
      await writeOffsets(sql, p.name, [...last.values()], fence && epochs,
        (refused) => new Refused(refused, fence!.refused(refused[0]!, epochs.get(refused[0]!), what(refused[0]!))));
      return { rows, full: held.filter((shard) => rows.get(shard) === perShard) };
    });
    for (const [shard, n] of done.rows) if (n > 0) await this.#o.afterCommit?.(p.name, shard, n);
    return done;
  }

  /**
   * Empties a projection's tables and offsets in one transaction (waiting for batches in
   * flight), then projects every shard from the start of the journal. The node keeps
   * running: the owners' own batches interleave with these, serialised by the same locks.
   */
  async rebuild(name: string): Promise<{ rows: number; ms: number }> {
    const p = this.#projection(name);
    const started = performance.now();
    await inTransaction(this.#o.orm, async (sql) => {
      for (let shard = 0; shard < this.#o.totalShards; shard++) await sql('select pg_advisory_xact_lock(?, ?)', [lockKey(p.name), shard]);
      await sql(`truncate ${p.tables.join(', ')}`);
      await sql('delete from projection_offset where projection = ?', [p.name]);
    });
    const at = this.#now();
    for (const s of this.#state.get(name)!.values()) s.pendingSince ??= at;
    let rows = 0;
    const shards = Array.from({ length: this.#o.totalShards }, (_, shard) => shard);
    if (p.stage) {
      const per = Math.max(1, this.#o.rebuildShardsPerTransaction ?? shards.length);
      for (let i = 0; i < shards.length; i += per) rows += await this.#rebuildStaged(p, p.stage, shards.slice(i, i + per));
      return { rows, ms: Math.round(performance.now() - started) };
    }
    const batch = this.#o.rebuildBatchSize ?? 20_000;
    // A shard at a time in each of as many workers as a catch-up has groups. One memo per shard: a booking's rows are all in its shard.
    const queue = [...shards];
    const worker = async () => {
      for (let shard = queue.shift(); shard !== undefined; shard = queue.shift()) {
        const n = await this.#catchUp(name, [shard], false, batch, stateMemo(MEMO_MAX)); // (not `rows += await`: it would read rows before the wait)
        rows += n;
      }
    };
    await Promise.all(Array.from({ length: this.#o.shardsAtOnce ?? SHARDS_AT_ONCE }, worker));
    return { rows, ms: Math.round(performance.now() - started) };
  }

  /**
   * Rebuilds `shards` of a projection that stages, in one transaction: takes their locks, reads
   * each shard from its stored offset (the owners may have projected some since the rebuild
   * emptied the views) to its end in pages, adds every page to one Stage and writes it once
   * (flushing early only when it grows large), then the shards' offsets. Per-shard transactions
   * wrote the same (hour, cell) sums once per shard: ten times the rows a rebuild ends with, and
   * the upserts, their JSON and the garbage of batches kept alive were most of its time.
   * Each page is asked for before the one before it is folded, so the server reads while this
   * process folds. Not under the guard: its per-call timeout is for short statements, and a
   * rebuild that fails is the caller's to run again (its transaction leaves nothing behind).
   */
  async #rebuildStaged(p: Projection, stage: () => Stage, shards: readonly number[]): Promise<number> {
    const pageSize = this.#o.rebuildBatchSize ?? REBUILD_PAGE;
    const startedAt = this.#now();
    const done = await inTransaction(this.#o.orm, async (sql) => {
      await sql(`select count(pg_advisory_xact_lock(?, u.shard)) from unnest(array[${placeholders(shards.length)}]::int[]) as u(shard)`,
        [lockKey(p.name), ...shards]);
      const stored = await sql<{ shard: number; tx: string; persistence_key: string; sequence_nr: string | number }>(
        `select shard, tx::text as tx, persistence_key, sequence_nr from projection_offset where projection = ? and shard in (${placeholders(shards.length)})`,
        [p.name, ...shards]);
      const from = new Map<number, Position>(stored.map((o) => [Number(o.shard), { tx: o.tx, key: o.persistence_key, seq: Number(o.sequence_nr) }]));
      const staged = stage();
      const last = new Map<number, JournalRow>();
      const counts = new Map<number, number>();
      let memo: StateMemo = stateMemo(MEMO_MAX);
      let memoShard: number | undefined;
      for await (const { shard, rows } of pages(sql, p.kind, shards, (s) => from.get(s) ?? START, pageSize)) {
        if (rows.length === 0) continue;
        // One memo per shard: a booking's rows are all in its shard.
        if (shard !== memoShard) { memo = stateMemo(MEMO_MAX); memoShard = shard; }
        await staged.add(sql, rows, memo);
        last.set(shard, rows.at(-1)!);
        counts.set(shard, (counts.get(shard) ?? 0) + rows.length);
        if (staged.size >= REBUILD_FLUSH_AT) await staged.flush(sql);
      }
      await staged.flush(sql);
      await writeOffsets(sql, p.name, [...last.values()], undefined, () => new Error('offsets refused without a fence'));
      return counts;
    });
    // As a batch's commit: the shards are caught up as of when it started, and the hook hears of their rows.
    for (const shard of shards) {
      const s = this.#shard(p.name, shard);
      if (s.pendingSince !== undefined && s.pendingSince <= startedAt) s.pendingSince = undefined;
    }
    let total = 0;
    for (const [shard, n] of done) {
      total += n;
      await this.#o.afterCommit?.(p.name, shard, n);
    }
    this.#stats.get(p.name)!.rows += total;
    return total;
  }
}
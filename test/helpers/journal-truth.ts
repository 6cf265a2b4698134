// The views as a fold over the whole journal gives them, compared with what the
// projections wrote. Independent of batches, shards, offsets and faults: every entity's
// history is read in sequence order and folded from its initial state.

import pg from 'pg';
import { bookingView, initialBooking, type BookingState } from '../../actors/booking.ts';
import { applyDriver, driverView, initialDriver, type DriverEvent, type DriverState } from '../../actors/driver.ts';
import { applyVehicle, vehicleView, type VehicleEvent, type VehicleState } from '../../actors/vehicle.ts';
import { analyticsOf, bookingTransition, cellSums, foldBooking, INITIAL_VEHICLE } from '../../adapters/postgres/projections.ts';
import type { JournalRecord } from '../../runtime/entity-actor.ts';
import type { BookingEventView } from '../../actors/analytics.ts';

interface Row { persistence_key: string; sequence_nr: string; data: JournalRecord }

const canonical = (v: unknown) => JSON.stringify(v, (_k, x) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => a.localeCompare(b))) : x));

/** Differences between the views and the fold over the journal (empty: they agree). */
export async function journalTruthDiff(url: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<Row>('select persistence_key, sequence_nr, data from journal order by persistence_key, sequence_nr');
    const bookings = new Map<string, { seq: number; state: BookingState }>();
    const drivers = new Map<string, { seq: number; state: DriverState }>();
    const vehicles = new Map<string, { seq: number; state: VehicleState }>();
    const transitions: BookingEventView[] = [];
    for (const r of rows) {
      const kind = r.persistence_key.slice(0, r.persistence_key.indexOf(':'));
      const id = r.persistence_key.slice(kind.length + 1);
      const seq = Number(r.sequence_nr);
      const events = r.data.events ?? [];
      if (kind === 'booking') {
        const b = bookings.get(id) ?? { seq: 0, state: initialBooking(id) };
        const next = foldBooking(b.state, r.data);
        const t = bookingTransition(b.state, next, r.data);
        if (t) transitions.push(t);
        bookings.set(id, { seq: events.length > 0 ? seq : b.seq, state: next });
      } else if (kind === 'driver') {
        const d = drivers.get(id) ?? { seq: 0, state: initialDriver() };
        drivers.set(id, events.length > 0 ? { seq, state: (events as DriverEvent[]).reduce(applyDriver, d.state) } : d);
      } else if (kind === 'vehicle') {
        const v = vehicles.get(id) ?? { seq: 0, state: INITIAL_VEHICLE };
        vehicles.set(id, events.length > 0 ? { seq, state: (events as VehicleEvent[]).reduce(applyVehicle, v.state) } : v);
      }
    }
    const diff: string[] = [];
    const compare = async (table: string, expected: Map<string, { seq: number; data: unknown; status?: string }>) => {
      const got = new Map((await client.query<{ id: string; version: string; data: unknown; status?: string }>(`select * from ${table}`)).rows.map((r) => [r.id, r]));
      for (const [id, e] of expected) {
        const g = got.get(id);
        if (!g) { diff.push(`${table} ${id}: missing (journal at #${e.seq})`); continue; }
        if (Number(g.version) !== e.seq) diff.push(`${table} ${id}: version ${g.version}, journal #${e.seq}`);
        if (canonical(g.data) !== canonical(e.data)) diff.push(`${table} ${id}: ${canonical(g.data)} != ${canonical(e.data)}`);
        if (e.status !== undefined && g.status !== e.status) diff.push(`${table} ${id}: status ${g.status}, journal ${e.status}`);
      }
      for (const id of got.keys()) if (!expected.has(id)) diff.push(`${table} ${id}: not in the journal`);
    };
    await compare('booking_view', new Map([...bookings].filter(([, b]) => b.state.status !== 'none').map(([id, b]) => [id, { seq: b.seq, data: bookingView(b.state), status: b.state.status }])));
    await compare('driver_view', new Map([...drivers].filter(([, d]) => d.seq > 0).map(([id, d]) => [id, { seq: d.seq, data: driverView(id, d.state), status: d.state.status }])));
    await compare('vehicle_view', new Map([...vehicles].filter(([, v]) => v.seq > 0).map(([id, v]) => [id, { seq: v.seq, data: vehicleView(id, v.state) }])));

    const sums = analyticsOf(transitions);
    const { riders } = sums;
    const cells = new Map(cellSums(sums).map((c) => [`${c.hour}|${c.cell}`, c]));
    const activeDrivers = [...cells.values()].reduce((n, c) => n + c.drivers.size, 0);
    const gotCells = new Map((await client.query<Record<string, string | Date>>('select * from analytics_hour_cell')).rows
      .map((r) => [`${new Date(r.hour!).getTime()}|${r.cell}`, r]));
    for (const [k, c] of cells) {
      const g = gotCells.get(k);
      const want = { requests: c.i.requests, completed: c.i.completed, cancelled: c.i.cancelled, no_driver: c.i.noDriver, revenue: c.i.revenue, fare_count: c.i.fareCount, wait_count: c.i.waitCount };
      const have = g ? Object.fromEntries(Object.keys(want).map((f) => [f, Number(g[f])])) : undefined;
      if (canonical(have) !== canonical(want)) diff.push(`analytics_hour_cell ${k}: ${canonical(have)} != ${canonical(want)}`);
    }
    for (const k of gotCells.keys()) if (!cells.has(k)) diff.push(`analytics_hour_cell ${k}: not in the journal`);
    const driverHours = (await client.query<{ hour: Date; cell: string; driver_id: string }>('select * from analytics_driver_hour_cell')).rows;
    if (driverHours.length !== activeDrivers) diff.push(`analytics_driver_hour_cell: ${driverHours.length} rows, journal ${activeDrivers}`);
    const riderRows = (await client.query<{ rider_id: string; first_seen: Date; first_cell: string }>('select * from analytics_rider')).rows;
    if (riderRows.length !== riders.size) diff.push(`analytics_rider: ${riderRows.length} rows, journal ${riders.size}`);
    for (const r of riderRows) {
      const want = riders.get(r.rider_id);
      if (!want || want.hour !== new Date(r.first_seen).getTime() || want.cell !== r.first_cell) diff.push(`analytics_rider ${r.rider_id}: ${canonical(r)} != ${canonical(want)}`);
    }
    return diff;
  } finally {
    await client.end();
  }
}

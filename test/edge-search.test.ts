// Searches that cannot wake a region's worth of actors (issue 10 item 7): the nearby
// radius is capped at a city (SEARCH_MAX_RADIUS_KM, 400 beyond it), cells that never
// held a driver are answered without waking their actors, and a driver going online
// in a never-used cell is still found, by the nearby list and by dispatch. Live cell
// actors are counted, never timed. Also the cluster's PostgreSQL set of occupied
// cells: shared between nodes, negative answers cached briefly, writes retried, and
// lookups failing open.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { gridDisk, latLngToCell } from 'h3-js';
import { openOrm } from '../adapters/postgres/orm.ts';
import { PostgresOccupiedCells } from '../adapters/postgres/occupied-cells.ts';
import type { Guard } from '../adapters/resilience.ts';
import { startEdge, type EdgeNode, type WsClient } from './helpers/edge-client.ts';
import { eventually } from './helpers/node-process.ts';
import { freshDatabase } from './helpers/services.ts';

type Point = { lat: number; lng: number };

let edge: EdgeNode;
let rider: string;
let admin: string;
test.before(async () => {
  edge = await startEdge();
  rider = await edge.token('search-rider', 'rider');
  admin = await edge.token('search-admin', 'admin');
});
test.after.always(async () => { await edge?.stop(); });

const liveCells = () => edge.node.host.stats().activeByKind.cell ?? 0;
const nearby = (p: Point, radiusKm: number | string, token = rider) =>
  edge.http('GET', `/v1/drivers/nearby?lat=${p.lat}&lng=${p.lng}&radiusKm=${radiusKm}`, { token });

test.serial('radiusKm beyond the city-sized cap is 400 naming the field and the cap; up to the cap is answered', async (t) => {
  const res = await nearby({ lat: 52.37, lng: 4.9 }, 50);
  t.is(res.status, 400);
  t.is(res.body.error.code, 'invalid_request');
  const detail = res.body.error.details.find((d: { path: string }) => d.path === 'query.radiusKm');
  t.truthy(detail, JSON.stringify(res.body));
  t.regex(detail.message, /at most 10 km/);
  t.regex(res.body.error.message, /^query\.radiusKm: .*10 km/);
  t.is((await nearby({ lat: 52.37, lng: 4.9 }, 10.5)).status, 400);
  const ok = await nearby({ lat: 52.37, lng: 4.9 }, 10);
  t.is(ok.status, 200, JSON.stringify(ok.body));
  t.deepEqual(ok.body.drivers, []);
  // The documented contract says so too.
  const doc = await edge.http('GET', '/openapi.json');
  t.is(doc.status, 200);
  const param = doc.body.paths['/v1/drivers/nearby'].get.parameters.find((p: { name: string }) => p.name === 'radiusKm');
  t.is(param.schema.maximum, 10);
});

test.serial('twelve widest searches over an empty area wake no cell actors', async (t) => {
  // Twelve points 50 km apart in a line across the northern Atlantic coast: nobody has driven there.
  const points = Array.from({ length: 12 }, (_, i) => ({ lat: 62.0, lng: -7.0 + i * 1.0 }));
  // What the searches would wake if every reachable cell were asked: over a thousand actors.
  const reachable = new Set(points.flatMap((p) => gridDisk(latLngToCell(p.lat, p.lng, 7), 6)));
  t.true(reachable.size > 1_000, `${reachable.size} cells within reach`);
  const before = liveCells();
  for (const p of points) {
    const res = await nearby(p, 10);
    t.is(res.status, 200, JSON.stringify(res.body));
    t.deepEqual(res.body.drivers, []);
  }
  const grown = liveCells() - before;
  t.true(grown <= 2, `live cell actors grew by ${grown} (from ${before})`);
});

async function driverOnline(id: string, at: Point): Promise<WsClient> {
  const socket = await edge.socket(await edge.token(id, 'driver'));
  const ok = await socket.call({ type: 'online', vehicleType: 'economy' }, 'on');
  if (ok.type !== 'ack') throw new Error(JSON.stringify(ok));
  await move(socket, at);
  return socket;
}

let fixes = 0;
async function move(socket: WsClient, at: Point): Promise<void> {
  const ack = await socket.call({ type: 'location', lat: at.lat, lng: at.lng, heading: 0, speed: 5, at: new Date(Date.now() + fixes).toISOString() }, `fix-${++fixes}`);
  if (ack.type !== 'ack') throw new Error(JSON.stringify(ack));
}

/** Whether the driver is in the nearby list (by its id, which only admins see). */
const listed = async (p: Point, id: string) => {
  const res = await nearby(p, 5, admin);
  if (res.status !== 200) throw new Error(JSON.stringify(res.body));
  return (res.body.drivers as { driverId: string }[]).some((d) => d.driverId === id);
};

test.serial('a driver going online in a never-used cell is found by a search, and again after moving to another fresh cell', async (t) => {
  // Reykjavik: no search or driver of this suite came near it.
  const first = { lat: 64.1466, lng: -21.9426 };
  const id = `fresh-${randomUUID().slice(0, 6)}`;
  // Searched while empty: the area's cells are known empty (and stay asleep).
  t.false(await listed(first, id));
  const driver = await driverOnline(id, first);
  t.true(await eventually(() => listed(first, id)), 'found where it went online');

  // Ten kilometres east: another cell nobody ever used.
  const second = { lat: 64.1466, lng: -21.75 };
  t.not(latLngToCell(second.lat, second.lng, 7), latLngToCell(first.lat, first.lng, 7));
  t.false(await listed(second, id));
  await move(driver, second);
  t.true(await eventually(() => listed(second, id)), 'found after moving to a fresh cell');
  t.true(await eventually(async () => !(await listed(first, id))), 'and no longer where it was');

  // Dispatch searches the same way: a booking there is offered to this driver.
  const booked = await edge.http('POST', '/v1/bookings', {
    token: rider, body: { pickup: { lat: second.lat + 0.003, lng: second.lng }, dropoff: { lat: second.lat + 0.02, lng: second.lng }, vehicleType: 'economy' },
  });
  t.is(booked.status, 201, JSON.stringify(booked.body));
  const offer = await driver.next((m) => m.type === 'offer' && m.bookingId === booked.body.id);
  t.truthy(offer);
  await edge.http('POST', `/v1/bookings/${booked.body.id}/cancel`, { token: rider, body: {} });
  driver.close();
});

test.serial('searches around an occupied cell wake only occupied cells', async (t) => {
  const at = { lat: 60.1699, lng: 24.9384 }; // Helsinki
  const id = `busy-${randomUUID().slice(0, 6)}`;
  const driver = await driverOnline(id, at);
  t.true(await eventually(() => listed(at, id)));
  const before = liveCells();
  for (let i = 0; i < 12; i++) {
    const res = await nearby({ lat: at.lat + (i - 6) * 0.01, lng: at.lng }, 10);
    t.is(res.status, 200);
  }
  const grown = liveCells() - before;
  t.true(grown <= 2, `live cell actors grew by ${grown}`);
  driver.close();
});

/** A guard that fails while `down` is set, like the circuit of an unreachable PostgreSQL. */
function switchable(): Guard & { down: boolean } {
  const g = {
    down: false,
    state: () => (g.down ? 'open' : 'closed'),
    run: <T>(work: () => Promise<T>): Promise<T> => (g.down ? Promise.reject(new Error('PostgreSQL is unavailable')) : work()),
    hold: () => { g.down = true; return { release: () => { g.down = false; } }; },
  };
  return g;
}

test('cluster: occupied cells in PostgreSQL are shared between nodes, empty answers are cached briefly, and failures fail open', async (t) => {
  const db = await freshDatabase();
  const orm = await openOrm({ url: db.url, poolMax: 4 });
  try {
    let clock = 1_000_000;
    const errors: string[] = [];
    const guardA = switchable();
    const a = new PostgresOccupiedCells(orm, guardA, { absentTtlMs: 2_000, now: () => clock, onError: (_e, c) => errors.push(c) });
    const guardB = switchable();
    const b = new PostgresOccupiedCells(orm, guardB, { absentTtlMs: 2_000, now: () => clock });
    const [c1, c2, c3, c4] = gridDisk(latLngToCell(48.85, 2.35, 7), 1);

    t.deepEqual(await b.filter([c1!, c2!]), [], 'nothing is occupied yet');
    t.is(b.lookups, 1, 'one lookup for the ring');
    t.deepEqual(await b.filter([c1!, c2!]), []);
    t.is(b.lookups, 1, 'empty answers are cached');

    a.mark(c1!);
    t.deepEqual(await a.filter([c1!, c2!]), [c1], 'the marking node sees its cell at once');
    t.true(await eventually(async () => a.pending === 0, 60_000));
    t.deepEqual(await b.filter([c1!, c2!]), [], 'another node trusts its cached empty answer for up to absentTtlMs');
    clock += 2_000;
    t.deepEqual(await b.filter([c1!, c2!]), [c1], 'and sees the cell once that has passed');
    const lookups = b.lookups;
    clock += 60_000;
    t.deepEqual(await b.filter([c1!]), [c1]);
    t.is(b.lookups, lookups, 'occupied cells are cached for good (the set only grows)');

    // PostgreSQL down: lookups answer every cell (a search asks them; nothing is hidden) and marks wait.
    guardA.down = true;
    guardB.down = true;
    clock += 60_000;
    t.deepEqual(await b.filter([c2!, c3!]), [c2, c3], 'fail open');
    a.mark(c3!);
    t.is(a.pending, 1);
    t.true(await eventually(async () => errors.some((e) => /could not record/.test(e)), 60_000), 'the failed write is reported');
    t.is(a.pending, 1, 'and kept for a retry');
    guardA.down = false;
    guardB.down = false;
    t.true(await eventually(async () => a.pending === 0, 30_000), 'the mark is written once PostgreSQL is back');
    clock += 2_000;
    t.deepEqual(await b.filter([c2!, c3!, c4!]), [c3]);

    // A second mark of the same cell (a restarted cell actor) is one row still.
    a.mark(c3!);
    const c = new PostgresOccupiedCells(orm, switchable());
    c.mark(c3!);
    await c.close();
    await a.close();
    const rows = await orm.em.getConnection().execute('select count(*)::int as n from occupied_cell') as { n: number }[];
    t.is(rows[0]!.n, 2);
  } finally {
    await orm.close(true);
    await db.drop();
  }
});

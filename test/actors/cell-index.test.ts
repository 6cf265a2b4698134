// The cell's fast paths (grid index, bounded top-k, versioned in-place updates)
// keep every domain rule, and the ring search over indexed cells answers exactly
// what a brute-force scan answers (same ids, same order) at 100,000 and 1,000,000 drivers.

import test from 'ava';
import { cellToBoundary, latLngToCell } from 'h3-js';
import { CellIndex, StaleCellState } from '../../actors/cell-index.ts';
import { DEFAULT_CELL, driversOf, eligible, makeCellBehavior, supply, type Candidate, type CellState, type DriverCopy } from '../../actors/cell.ts';
import { inMaintenance } from '../../actors/vehicle.ts';
import { distanceKm, type Point } from '../../actors/geo.ts';
import { searchNearest } from '../../actors/nearest.ts';
import { idHash, TopK } from '../../actors/top-k.ts';

const RES = 7;
const CENTER = { lat: 40.73, lng: -73.99 };
const NOW = 1_800_000_000_000;
const cell = makeCellBehavior(DEFAULT_CELL);
const ID = latLngToCell(CENTER.lat, CENTER.lng, RES);
const ctx = (now = NOW) => ({ self: { kind: 'cell', id: ID }, now, commandId: 'x' });

function seeded(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

function copy(driverId: string, p: Point, extra: Partial<DriverCopy> = {}): DriverCopy {
  return { driverId, lat: p.lat, lng: p.lng, status: 'available', vehicleType: 'economy', rating: 5, acceptanceRate: 1, lastTripEndedAt: 0, maintenance: [], seenAt: NOW, ...extra };
}

function fill(drivers: readonly DriverCopy[], state = cell.initial(ID)): CellState {
  for (const d of drivers) state = cell.handle(state, { type: 'driver.upsert', driver: d }, ctx()).state;
  return state;
}

const nearest = (state: CellState, q: { point?: Point; k?: number; radiusKm?: number; vehicleType?: string } = {}, now = NOW) =>
  (cell.query!(state, { type: 'nearest', point: CENTER, k: 10, radiusKm: 3, ...q }, { self: { kind: 'cell', id: ID }, now }) as Candidate[]).map((c) => c.driverId);

const near = (dLat: number) => ({ lat: CENTER.lat + dLat, lng: CENTER.lng });

test('only available drivers are answered', (t) => {
  const s = fill((['available', 'offline', 'offered', 'assigned', 'on_trip'] as const).map((status, i) => copy(status, near(i * 1e-4), { status })));
  t.deepEqual(nearest(s), ['available']);
});

test('a driver silent beyond the TTL is not answered (at the TTL it still is)', (t) => {
  const s = fill([copy('fresh', near(0)), copy('edge', near(1e-4), { seenAt: NOW - DEFAULT_CELL.driverTtlMs }), copy('old', near(2e-4), { seenAt: NOW - DEFAULT_CELL.driverTtlMs - 1 })]);
  t.deepEqual(nearest(s), ['fresh', 'edge']);
  t.deepEqual((cell.query!(s, { type: 'drivers' }, { self: { kind: 'cell', id: ID }, now: NOW }) as DriverCopy[]).map((d) => d.driverId).sort(), ['edge', 'fresh']);
});

test('the vehicle type filters; no type answers all', (t) => {
  const s = fill([copy('e', near(0)), copy('x', near(1e-4), { vehicleType: 'xl' })]);
  t.deepEqual(nearest(s, { vehicleType: 'xl' }), ['x']);
  t.deepEqual(nearest(s), ['e', 'x']);
});

test('a driver in a maintenance window is skipped; the window ends at `to`', (t) => {
  const s = fill([copy('shop', near(0), { maintenance: [{ from: NOW - 1, to: NOW + 1 }] }), copy('ok', near(1e-4), { maintenance: [{ from: NOW - 10, to: NOW }] })]);
  t.deepEqual(nearest(s), ['ok']);
  t.deepEqual(nearest(s, {}, NOW + 1), ['shop', 'ok']);
});

test('the radius edge: a driver exactly at the radius is in, a hair beyond is out; ties go by driverId', (t) => {
  const p = { lat: CENTER.lat + 0.01, lng: CENTER.lng + 0.01 };
  const km = distanceKm(CENTER, p);
  const s = fill([copy('b', p), copy('a', p), copy('c', near(0.0001))]);
  t.deepEqual(nearest(s, { radiusKm: km }), ['c', 'a', 'b']);
  t.deepEqual(nearest(s, { radiusKm: km * (1 - Number.EPSILON) }), ['c']);
  t.deepEqual(nearest(s, { radiusKm: km, k: 2 }), ['c', 'a']);
});

test('an older upsert is ignored; an older remove is ignored; a newer remove removes', (t) => {
  let s = fill([copy('d', near(0), { seenAt: NOW + 10 })]);
  const stale = cell.handle(s, { type: 'driver.upsert', driver: copy('d', near(0.05), { seenAt: NOW + 5, status: 'offline' }) }, ctx());
  t.is(stale.state, s, 'unchanged');
  t.deepEqual(nearest(s, {}, NOW + 10), ['d']);
  t.is(cell.handle(s, { type: 'driver.remove', driverId: 'd', at: NOW + 9 }, ctx()).state, s);
  s = cell.handle(s, { type: 'driver.remove', driverId: 'd', at: NOW + 10 }, ctx()).state;
  t.deepEqual(driversOf(s), []);
});

test('a driver moving within the cell is found where it is now, not where it was', (t) => {
  let s = fill([copy('m', near(0))]);
  s = cell.handle(s, { type: 'driver.upsert', driver: copy('m', near(0.02), { seenAt: NOW + 1 }) }, ctx()).state;
  t.deepEqual(nearest(s, { radiusKm: 1 }, NOW + 1), []);
  t.deepEqual(nearest(s, { radiusKm: 3 }, NOW + 1), ['m']);
});

test('surge, supply and demand: silent drivers count in supply until swept, maintenance never', (t) => {
  let s = fill([copy('a', near(0)), copy('b', near(1e-4), { maintenance: [{ from: 0, to: NOW + 10 ** 9 }] }), copy('c', near(2e-4), { status: 'on_trip' })]);
  const surge = (now: number) => cell.query!(s, { type: 'surge' }, { self: { kind: 'cell', id: ID }, now }) as { surge: number; supply: number; demand: number };
  for (let i = 0; i < 4; i++) s = cell.handle(s, { type: 'demand', at: NOW + i }, ctx(NOW + i)).state;
  t.like(surge(NOW + 5), { supply: 1, demand: 4 });
  t.true(surge(NOW + 60_000).surge > 1, 'demand over supply raises surge');
  t.like(surge(NOW + DEFAULT_CELL.driverTtlMs + 10), { supply: 1, demand: 4 }, 'not swept yet');
  s = cell.handle(s, { type: 'demand', at: NOW + DEFAULT_CELL.driverTtlMs + 10 }, ctx(NOW + DEFAULT_CELL.driverTtlMs + 10)).state;
  t.like(surge(NOW + DEFAULT_CELL.driverTtlMs + 10), { supply: 0, demand: 5 }, 'swept by the settle a demand makes');
  t.deepEqual(driversOf(s), []);
});

test('supply counted from the index equals a count over every copy, through moves, status changes and maintenance', (t) => {
  const rand = seeded(23);
  const statuses = ['available', 'available', 'available', 'offline', 'offered', 'on_trip'] as const;
  const types = ['economy', 'comfort', 'xl'];
  let s = cell.initial(ID);
  const brute = (state: CellState, now: number) => driversOf(state).filter((d) => d.status === 'available' && !inMaintenance(d.maintenance, now)).length;
  for (let round = 0; round < 6; round++) {
    // Every round moves, retypes and re-statuses drivers: dead entries, appended ones, re-sorts.
    for (let i = 0; i < 400; i++) {
      const id = `d${Math.floor(rand() * 300)}`;
      const windowed = rand() < 0.1;
      const d = copy(id, { lat: CENTER.lat + (rand() - 0.5) * 0.02, lng: CENTER.lng + (rand() - 0.5) * 0.02 }, {
        status: statuses[Math.floor(rand() * statuses.length)]!, vehicleType: types[Math.floor(rand() * types.length)]!,
        maintenance: windowed ? [{ from: NOW - 1_000, to: NOW + Math.floor(rand() * 2_000) }] : [],
      });
      s = rand() < 0.05 ? cell.handle(s, { type: 'driver.remove', driverId: id, at: NOW + round }, ctx()).state : fill([d], s);
    }
    for (const now of [NOW, NOW + 500, NOW + 1_500, NOW + 3_000]) t.is(supply(s, now), brute(s, now), `round ${round} at +${now - NOW} ms`);
  }
  t.true(brute(s, NOW) > 0 && brute(s, NOW) < driversOf(s).length, 'the cell holds both counted and uncounted drivers');
});

test('in-place updates look pure: a dropped outcome rolls back, anything older fails loudly', (t) => {
  const s0 = fill([copy('a', near(0))]);
  const s1 = cell.handle(s0, { type: 'driver.upsert', driver: copy('b', near(1e-4)) }, ctx()).state;
  t.deepEqual(nearest(s1), ['a', 'b']);
  // The runtime dropped s1 (say the command was a redelivery): s0 shows what it held.
  t.deepEqual(nearest(s0), ['a']);
  const s1b = cell.handle(s0, { type: 'driver.upsert', driver: copy('c', near(2e-4)) }, ctx()).state;
  t.deepEqual(nearest(s1b), ['a', 'c']);
  t.throws(() => nearest(s1), { instanceOf: StaleCellState }, 'the dropped branch is gone');
  const s2 = cell.handle(s1b, { type: 'driver.remove', driverId: 'a', at: NOW }, ctx()).state;
  t.deepEqual(nearest(s2), ['c']);
  t.throws(() => nearest(s0), { instanceOf: StaleCellState }, 'two steps back is never handed back by the runtime');
  // A step that throws half-way leaves nothing behind.
  const index = s2.index;
  t.throws(() => index.step(s2.version, (i) => { i.set(copy('z', near(0))); throw new Error('bug'); }));
  t.deepEqual(nearest(s2), ['c']);
});

test('a query on the previous state while the next one awaits storage, then the next one: both show their own drivers', (t) => {
  // A read-only query answers from the last state the actor returned (s1) while the actor
  // awaits the journal for s2; then s2 is returned and the next message starts from it.
  const s1 = fill([copy('a', near(0)), copy('b', near(1e-4))]);
  const s2 = cell.handle(s1, { type: 'driver.remove', driverId: 'b', at: NOW }, ctx()).state;
  t.deepEqual(nearest(s1), ['a', 'b'], 'the query in between sees the state before the step');
  t.deepEqual(nearest(s2), ['a'], 'and the step is redone for the state after it');
  t.deepEqual(nearest(s1), ['a', 'b'], 'back and forth, as often as asked');
  const s3 = cell.handle(s2, { type: 'driver.upsert', driver: copy('c', near(2e-4)) }, ctx()).state;
  t.deepEqual(nearest(s3), ['a', 'c']);
  t.deepEqual(nearest(s2), ['a']);
  t.throws(() => nearest(s1), { instanceOf: StaleCellState }, 'two steps back is never handed back by the runtime');
});

/** Brute force over the drivers in 0.01-degree strips of latitude around the point (a plain scan, just not of the whole city). */
function oracleOf(drivers: readonly DriverCopy[]) {
  const strips = new Map<number, DriverCopy[]>();
  for (const d of drivers) {
    const key = Math.floor(d.lat * 100);
    const strip = strips.get(key);
    if (strip) strip.push(d); else strips.set(key, [d]);
  }
  return (point: Point, k: number, radiusKm: number, vehicleType: string): string[] => {
    const hits: { id: string; km: number }[] = [];
    const reach = Math.ceil(radiusKm / 1.1) + 1;
    for (let key = Math.floor(point.lat * 100) - reach; key <= Math.floor(point.lat * 100) + reach; key++) {
      for (const d of strips.get(key) ?? []) {
        if (d.status !== 'available' || d.vehicleType !== vehicleType) continue;
        const km = distanceKm(point, d);
        if (km <= radiusKm) hits.push({ id: d.driverId, km });
      }
    }
    return hits.sort((a, b) => a.km - b.km || (a.id < b.id ? -1 : 1)).slice(0, k).map((h) => h.id);
  };
}

function city(n: number, seed: number): DriverCopy[] {
  const rand = seeded(seed);
  const types = ['economy', 'economy', 'comfort'];
  const drivers = Array.from({ length: n }, (_, i) => copy(`d${i}`, { lat: CENTER.lat + (rand() - 0.5) * 0.27, lng: CENTER.lng + (rand() - 0.5) * 0.36 },
    { vehicleType: types[i % 3]!, status: rand() < 0.8 ? 'available' : 'on_trip' }));
  // Ties: drivers sharing a spot, on a cell's vertex (a boundary) and at the centre.
  const vertex = cellToBoundary(ID)[0]!;
  for (let i = 0; i < 5; i++) drivers.push(copy(`tie${4 - i}`, { lat: vertex[0], lng: vertex[1] }), copy(`mid${i}`, CENTER));
  return drivers;
}

/** Query points: random, at cell vertices and edge midpoints, and off the populated area. */
function points(rand: () => number, random: number): Point[] {
  const home = cellToBoundary(ID).map(([lat, lng]) => ({ lat, lng }));
  const mids = home.map((p, i) => { const q = home[(i + 1) % home.length]!; return { lat: (p.lat + q.lat) / 2, lng: (p.lng + q.lng) / 2 }; });
  return [CENTER, ...home, ...mids, { lat: CENTER.lat + 0.16, lng: CENTER.lng + 0.2 },
    ...Array.from({ length: random }, () => ({ lat: CENTER.lat + (rand() - 0.5) * 0.27, lng: CENTER.lng + (rand() - 0.5) * 0.36 }))];
}

async function compare(t: import('ava').ExecutionContext, drivers: readonly DriverCopy[], ask: (cell: string, q: { point: Point; k: number; radiusKm: number; vehicleType: string }) => readonly Candidate[], seed: number, random: number) {
  const rand = seeded(seed);
  const oracle = oracleOf(drivers);
  let crossed = 0;
  for (const point of points(rand, random)) {
    for (const [k, radiusKm, vehicleType] of [[10, 3, 'economy'], [3, 0.2, 'comfort'], [25, 1, 'economy']] as const) {
      const q = { point, k, radiusKm, vehicleType };
      const want = oracle(point, k, radiusKm, vehicleType);
      const found = await searchNearest(q, RES, (c) => ask(c, q));
      t.deepEqual(found.map((c) => c.driverId), want, `k=${k} r=${radiusKm} at ${point.lat},${point.lng}`);
      if (found.some((c) => latLngToCell(c.lat, c.lng, RES) !== latLngToCell(point.lat, point.lng, RES))) crossed++;
      // The radius edge: exactly at the k-th distance keeps it, a hair less drops it.
      const kth = found.at(-1);
      if (kth) for (const r of [kth.distanceKm, kth.distanceKm * (1 - Number.EPSILON)]) {
        const edge = await searchNearest({ ...q, radiusKm: r }, RES, (c) => ask(c, { ...q, radiusKm: r }));
        t.deepEqual(edge.map((c) => c.driverId), oracle(point, k, r, vehicleType), `edge r=${r}`);
      }
    }
  }
  t.true(crossed > 10, `answers crossed cell boundaries in ${crossed} queries`);
}

test('100,000 drivers through the cell reducer: the search equals brute force', async (t) => {
  const drivers = city(100_000, 7);
  const cells = new Map<string, CellState>();
  for (const d of drivers) {
    const id = latLngToCell(d.lat, d.lng, RES);
    cells.set(id, cell.handle(cells.get(id) ?? cell.initial(id), { type: 'driver.upsert', driver: d }, { self: { kind: 'cell', id }, now: NOW, commandId: 'x' }).state);
  }
  await compare(t, drivers, (id, q) => cell.query!(cells.get(id) ?? cell.initial(id), { type: 'nearest', ...q }, { self: { kind: 'cell', id }, now: NOW }) as Candidate[], 1, 20);
});

test('1,000,000 drivers in indexes built directly: the search equals brute force', async (t) => {
  const drivers = city(1_000_000, 9);
  const indexes = new Map<string, CellIndex>();
  const byCell = new Map<string, DriverCopy[]>();
  for (const d of drivers) {
    const id = latLngToCell(d.lat, d.lng, RES);
    const list = byCell.get(id);
    if (list) list.push(d); else byCell.set(id, [d]);
  }
  for (const [id, list] of byCell) {
    const index = new CellIndex();
    index.step(0, (i) => { for (const d of list) i.set(d); });
    indexes.set(id, index);
  }
  await compare(t, drivers, (id, q) => {
    const best = new TopK<DriverCopy>(q.k);
    indexes.get(id)?.nearest(q.point, q.radiusKm, (d) => d.status === 'available' && d.vehicleType === q.vehicleType, best);
    return best.sorted().map(({ km, driver }) => ({ ...driver, distanceKm: km }));
  }, 2, 8);
});

test('drivers moving, leaving and coming back between searches (within buckets, across them, past the sorted part): every search equals brute force',
  async (t) => {
  // The index keeps entries sorted by bucket and appends moved ones until it sorts again; a
  // stale entry, a driver left in its old bucket or a lost one would show here.
  const rand = seeded(5);
  const spot = () => ({ lat: CENTER.lat + (rand() - 0.5) * 0.02, lng: CENTER.lng + (rand() - 0.5) * 0.026 });
  const live = new Map<string, DriverCopy>();
  for (let i = 0; i < 600; i++) live.set(`m${i}`, copy(`m${i}`, spot(), { vehicleType: i % 4 === 0 ? 'comfort' : 'economy' }));
  let s = fill([...live.values()]);
  const oracle = (point: Point, k: number, radiusKm: number, vehicleType: string) => [...live.values()]
    .filter((d) => d.vehicleType === vehicleType && d.status === 'available')
    .map((d) => ({ id: d.driverId, km: distanceKm(point, d) }))
    .filter((d) => d.km <= radiusKm)
    .sort((a, b) => a.km - b.km || (a.id < b.id ? -1 : 1))
    .slice(0, k).map((d) => d.id);
  let seen = NOW;
  for (let round = 0; round < 60; round++) {
    for (let j = 0; j < 25; j++) {
      const id = `m${Math.floor(rand() * 800)}`;
      const was = live.get(id);
      const pick = rand();
      seen++;
      if (was && pick < 0.1) {
        s = cell.handle(s, { type: 'driver.remove', driverId: id, at: seen }, ctx()).state;
        live.delete(id);
        continue;
      }
      // A few metres (same bucket, mostly), a block or two, or anywhere in the area; now and then busy.
      const to = !was || pick > 0.8 ? spot() : pick > 0.5
        ? { lat: was.lat + (rand() - 0.5) * 0.003, lng: was.lng + (rand() - 0.5) * 0.003 }
        : { lat: was.lat + (rand() - 0.5) * 1e-4, lng: was.lng + (rand() - 0.5) * 1e-4 };
      const moved = copy(id, to, { seenAt: seen, vehicleType: was?.vehicleType ?? 'economy', status: rand() < 0.1 ? 'on_trip' : 'available' });
      s = cell.handle(s, { type: 'driver.upsert', driver: moved }, ctx()).state;
      live.set(id, moved);
    }
    for (const [k, radiusKm, vehicleType] of [[10, 3, 'economy'], [3, 0.3, 'comfort'], [50, 1, 'economy']] as const) {
      const point = spot();
      t.deepEqual(nearest(s, { point, k, radiusKm, vehicleType }, seen), oracle(point, k, radiusKm, vehicleType), `round ${round} k=${k}`);
    }
    t.is(driversOf(s).length, live.size);
  }
});

test('the rules a search reads from the entries (freshness, and whether a copy needs reading) follow each copy, in place or moved', (t) => {
  // Most drivers are answered on their entries alone (tag, box, when they were seen); only those
  // with maintenance windows have their copies read. A copy changed in place (same bucket) or
  // moved must leave its entry saying what the new copy says: the search equals the rules. A
  // driver whose vehicle type or availability changes in place must change lanes too (a search
  // of one type reads its type's lane only).
  const rand = seeded(11);
  const ttl = DEFAULT_CELL.driverTtlMs;
  const spot = () => ({ lat: CENTER.lat + (rand() - 0.5) * 0.01, lng: CENTER.lng + (rand() - 0.5) * 0.013 });
  const windows = () => {
    const pick = rand();
    return pick < 0.6 ? [] : pick < 0.8 ? [{ from: 0, to: NOW * 2 }] : [{ from: 0, to: NOW - 1 }];
  };
  const live = new Map<string, DriverCopy>();
  let seen = NOW - 2 * ttl;
  for (let i = 0; i < 400; i++) {
    // First copies seen over two TTLs: at the end a good share are silent beyond it.
    live.set(`r${i}`, copy(`r${i}`, spot(), { seenAt: seen + Math.floor(rand() * 2 * ttl), maintenance: windows() }));
  }
  let s = fill([...live.values()]);
  seen = Math.max(...[...live.values()].map((d) => d.seenAt));
  for (let round = 0; round < 40; round++) {
    for (let j = 0; j < 20; j++) {
      const id = `r${Math.floor(rand() * 400)}`;
      const was = live.get(id)!;
      seen += 1 + Math.floor(rand() * 2_000);
      // Mostly a few metres (the same bucket: updated in place), sometimes a block.
      const step = rand() < 0.8 ? 2e-5 : 2e-3;
      const moved = copy(id, { lat: was.lat + (rand() - 0.5) * step, lng: was.lng + (rand() - 0.5) * step }, {
        seenAt: seen, maintenance: windows(), status: rand() < 0.15 ? 'on_trip' : 'available', vehicleType: rand() < 0.2 ? 'comfort' : 'economy',
      });
      s = cell.handle(s, { type: 'driver.upsert', driver: moved }, ctx(seen)).state;
      live.set(id, moved);
    }
    const now = seen + Math.floor(rand() * ttl);
    for (const vehicleType of ['economy', 'comfort', undefined]) {
      const point = spot();
      const expected = [...live.values()]
        .filter((d) => eligible(d, vehicleType, now, DEFAULT_CELL))
        .map((d) => ({ id: d.driverId, km: distanceKm(point, d) }))
        .filter((d) => d.km <= 3)
        .sort((a, b) => a.km - b.km || (a.id < b.id ? -1 : 1))
        .slice(0, 25).map((d) => d.id);
      t.deepEqual(nearest(s, { point, k: 25, radiusKm: 3, vehicleType }, now), expected, `round ${round} ${vehicleType ?? 'any type'}`);
    }
  }
});

test('one top-k across cells: a driver offered twice (in two cells while it crosses) is held once, at its newest copy', (t) => {
  const best = new TopK<DriverCopy>(3);
  best.offer(0.5, copy('x', near(0), { seenAt: NOW }));
  best.offer(0.7, copy('y', near(0)));
  best.offer(0.2, copy('x', near(0.001), { seenAt: NOW + 1 }));
  best.offer(0.1, copy('x', near(0.002), { seenAt: NOW - 1 }));
  best.offer(0.9, copy('z', near(0)));
  best.offer(0.95, copy('w', near(0)));
  t.deepEqual(best.sorted().map((e) => [e.driver.driverId, e.km, e.driver.seenAt]), [['x', 0.2, NOW + 1], ['y', 0.7, NOW], ['z', 0.9, NOW]]);
  // Its newer copy farther than the k-th still replaces the older one held.
  best.offer(5, copy('y', near(0.04), { seenAt: NOW + 2 }));
  t.deepEqual(best.sorted().map((e) => e.driver.driverId), ['x', 'z', 'y']);
  t.is(best.bound, 5);
});

test('one top-k: an offer it does not admit would change nothing (what lets a search skip reading that copy)', (t) => {
  const rand = seeded(5);
  let refused = 0;
  for (let round = 0; round < 200; round++) {
    const best = new TopK<DriverCopy>(1 + Math.floor(rand() * 5));
    for (let i = 0; i < 30; i++) {
      const d = copy(`d${Math.floor(rand() * 12)}`, near(0), { seenAt: NOW + Math.floor(rand() * 3) });
      const km = Math.round(rand() * 20) / 10;
      const before = JSON.stringify(best.sorted().map((e) => [e.km, e.driver.driverId, e.driver.seenAt]));
      const admitted = best.admits(km, idHash(d.driverId));
      best.offer(km, d);
      if (admitted) continue;
      refused++;
      t.is(JSON.stringify(best.sorted().map((e) => [e.km, e.driver.driverId, e.driver.seenAt])), before, `${d.driverId} at ${km}`);
    }
  }
  t.true(refused > 1000, `offers refused: ${refused}`);
});

test('one top-k: two drivers whose id hashes collide are both held (a hash only narrows which ids are compared)', (t) => {
  // The top-k compares held drivers by a 32-bit hash of their ids, then by the ids: these two
  // differ but hash alike, and neither may be taken for the other's older copy.
  const [a, b] = ['driver-2029599', 'driver-2632382'];
  t.is(idHash(a), idHash(b));
  const best = new TopK<DriverCopy>(3);
  best.offer(0.3, copy(a, near(0)));
  best.offer(0.2, copy(b, near(0.001), { seenAt: NOW + 1 }));
  best.offer(0.9, copy('c', near(0.002)));
  t.deepEqual(best.sorted().map((e) => e.driver.driverId), [b, a, 'c']);
});

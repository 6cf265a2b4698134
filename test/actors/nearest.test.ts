// The ring search's bounds, pure (no I/O): at most maxCells cells asked, whole
// rings only; cells the occupied filter leaves out are never asked, and leaving
// out only cells without drivers changes no answer. Also the cell's
// `cell.occupied` publication and the dispatch service's use of both bounds.

import test from 'ava';
import { cellToBoundary, cellToLatLng, gridDisk, latLngToCell } from 'h3-js';
import type { ServicePorts } from '../../actors/behavior.ts';
import { DEFAULT_CELL, driverOf, makeCellBehavior, occupiedCellOf, type Candidate, type CellState, type DriverCopy } from '../../actors/cell.ts';
import { distanceKm, type Point } from '../../actors/geo.ts';
import { nearestService } from '../../actors/index.ts';
import {
  cellLowerBoundKm, geometryStats, originAt, PREPARED_KM, prepareOrigins, ring, searchFound, searchNearest, squareStats, surelyIn, withOccupiedCells, type SearchStats,
} from '../../actors/nearest.ts';
import { TopK } from '../../actors/top-k.ts';

const RES = 7;
const CENTER = { lat: 52.37, lng: 4.9 };
const NOW = 1_800_000_000_000;
const cellBehavior = makeCellBehavior(DEFAULT_CELL);

function seeded(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

function copy(driverId: string, p: Point): DriverCopy {
  return { driverId, lat: p.lat, lng: p.lng, status: 'available', vehicleType: 'economy', rating: 5, acceptanceRate: 1, lastTripEndedAt: 0, maintenance: [], seenAt: NOW };
}

/** Cells as the actors hold them (through the cell reducer), an ask that counts, and the cells that were marked. */
function world(drivers: readonly DriverCopy[]) {
  const cells = new Map<string, CellState>();
  const marked = new Set<string>();
  for (const d of drivers) {
    const id = latLngToCell(d.lat, d.lng, RES);
    const out = cellBehavior.handle(cells.get(id) ?? cellBehavior.initial(id), { type: 'driver.upsert', driver: d }, { self: { kind: 'cell', id }, now: NOW, commandId: 'x' });
    for (const e of out.effects) if (e.type === 'publish') { const c = occupiedCellOf(e.topic, e.event); if (c) marked.add(c); }
    cells.set(id, out.state);
  }
  const asked: string[] = [];
  const ask = (q: { point: Point; k: number; radiusKm: number }) => async (cell: string) => {
    asked.push(cell);
    return cellBehavior.query!(cells.get(cell) ?? cellBehavior.initial(cell), { type: 'nearest', ...q }, { self: { kind: 'cell', id: cell }, now: NOW }) as Candidate[];
  };
  return { cells, marked, asked, ask };
}

const oracle = (drivers: readonly DriverCopy[], point: Point, k: number, radiusKm: number, within: (d: DriverCopy) => boolean = () => true) => drivers
  .filter(within)
  .map((d) => ({ id: d.driverId, km: distanceKm(point, d) }))
  .filter((d) => d.km <= radiusKm)
  .sort((a, b) => a.km - b.km || (a.id < b.id ? -1 : 1))
  .slice(0, k)
  .map((d) => d.id);

test('a cell publishes cell.occupied once, on the first driver it holds', (t) => {
  const id = latLngToCell(CENTER.lat, CENTER.lng, RES);
  const ctx = { self: { kind: 'cell', id }, now: NOW, commandId: 'x' };
  const first = cellBehavior.handle(cellBehavior.initial(id), { type: 'driver.upsert', driver: copy('a', CENTER) }, ctx);
  t.deepEqual(first.effects, [{ type: 'publish', topic: 'cell', event: { type: 'cell.occupied', cell: id } }]);
  t.is(occupiedCellOf('cell', first.effects[0]!.type === 'publish' ? first.effects[0]!.event : undefined), id);
  const second = cellBehavior.handle(first.state, { type: 'driver.upsert', driver: copy('b', CENTER) }, ctx);
  t.deepEqual(second.effects, [], 'marked once per incarnation');
  const gone = cellBehavior.handle(second.state, { type: 'driver.remove', driverId: 'a', at: NOW }, ctx);
  t.deepEqual(cellBehavior.handle(gone.state, { type: 'driver.upsert', driver: copy('a', CENTER) }, ctx).effects, [], 'a driver coming back marks nothing');
  t.is(occupiedCellOf('booking', { type: 'cell.occupied', cell: id }), undefined, 'other topics are not marks');
  t.is(occupiedCellOf('cell', { type: 'something.else' }), undefined);
});

test('maxCells: the search asks at most maxCells cells, whole rings only, and says it stopped short', async (t) => {
  // A driver in every cell of a wide disk, so nothing ends the search early but the bound.
  const origin = latLngToCell(CENTER.lat, CENTER.lng, RES);
  const drivers = gridDisk(origin, 12).map((cell, i) => {
    const [lat, lng] = cellToLatLng(cell);
    return copy(`d${i}`, { lat, lng });
  });
  const w = world(drivers);
  // k larger than the drivers: only the radius (or the bound) ends the search.
  const q = { point: CENTER, k: 10_000, radiusKm: 30 };
  for (const maxCells of [1, 6, 7, 19, 20, 60, 100]) {
    w.asked.length = 0;
    const stats: SearchStats = { rings: 0, cellsAsked: 0 };
    const found = await searchNearest(q, RES, w.ask(q), stats, { maxCells });
    t.true(w.asked.length <= maxCells, `maxCells=${maxCells}: asked ${w.asked.length}`);
    t.is(stats.cellsAsked, w.asked.length);
    t.true(stats.truncated, `maxCells=${maxCells}: the radius was not covered`);
    // Whole rings: exactly the cells of the first stats.rings rings that reach within the radius.
    const rings = Array.from({ length: stats.rings }, (_, r) => ring(origin, r)).flat().filter((c) => cellLowerBoundKm(CENTER, c) <= q.radiusKm);
    t.deepEqual([...w.asked].sort(), rings.sort(), `maxCells=${maxCells}: whole rings`);
    t.true(stats.rings >= 1, 'the home cell is always asked');
    // What it found is exact for the rings it covered.
    const covered = new Set(rings);
    t.deepEqual(found.map((c) => c.driverId), oracle(drivers, CENTER, q.k, q.radiusKm, (d) => covered.has(latLngToCell(d.lat, d.lng, RES))));
  }
  w.asked.length = 0;
  const stats: SearchStats = { rings: 0, cellsAsked: 0 };
  await searchNearest({ ...q, radiusKm: 5 }, RES, w.ask({ ...q, radiusKm: 5 }), stats, { maxCells: 200 });
  t.falsy(stats.truncated, 'a search within the bound is not truncated');
});

test('the occupied filter: cells without drivers are never asked, and no answer changes (5,000 drivers, brute-force oracle)', async (t) => {
  const rand = seeded(11);
  // Drivers in three clusters with empty land between them.
  const hubs = [CENTER, { lat: CENTER.lat + 0.08, lng: CENTER.lng + 0.12 }, { lat: CENTER.lat - 0.06, lng: CENTER.lng - 0.1 }];
  const drivers = Array.from({ length: 5_000 }, (_, i) => {
    const hub = hubs[i % hubs.length]!;
    return copy(`d${i}`, { lat: hub.lat + (rand() - 0.5) * 0.03, lng: hub.lng + (rand() - 0.5) * 0.04 });
  });
  const w = world(drivers);
  t.deepEqual([...w.marked].sort(), [...w.cells.keys()].sort(), 'every cell holding a driver marked itself');
  let lookups = 0;
  const occupied = (cells: readonly string[]) => { lookups++; return cells.filter((c) => w.marked.has(c)); };
  const points = [...hubs, { lat: CENTER.lat + 0.04, lng: CENTER.lng + 0.06 }, ...Array.from({ length: 20 }, () => ({ lat: CENTER.lat + (rand() - 0.5) * 0.2, lng: CENTER.lng + (rand() - 0.5) * 0.3 }))];
  let skipped = 0;
  for (const point of points) {
    for (const [k, radiusKm] of [[10, 3], [5, 10], [50, 10]] as const) {
      const q = { point, k, radiusKm };
      w.asked.length = 0;
      const plainStats: SearchStats = { rings: 0, cellsAsked: 0 };
      const plain = await searchNearest(q, RES, w.ask(q), plainStats);
      w.asked.length = 0;
      lookups = 0;
      const stats: SearchStats = { rings: 0, cellsAsked: 0 };
      const filtered = await searchNearest(q, RES, w.ask(q), stats, { occupied });
      t.deepEqual(filtered.map((c) => c.driverId), oracle(drivers, point, k, radiusKm), `k=${k} r=${radiusKm}`);
      t.deepEqual(filtered.map((c) => c.driverId), plain.map((c) => c.driverId));
      t.true(w.asked.every((c) => w.marked.has(c)), 'only occupied cells are asked');
      t.is(lookups, stats.rings, 'one lookup per ring');
      t.is(stats.cellsAsked + (stats.cellsSkipped ?? 0), plainStats.cellsAsked, 'every reachable cell is asked or skipped');
      skipped += stats.cellsSkipped ?? 0;
    }
  }
  t.true(skipped > 1_000, `empty cells skipped: ${skipped}`);
});

test('an empty area: no cell asked however wide the radius, one lookup per ring', async (t) => {
  const w = world([]);
  let lookups = 0;
  const stats: SearchStats = { rings: 0, cellsAsked: 0 };
  const found = await searchNearest({ point: CENTER, k: 10, radiusKm: 50 }, RES, w.ask({ point: CENTER, k: 10, radiusKm: 50 }), stats, {
    occupied: () => { lookups++; return []; }, maxCells: 200,
  });
  t.deepEqual(found, []);
  t.is(w.asked.length, 0);
  t.is(stats.cellsAsked, 0);
  t.falsy(stats.truncated, 'skipped cells do not count against maxCells');
  t.true(stats.rings > 20, `covered ${stats.rings} rings`);
  t.is(lookups, stats.rings);
});

test('a filter answering cells outside the ring (or twice) cannot make the search ask them', async (t) => {
  const drivers = [copy('near', { lat: CENTER.lat + 0.001, lng: CENTER.lng })];
  const w = world(drivers);
  const stranger = latLngToCell(10, 10, RES);
  const q = { point: CENTER, k: 1, radiusKm: 3 };
  const found = await searchNearest(q, RES, w.ask(q), undefined, { occupied: (cells) => [stranger, ...cells, ...cells] });
  t.deepEqual(found.map((c) => c.driverId), ['near']);
  t.false(w.asked.includes(stranger));
  t.is(new Set(w.asked).size, w.asked.length, 'no cell asked twice');
});

test('sparse occupancy: maxCells counts cells asked, so a wide search over a few occupied cells is covered whole', async (t) => {
  const drivers = [copy('a', { lat: CENTER.lat + 0.05, lng: CENTER.lng }), copy('b', { lat: CENTER.lat - 0.07, lng: CENTER.lng + 0.05 })];
  const w = world(drivers);
  const q = { point: CENTER, k: 10, radiusKm: 10 };
  const stats: SearchStats = { rings: 0, cellsAsked: 0 };
  const found = await searchNearest(q, RES, w.ask(q), stats, { maxCells: 3, occupied: (cells) => cells.filter((c) => w.marked.has(c)) });
  t.deepEqual(found.map((c) => c.driverId).sort(), oracle(drivers, CENTER, 10, 10).sort());
  t.is(stats.cellsAsked, 2);
  t.falsy(stats.truncated);
});

test('the dispatch search (nearestService) honours maxCells and the occupied cells the node provides', async (t) => {
  const here = copy('here', { lat: CENTER.lat + 0.002, lng: CENTER.lng });
  const w = world([here]);
  const ports = (asked: string[]): ServicePorts => ({
    now: NOW, requester: { kind: 'booking', id: 'b1' },
    ask: async <A>(to: { kind: string; id: string }, query: unknown) => {
      asked.push(to.id);
      return cellBehavior.query!(w.cells.get(to.id) ?? cellBehavior.initial(to.id), query as never, { self: to, now: NOW }) as A;
    },
  });
  const request = { search: 1, point: CENTER, radiusKm: 12, k: 10, vehicleType: 'economy' };

  const unfiltered: string[] = [];
  const plain = await nearestService(RES, { maxCells: 50 })(request, ports(unfiltered)) as { drivers: Candidate[] };
  t.deepEqual(plain.drivers.map((d) => d.driverId), ['here']);
  t.true(unfiltered.length <= 50 && unfiltered.length > 1, `without occupied cells: ${unfiltered.length} cells asked, at most 50`);

  const filtered: string[] = [];
  const services = withOccupiedCells({ nearest: nearestService(RES, { maxCells: 50 }) }, (cells) => cells.filter((c) => w.marked.has(c)));
  const answer = await services.nearest!(request, ports(filtered)) as { type: string; search: number; drivers: Candidate[] };
  t.is(answer.type, 'candidates');
  t.is(answer.search, 1);
  t.deepEqual(answer.drivers.map((d) => d.driverId), ['here']);
  t.deepEqual(filtered, [latLngToCell(here.lat, here.lng, RES)], 'only the occupied cell is asked');
});

test('cells at hand offer into the search\'s one top-k: the same answers and rings as asking each cell, and no more cells (5,000 drivers, brute force)',
  async (t) => {
  const rand = seeded(21);
  const drivers = Array.from({ length: 5_000 }, (_, i) => copy(`d${i}`, { lat: CENTER.lat + (rand() - 0.5) * 0.2, lng: CENTER.lng + (rand() - 0.5) * 0.3 }));
  const w = world(drivers);
  const occupied = (cells: readonly string[]) => cells.filter((c) => w.marked.has(c));
  let offered = 0;
  let spared = 0;
  // Half the cells are at hand (offer), the rest must be asked: both kinds in one search.
  const atHand = (cell: string) => cell.charCodeAt(cell.length - 8) % 2 !== 0;
  const offer = (cell: string, q: { point: Point; radiusKm: number; vehicleType?: string }, best: TopK<DriverCopy>) => {
    const state = w.cells.get(cell);
    if (!state || !atHand(cell)) return false;
    offered++;
    const query = { type: 'nearest.offer' as const, point: q.point, radiusKm: q.radiusKm, vehicleType: q.vehicleType, best };
    return cellBehavior.query!(state, query, { self: { kind: 'cell', id: cell }, now: NOW }) === true;
  };
  for (let i = 0; i < 40; i++) {
    const point = { lat: CENTER.lat + (rand() - 0.5) * 0.22, lng: CENTER.lng + (rand() - 0.5) * 0.32 };
    for (const [k, radiusKm] of [[10, 3], [1, 0.5], [40, 8]] as const) {
      const q = { point, k, radiusKm };
      const asked: SearchStats = { rings: 0, cellsAsked: 0 };
      const plain = await searchNearest(q, RES, w.ask(q), asked, { occupied });
      const mixed: SearchStats = { rings: 0, cellsAsked: 0 };
      const found = await searchNearest(q, RES, w.ask(q), mixed, { occupied, offer });
      t.deepEqual(found.map((c) => c.driverId), oracle(drivers, point, k, radiusKm), `k=${k} r=${radiusKm}`);
      t.deepEqual(found, plain, 'the same candidates, distances included');
      // A cell at hand offers at once, so the cells after it in its ring are judged against a
      // k-th distance the asked cells only give once the ring is answered: never more cells.
      t.is(mixed.rings, asked.rings, 'the same rings');
      t.is(mixed.truncated, asked.truncated);
      t.true(mixed.cellsAsked <= asked.cellsAsked, `cells asked: ${mixed.cellsAsked} at hand against ${asked.cellsAsked}`);
      spared += asked.cellsAsked - mixed.cellsAsked;
      // searchFound: the same answer without a candidate per driver, each the very copy its cell holds.
      const entries = await searchFound(q, RES, w.ask(q), undefined, { occupied, offer });
      t.deepEqual(entries.map(({ km, driver }) => ({ ...driver, distanceKm: km })), found);
      for (const { driver } of entries) {
        const cell = latLngToCell(driver.lat, driver.lng, RES);
        if (atHand(cell)) t.true(driver === driverOf(w.cells.get(cell)!, driver.driverId), 'a cell at hand: its copy, not a copy of it');
      }
    }
  }
  t.true(offered > 100, `cells offered at hand: ${offered}`);
  t.true(spared > 0, 'a cell beyond the k-th distance the cells before it in its ring found is not asked');
});

test('a driver in two cells while it crosses between them is answered once, at its newest copy', async (t) => {
  const a = latLngToCell(CENTER.lat, CENTER.lng, RES);
  const [lat, lng] = cellToLatLng(gridDisk(a, 1).find((c) => c !== a)!);
  const old = copy('x', { lat: CENTER.lat + 0.0005, lng: CENTER.lng });
  const now = { ...copy('x', { lat, lng }), seenAt: NOW + 5 };
  const w = world([old, now, copy('y', { lat: CENTER.lat + 0.001, lng: CENTER.lng })]);
  const q = { point: CENTER, k: 5, radiusKm: 5 };
  const offer = (cell: string, qq: { point: Point; radiusKm: number }, best: TopK<DriverCopy>) =>
    cellBehavior.query!(w.cells.get(cell) ?? cellBehavior.initial(cell), { type: 'nearest.offer', ...qq, best },
      { self: { kind: 'cell', id: cell }, now: NOW }) === true;
  for (const limits of [{}, { offer }]) {
    const found = await searchNearest(q, RES, w.ask(q), undefined, limits);
    t.deepEqual(found.map((c) => [c.driverId, c.seenAt]), [['y', NOW], ['x', NOW + 5]]);
    t.is(found[1]!.lat, lat, 'where it is now');
  }
});

test('the search stops at the first ring wholly beyond the radius or the k-th distance, never sooner (whole rings judged without measuring each cell)',
  async (t) => {
  const rand = seeded(33);
  const drivers = Array.from({ length: 3_000 }, (_, i) => copy(`d${i}`, { lat: CENTER.lat + (rand() - 0.5) * 0.3, lng: CENTER.lng + (rand() - 0.5) * 0.45 }));
  const w = world(drivers);
  let checked = 0;
  for (let i = 0; i < 150; i++) {
    const point = { lat: CENTER.lat + (rand() - 0.5) * 0.34, lng: CENTER.lng + (rand() - 0.5) * 0.5 };
    for (const [k, radiusKm] of [[10, 3], [3, 10], [30, 6]] as const) {
      const q = { point, k, radiusKm };
      const stats: SearchStats = { rings: 0, cellsAsked: 0 };
      const found = await searchNearest(q, RES, w.ask(q), stats);
      const reach = Math.min(radiusKm, found.length === k ? found.at(-1)!.distanceKm : Number.POSITIVE_INFINITY);
      const origin = latLngToCell(point.lat, point.lng, RES);
      // The ring it stopped before lies beyond reach; every ring it covered did not (or it found more there).
      const ringMin = (r: number) => Math.min(...ring(origin, r).map((c) => cellLowerBoundKm(point, c)));
      t.true(ringMin(stats.rings) > reach, `stopped before ring ${stats.rings}, within reach (${ringMin(stats.rings)} <= ${reach})`);
      for (let r = 0; r < stats.rings; r++) t.true(ringMin(r) <= radiusKm);
      checked++;
    }
  }
  t.is(checked, 450);
});

test.serial('prepareOrigins: searches of the prepared radius from the cell or its neighbours compute no ring geometry, and answer as before', async (t) => {
  // Far from every other test's cells: nothing here was cached before.
  const home = { lat: -23.55, lng: -46.63 };
  const cell = latLngToCell(home.lat, home.lng, RES);
  const rand = seeded(51);
  const drivers = Array.from({ length: 400 }, (_, i) => copy(`p${i}`, { lat: home.lat + (rand() - 0.5) * 0.12, lng: home.lng + (rand() - 0.5) * 0.12 }));
  const w = world(drivers);
  prepareOrigins(cell);
  // Prepared in idle time, a slice per turn of the event loop.
  for (let before = -1; before !== geometryStats.computed;) { before = geometryStats.computed; await new Promise((r) => setTimeout(r, 5)); }
  const computed = geometryStats.computed;
  t.true(computed > 0);
  const squaresBefore = { ...squareStats };
  let searches = 0;
  for (const near of gridDisk(cell, 1)) {
    const [lat, lng] = cellToLatLng(near);
    for (let i = 0; i < 20; i++) {
      // Points spread over the neighbour (its centre ± less than its inradius), k beyond what is there: the widest search.
      const point = { lat: lat + (rand() - 0.5) * 0.02, lng: lng + (rand() - 0.5) * 0.02 };
      if (latLngToCell(point.lat, point.lng, RES) !== near) continue;
      for (const k of [10, 1_000]) {
        const q = { point, k, radiusKm: PREPARED_KM };
        const found = await searchNearest(q, RES, w.ask(q));
        searches++;
        t.deepEqual(found.map((c) => c.driverId), oracle(drivers, point, k, PREPARED_KM));
      }
    }
  }
  t.is(geometryStats.computed, computed, 'a search from a prepared origin computed ring geometry');
  // Each prepared origin holds the square of its centre: no search here, the first from its square included, called latLngToCell.
  t.is(squareStats.hits - squaresBefore.hits + squareStats.near - squaresBefore.near, searches);
  // The count does see a search from an origin nobody prepared.
  const far = { point: { lat: home.lat + 0.5, lng: home.lng }, k: 10, radiusKm: PREPARED_KM };
  await searchNearest(far, RES, w.ask(far));
  t.true(geometryStats.computed > computed);
});

test('a cell\'s lower bound never passes the distance to a point in it, and across an edge it is about the distance to that edge', (t) => {
  const rand = seeded(31);
  let tight = 0;
  for (const [lat, lng] of [[40.73, -73.99], [64.1, -21.9], [0.05, 0.05]] as const) {
    const home = latLngToCell(lat, lng, RES);
    const cells = gridDisk(home, 2);
    // Points in each cell: spread over it, and a centimetre inside its edges (where a bound too large shows).
    const inside = new Map<string, Point[]>();
    for (const cell of cells) {
      const pts: Point[] = [];
      const [clat, clng] = cellToLatLng(cell);
      const boundary = cellToBoundary(cell);
      for (let i = 0; i < 6; i++) {
        const [alat, alng] = boundary[i]!;
        const [blat, blng] = boundary[(i + 1) % 6]!;
        for (let j = 0; j <= 20; j++) {
          const f = j / 20;
          const e = { lat: alat + (blat - alat) * f, lng: alng + (blng - alng) * f };
          const towards = 0.00001 / Math.max(1e-9, distanceKm(e, { lat: clat, lng: clng })); // a centimetre toward the centre
          pts.push({ lat: e.lat + (clat - e.lat) * towards, lng: e.lng + (clng - e.lng) * towards });
        }
      }
      for (let i = 0; i < 200; i++) pts.push({ lat: clat + (rand() - 0.5) * 0.03, lng: clng + (rand() - 0.5) * 0.04 });
      inside.set(cell, pts.filter((p) => latLngToCell(p.lat, p.lng, RES) === cell));
    }
    for (let i = 0; i < 300; i++) {
      const [hlat, hlng] = cellToLatLng(home);
      const point = { lat: hlat + (rand() - 0.5) * 0.05, lng: hlng + (rand() - 0.5) * 0.07 };
      for (const cell of cells) {
        const bound = cellLowerBoundKm(point, cell);
        const least = Math.min(...inside.get(cell)!.map((p) => distanceKm(point, p)));
        t.true(bound <= least, `${cell} from ${point.lat},${point.lng}: bound ${bound} > ${least}`);
      }
    }
    // 300 m out from the middle of each edge: the disc alone (centre less circumradius) says about 0.13 km.
    for (const cell of cells) {
      const [clat, clng] = cellToLatLng(cell);
      const boundary = cellToBoundary(cell);
      for (let i = 0; i < 6; i++) {
        const mid = { lat: (boundary[i]![0] + boundary[(i + 1) % 6]![0]) / 2, lng: (boundary[i]![1] + boundary[(i + 1) % 6]![1]) / 2 };
        const out = 0.3 / distanceKm(mid, { lat: clat, lng: clng });
        const point = { lat: mid.lat + (mid.lat - clat) * out, lng: mid.lng + (mid.lng - clng) * out };
        const bound = cellLowerBoundKm(point, cell);
        t.true(bound > 0.28 && bound <= 0.3, `${cell} edge ${i}: ${bound}`);
        tight++;
      }
    }
  }
  t.is(tight, 3 * 19 * 6);
});

test.serial('originAt: a point well inside the origin last found in its square takes it, and that is always the cell latLngToCell finds', (t) => {
  const rand = seeded(77);
  const hitsBefore = squareStats.hits;
  let checked = 0;
  const check = (point: Point, res: number) => {
    t.is(originAt(point, res).cell, latLngToCell(point.lat, point.lng, res), `${point.lat},${point.lng} at res ${res}`);
    checked++;
  };
  // Cities, a high latitude, the equator and the antimeridian; two resolutions.
  for (const [lat, lng, span] of [[52.37, 4.9, 0.4], [-33.9, 151.2, 0.4], [64.1, -21.9, 0.6], [0.05, 0.05, 0.4], [70, 179.8, 0.3]] as const) {
    for (const res of [7, 8]) {
      for (let i = 0; i < 20_000; i++) check({ lat: lat + (rand() - 0.5) * span, lng: ((lng + (rand() - 0.5) * span + 540) % 360) - 180 }, res);
      // Points within metres of cells' edges and corners, where a wrong disc would show.
      for (const cell of gridDisk(latLngToCell(lat, lng, res), 3)) {
        const [clat, clng] = cellToLatLng(cell);
        for (let i = 0; i < 60; i++) {
          const angle = rand() * 2 * Math.PI;
          // From the centre outward to past the circumradius, densest near the inscribed circle.
          const km = (res === 7 ? 1.2 : 0.46) * (0.8 + 0.35 * rand());
          check({ lat: clat + (km / 111.2) * Math.sin(angle), lng: clng + (km / (111.2 * Math.cos(clat * Math.PI / 180))) * Math.cos(angle) }, res);
        }
      }
    }
  }
  t.true(squareStats.hits - hitsBefore > checked / 3, `${squareStats.hits - hitsBefore} of ${checked} from a square`);
});

test.serial('originAt: a point in a square no search came from takes a cell next to a nearby square\'s origin with no latLngToCell, and that is the cell latLngToCell finds', async (t) => {
  // One search from a cell computes its rings (no other test searches here); then points
  // all around it, each square met for the first time by its first point.
  const from = { lat: 45.5, lng: -73.6 };
  await searchFound({ point: from, k: 1, radiusKm: 4 }, RES, () => []);
  const rand = seeded(23);
  const before = { ...squareStats };
  let checked = 0;
  for (let i = 0; i < 2_000; i++) {
    const angle = rand() * 2 * Math.PI;
    const km = 3 * Math.sqrt(rand());
    const point = { lat: from.lat + (km / 111.2) * Math.sin(angle), lng: from.lng + (km / (111.2 * Math.cos(from.lat * Math.PI / 180))) * Math.cos(angle) };
    t.is(originAt(point, RES).cell, latLngToCell(point.lat, point.lng, RES), `${point.lat},${point.lng}`);
    checked++;
  }
  const near = squareStats.near - before.near;
  const hits = squareStats.hits - before.hits;
  // Squares 1 km a side over a disc of 3 km, each one to three cells: a point whose square's
  // origin is not its cell, or whose square is new, is found next door (500 of 2,000 here) but
  // for a few first ones far from the search's origin (30 here; each called latLngToCell before).
  t.true(near >= 200, `${near} found next to a nearby square's origin`);
  t.true(hits + near > checked * 0.95, `${hits} from their square, ${near} next to one, of ${checked}`);
});

test('surelyIn claims a cell only for points latLngToCell puts in it, and most points near its centre', (t) => {
  const rand = seeded(7);
  let claimed = 0;
  let nearCentre = 0;
  for (const res of [5, 7, 9]) {
    for (let c = 0; c < 20; c++) {
      const cell = latLngToCell(40.5 + rand(), -74.5 + rand(), res);
      const [clat, clng] = cellToLatLng(cell);
      const [vlat, vlng] = cellToBoundary(cell)[0]!;
      const spanLat = Math.abs(vlat - clat) * 1.6 + 1e-4, spanLng = Math.abs(vlng - clng) * 1.6 + 1e-4;
      for (let i = 0; i < 400; i++) {
        const p = { lat: clat + (rand() * 2 - 1) * spanLat, lng: clng + (rand() * 2 - 1) * spanLng };
        if (!surelyIn(p, cell, res)) continue;
        claimed++;
        if (latLngToCell(p.lat, p.lng, res) !== cell) { t.fail(`${p.lat},${p.lng} is not in ${cell}`); return; }
      }
      const centre = { lat: clat + spanLat * 0.05, lng: clng };
      if (surelyIn(centre, cell, res)) nearCentre++;
      t.false(surelyIn(centre, cell, res + 1), 'never for a cell of another resolution');
    }
  }
  t.true(claimed > 60 * 400 * 0.2, `claimed ${claimed} points`);
  t.is(nearCentre, 60, 'a point by the centre is always claimed');
});

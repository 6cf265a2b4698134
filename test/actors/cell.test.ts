import test from 'ava';
import { latLngToCell } from 'h3-js';
import { DEFAULT_CELL, makeCellBehavior, surgeAt, type Candidate, type CellState, type DriverCopy } from '../../actors/cell.ts';
import { rankCandidates, DEFAULT_WEIGHTS } from '../../actors/dispatch-policy.ts';
import { distanceKm } from '../../actors/geo.ts';
import { searchNearest } from '../../actors/nearest.ts';
import { DEFAULT_PRICING, fare, quote, tariffOf, vehicleTypes } from '../../actors/pricing.ts';

const cellBehavior = makeCellBehavior(DEFAULT_CELL);
const CENTER = { lat: 40.7128, lng: -74.006 };
const NOW = 1_800_000_000_000;

function seeded(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

function copy(driverId: string, lat: number, lng: number, extra: Partial<DriverCopy> = {}): DriverCopy {
  return { driverId, lat, lng, status: 'available', vehicleType: 'economy', rating: 5, acceptanceRate: 1, lastTripEndedAt: 0, maintenance: [], seenAt: NOW, ...extra };
}

test('nearest is exactly the k closest available drivers of the type within the radius (50,000 drivers, brute-force oracle)', async (t) => {
  const rand = seeded(42);
  const types = ['economy', 'comfort', 'xl'];
  const statuses = ['available', 'available', 'available', 'offered', 'on_trip'] as const;
  const drivers: DriverCopy[] = Array.from({ length: 50_000 }, (_, i) => copy(`d${i}`,
    CENTER.lat + (rand() - 0.5) * 0.5, CENTER.lng + (rand() - 0.5) * 0.6,
    { vehicleType: types[i % 3]!, status: statuses[Math.floor(rand() * statuses.length)]! }));
  // Cells as the actors hold them, filled through the cell reducer itself.
  const cells = new Map<string, CellState>();
  for (const d of drivers) {
    const id = latLngToCell(d.lat, d.lng, 7);
    const state = cells.get(id) ?? cellBehavior.initial(id);
    cells.set(id, cellBehavior.handle(state, { type: 'driver.upsert', driver: d }, { self: { kind: 'cell', id }, now: NOW, commandId: 'x' }).state);
  }
  const ask = async (cell: string, q: { point: { lat: number; lng: number }; k: number; radiusKm: number; vehicleType: string }) =>
    (cellBehavior.query!(cells.get(cell) ?? cellBehavior.initial(cell), { type: 'nearest', ...q }, { self: { kind: 'cell', id: cell }, now: NOW }) as Candidate[]);

  const points = [
    CENTER, // dense middle
    { lat: CENTER.lat + 0.249, lng: CENTER.lng + 0.299 }, // corner: edge of the populated area
    { lat: CENTER.lat + 0.3, lng: CENTER.lng }, // outside it
    ...Array.from({ length: 30 }, () => ({ lat: CENTER.lat + (rand() - 0.5) * 0.5, lng: CENTER.lng + (rand() - 0.5) * 0.6 })),
  ];
  let crossed = 0;
  for (const point of points) {
    for (const [k, radiusKm, vehicleType] of [[10, 3, 'economy'], [5, 1, 'xl'], [25, 6, 'comfort']] as const) {
      const oracle = drivers
        .filter((d) => d.status === 'available' && d.vehicleType === vehicleType)
        .map((d) => ({ id: d.driverId, km: distanceKm(point, d) }))
        .filter((d) => d.km <= radiusKm)
        .sort((a, b) => a.km - b.km || (a.id < b.id ? -1 : 1))
        .slice(0, k);
      const stats = { rings: 0, cellsAsked: 0 };
      const found = await searchNearest({ point, k, radiusKm, vehicleType }, 7, (cell) => ask(cell, { point, k, radiusKm, vehicleType }), stats);
      t.deepEqual(found.map((c) => c.driverId), oracle.map((o) => o.id), `k=${k} r=${radiusKm} at ${point.lat.toFixed(3)},${point.lng.toFixed(3)}`);
      const home = latLngToCell(point.lat, point.lng, 7);
      if (found.some((c) => latLngToCell(c.lat, c.lng, 7) !== home)) crossed++;
    }
  }
  t.true(crossed > 20, `answers crossed cell boundaries in ${crossed} queries`);
});

test('surge rises when demand exceeds supply, decays back, and never exceeds the cap', (t) => {
  const id = latLngToCell(CENTER.lat, CENTER.lng, 7);
  const c = (now: number) => ({ self: { kind: 'cell', id }, now, commandId: 'x' });
  let s = cellBehavior.handle(cellBehavior.initial(id), { type: 'driver.upsert', driver: copy('d1', CENTER.lat, CENTER.lng) }, c(NOW)).state;
  t.is(surgeAt(s, NOW, DEFAULT_CELL), 1, 'no demand: no surge');
  let t0 = NOW;
  const seen: number[] = [];
  for (let i = 0; i < 200; i++) {
    t0 += 2_000;
    s = cellBehavior.handle(s, { type: 'demand', at: t0 }, c(t0)).state;
    s = cellBehavior.handle(s, { type: 'driver.upsert', driver: copy('d1', CENTER.lat, CENTER.lng, { seenAt: t0 }) }, c(t0)).state;
    seen.push(surgeAt(s, t0, DEFAULT_CELL));
  }
  t.true(seen.at(-1)! > 2, `surge rose to ${seen.at(-1)}`);
  t.true(seen.every((x, i) => i === 0 || x >= seen[i - 1]! - 1e-9), 'it rises smoothly, without jumps down');
  t.true(seen.every((x) => x <= DEFAULT_CELL.surgeCap), 'never above the cap');
  const later = t0 + 30 * 60_000;
  s = cellBehavior.handle(s, { type: 'driver.upsert', driver: copy('d1', CENTER.lat, CENTER.lng, { seenAt: later }) }, c(later)).state;
  t.true(surgeAt(s, later, DEFAULT_CELL) < 1.05, 'with demand gone it decays back to 1');
});

test('drivers unheard of beyond the TTL are dropped', (t) => {
  const id = 'cell';
  const s = cellBehavior.handle(cellBehavior.initial(id), { type: 'driver.upsert', driver: copy('d1', CENTER.lat, CENTER.lng) }, { self: { kind: 'cell', id }, now: NOW, commandId: 'x' }).state;
  const q = { type: 'nearest' as const, point: CENTER, k: 5, radiusKm: 1 };
  t.is((cellBehavior.query!(s, q, { self: { kind: 'cell', id }, now: NOW + 1_000 }) as Candidate[]).length, 1);
  t.is((cellBehavior.query!(s, q, { self: { kind: 'cell', id }, now: NOW + DEFAULT_CELL.driverTtlMs + 1 }) as Candidate[]).length, 0);
});

test('ranking: at equal distance the better-rated and longer-idle driver comes first; maintenance is skipped', (t) => {
  const c = (driverId: string, extra: Partial<Candidate>): Candidate => ({ ...copy(driverId, 0, 0), distanceKm: 1, ...extra });
  const rank = (cs: Candidate[]) => rankCandidates(cs, { bookingId: 'b', radiusKm: 3, now: NOW, tried: [], weights: DEFAULT_WEIGHTS }).map((r) => r.driverId);
  const idle = NOW - 60 * 60_000;
  t.deepEqual(rank([
    c('worse', { rating: 3.5, lastTripEndedAt: NOW - 60_000 }),
    c('best', { rating: 5, lastTripEndedAt: idle }),
    c('in-shop', { rating: 5, lastTripEndedAt: idle, maintenance: [{ from: NOW - 1, to: NOW + 1 }] }),
    c('closer', { distanceKm: 0.2, rating: 4 }),
  ]), ['closer', 'best', 'worse'], 'distance first; then better-rated and longer-idle; maintenance never');
  t.deepEqual(rank([c('busy-lately', { lastTripEndedAt: NOW - 60_000 }), c('idle', { lastTripEndedAt: idle })]), ['idle', 'busy-lately'], 'equal rating: longer idle first');
  t.deepEqual(rank([c('four', { rating: 4 }), c('five', { rating: 5 })]), ['five', 'four'], 'equal idle time: better rating first');
  t.deepEqual(rank([c('shy', { acceptanceRate: 0.3 }), c('keen', { acceptanceRate: 0.95 })]), ['keen', 'shy'], 'then acceptance rate');
  const ties = ['a', 'b', 'c', 'd', 'e', 'f'].map((id) => c(id, {}));
  const firsts = new Set(Array.from({ length: 40 }, (_, i) => rankCandidates(ties, { bookingId: `b${i}`, radiusKm: 3, now: NOW, tried: [], weights: DEFAULT_WEIGHTS })[0]!.driverId));
  t.true(firsts.size >= 4, `ties are broken fairly across bookings (${firsts.size} different firsts)`);
});

test('pricing: minimum, maximum, surge cap and peak hours', (t) => {
  const short = quote({ pickup: CENTER, dropoff: { lat: CENTER.lat + 0.001, lng: CENTER.lng }, vehicleType: 'economy', surge: 1, now: Date.UTC(2026, 0, 1, 12) }, DEFAULT_PRICING);
  t.is(short.price.amount, DEFAULT_PRICING.tariffs.economy!.minimum);
  const trip = { distanceKm: 10, durationMin: 24 };
  const noon = Date.UTC(2026, 0, 1, 12);
  const base = fare('economy', trip, 1, noon, DEFAULT_PRICING).amount;
  t.is(base, 250 + 1200 + 600);
  t.is(fare('economy', trip, 10, noon, DEFAULT_PRICING).amount, base * DEFAULT_PRICING.surgeCap, 'surge is capped');
  t.is(fare('economy', trip, 1, Date.UTC(2026, 0, 1, 8), DEFAULT_PRICING).amount, Math.round(base * DEFAULT_PRICING.peakMultiplier));
  t.is(fare('economy', { distanceKm: 1000, durationMin: 2000 }, 1, noon, DEFAULT_PRICING).amount, DEFAULT_PRICING.tariffs.economy!.maximum);
  t.throws(() => fare('rickshaw', trip, 1, noon, DEFAULT_PRICING), { message: /unknown vehicle type/ });
  t.true(short.expiresAt > noon, 'a quote locks its price until it expires');
});

test('pricing: a name every object has is no tariff, and a tariff that is not numbers prices nothing (never a null amount)', (t) => {
  const trip = { distanceKm: 10, durationMin: 24 };
  const noon = Date.UTC(2026, 0, 1, 12);
  // A stored policy comes back from JSON as a plain object, like DEFAULT_PRICING's.
  const stored = JSON.parse(JSON.stringify(DEFAULT_PRICING)) as typeof DEFAULT_PRICING;
  for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
    t.is(tariffOf(stored, name), undefined, name);
    t.throws(() => fare(name, trip, 1, noon, stored), { message: /unknown vehicle type/ }, name);
    t.throws(() => quote({ pickup: CENTER, dropoff: CENTER, vehicleType: name, surge: 1, now: noon }, stored), undefined, name);
  }
  const broken = { ...stored, tariffs: { ...stored.tariffs, odd: { ...stored.tariffs.economy!, perKm: 'x' as unknown as number } } };
  t.throws(() => fare('odd', trip, 1, noon, broken), { message: /gives no price/ });
  t.deepEqual(vehicleTypes(stored), ['economy', 'comfort', 'xl']);
});

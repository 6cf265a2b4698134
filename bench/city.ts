// The bench's city, from a fixed seed: drivers dense in a core and thinning outwards
// (a few Gaussian centres plus a uniform tail), an empty area (a bay) nobody drives in,
// a share of drivers busy, offline, silent (stale), of another vehicle type or in
// maintenance, and riders' query points drawn from where riders are: the centres, the
// sparse suburbs, the bay, and points placed just inside or outside 3 km of a driver.
// 100k drivers cover one metro; 1M a region ten times its area (the metro and its
// satellite towns), so the 1M city is not the 100k one packed ten times denser.

import type { DriverCopy } from '../actors/cell.ts';
import { distanceKm, type Point } from '../actors/geo.ts';
import type { DriverStatus } from '../actors/driver.ts';
import type { MaintenanceWindow } from '../actors/vehicle.ts';
import { mulberry32 } from '../scripts/rng.ts';
import { KM_PER_DEG_LAT, kmPerDegLng } from '../scripts/sim-city.ts';

export const CENTER: Point = { lat: 40.73, lng: -73.99 };

/** A small, fast, seeded generator (mulberry32, the simulator's): the same city on every run. */
export const seeded: (seed: number) => () => number = mulberry32;

const gaussian = (rand: () => number) => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());

/** A point `east`, `north` km from `from`. */
export function offsetKm(from: Point, east: number, north: number): Point {
  return { lat: from.lat + north / KM_PER_DEG_LAT, lng: from.lng + east / kmPerDegLng(from.lat) };
}

interface Centre { readonly east: number; readonly north: number; readonly sigmaKm: number; readonly weight: number }

export interface CityShape {
  readonly name: string;
  /** Half the side of the square the city covers, km. */
  readonly halfSideKm: number;
  readonly centres: readonly Centre[];
  /** Share of drivers spread uniformly over the whole square (the suburbs and beyond). */
  readonly tail: number;
}

/** One metro, about 40 x 40 km: a dense core, three districts, a thin tail. */
export const METRO: CityShape = {
  name: 'one metro, 40 × 40 km',
  halfSideKm: 20,
  centres: [
    { east: 0, north: 0, sigmaKm: 2.5, weight: 0.4 },
    { east: 6, north: 7, sigmaKm: 2, weight: 0.15 },
    { east: -7, north: -3, sigmaKm: 3, weight: 0.12 },
    { east: 9, north: -8, sigmaKm: 2.5, weight: 0.1 },
  ],
  tail: 0.23,
};

/** A region ten times the metro's area (126 x 126 km): the metro and six satellite towns. */
export const REGION: CityShape = {
  name: 'a region ten times the metro, 126 × 126 km',
  halfSideKm: 63,
  centres: [
    ...METRO.centres.map((c) => ({ ...c, weight: c.weight * 0.6 })),
    ...[[35, 20], [-40, 25], [-30, -38], [28, -42], [50, -5], [-8, 48]].map(([east, north], i) =>
      ({ east: east!, north: north!, sigmaKm: 2 + (i % 3), weight: 0.05 })),
  ],
  tail: 0.2,
};

/** The bay: a 6 x 6 km square south-west of the core where nobody drives (queries there find no one). */
const BAY = { west: -16, east: -10, south: -16, north: -10 };
const inBay = (east: number, north: number) => east >= BAY.west && east <= BAY.east && north >= BAY.south && north <= BAY.north;

/** Drivers kept compactly (typed arrays; a copy is made when sent), so 1M fit beside their cells and peers. */
export interface Fleet {
  readonly n: number;
  readonly lat: Float64Array;
  readonly lng: Float64Array;
  /** Index into STATUSES. */
  readonly status: Uint8Array;
  /** Index into VEHICLE_TYPES. */
  readonly vehicle: Uint8Array;
  readonly stale: Uint8Array;
  readonly maintenance: Uint8Array;
}

export const STATUSES: readonly DriverStatus[] = ['available', 'offered', 'assigned', 'on_trip', 'offline'];
export const VEHICLE_TYPES = ['economy', 'comfort', 'xl'] as const;

/** Where a point of the shape falls, `east`/`north` km from the centre (never in the bay, never off the square). */
function place(shape: CityShape, rand: () => number): { east: number; north: number } {
  for (;;) {
    let east: number; let north: number;
    const pick = rand();
    if (pick < shape.tail) {
      east = (rand() * 2 - 1) * shape.halfSideKm; north = (rand() * 2 - 1) * shape.halfSideKm;
    } else {
      let acc = shape.tail;
      const total = shape.centres.reduce((s, c) => s + c.weight, 0);
      let c = shape.centres.at(-1)!;
      for (const centre of shape.centres) { acc += (centre.weight / total) * (1 - shape.tail); if (pick < acc) { c = centre; break; } }
      east = c.east + gaussian(rand) * c.sigmaKm; north = c.north + gaussian(rand) * c.sigmaKm;
    }
    if (Math.abs(east) <= shape.halfSideKm && Math.abs(north) <= shape.halfSideKm && !inBay(east, north)) return { east, north };
  }
}

/** The shares of the fleet not available for a query (see `city`). */
export const SHARES = { busy: 0.15, offline: 0.08, stale: 0.04, otherType: 0.25, maintenance: 0.02 } as const;

/**
 * `n` drivers over `shape`: 15% busy (offered, assigned or on a trip), 8% offline (no copy in
 * any cell, as when a driver goes offline), 4% silent for 5 minutes (a copy older than the
 * cells' 2-minute TTL), 25% of another vehicle type than economy, 2% in maintenance now.
 */
export function city(shape: CityShape, n: number, seed: number): Fleet {
  const rand = seeded(seed);
  const f: Fleet = {
    n, lat: new Float64Array(n), lng: new Float64Array(n), status: new Uint8Array(n), vehicle: new Uint8Array(n),
    stale: new Uint8Array(n), maintenance: new Uint8Array(n),
  };
  for (let i = 0; i < n; i++) {
    const { east, north } = place(shape, rand);
    const p = offsetKm(CENTER, east, north);
    f.lat[i] = p.lat; f.lng[i] = p.lng;
    const s = rand();
    f.status[i] = s < SHARES.offline ? 4 : s < SHARES.offline + SHARES.busy ? 1 + Math.floor(rand() * 3) : 0;
    const v = rand();
    f.vehicle[i] = v < 1 - SHARES.otherType ? 0 : v < 1 - SHARES.otherType / 2 ? 1 : 2;
    f.stale[i] = rand() < SHARES.stale ? 1 : 0;
    f.maintenance[i] = rand() < SHARES.maintenance ? 1 : 0;
  }
  return f;
}

export const driverId = (i: number) => `d${i}`;
export const indexOf = (id: string) => Number(id.slice(1));

/** Times the copies carry, fixed for a run: fresh copies seen at `freshAt`, silent ones at `staleAt`. */
export interface Clock { readonly freshAt: number; readonly staleAt: number; readonly maintenance: readonly MaintenanceWindow[] }

export function clockAt(now: number): Clock {
  // Fresh copies are stamped an hour ahead so none turns stale during the run (the cells' TTL
  // is 2 minutes); silent ones 5 minutes back. Maintenance windows cover the whole run.
  return { freshAt: now + 3_600_000, staleAt: now - 300_000, maintenance: [{ from: now - 3_600_000, to: now + 86_400_000 }] };
}

/** Driver i's copy as its driver actor sends it to its cell; undefined for an offline driver (no copy). */
export function copyOf(f: Fleet, i: number, clock: Clock): DriverCopy | undefined {
  if (STATUSES[f.status[i]!] === 'offline') return undefined;
  return {
    driverId: driverId(i), lat: f.lat[i]!, lng: f.lng[i]!, status: STATUSES[f.status[i]!]!, vehicleType: VEHICLE_TYPES[f.vehicle[i]!]!,
    rating: 5, acceptanceRate: 1, lastTripEndedAt: 0, maintenance: f.maintenance[i] ? clock.maintenance : [],
    seenAt: f.stale[i] ? clock.staleAt : clock.freshAt,
  };
}

/** Whether driver i may be offered to a rider asking for `vehicleType`: the rules a cell applies, from the fleet. */
export function eligible(f: Fleet, i: number, vehicleType: string): boolean {
  return f.status[i] === 0 && !f.stale[i] && !f.maintenance[i] && VEHICLE_TYPES[f.vehicle[i]!] === vehicleType;
}

export type QueryKind = 'where riders are' | 'suburb' | 'bay (empty)' | 'radius edge';

export interface Query {
  readonly point: Point;
  readonly vehicleType: string;
  readonly kind: QueryKind;
}

/**
 * Riders' queries: 65% where riders are (the centres), 15% in the suburbs (uniform over the
 * square), 5% in the bay, 15% placed 2.995 or 3.005 km from an eligible driver (the radius
 * edge, inside and out). 85% ask for economy, 15% for comfort.
 */
export function queries(shape: CityShape, f: Fleet, count: number, seed: number): Query[] {
  const rand = seeded(seed);
  const out: Query[] = [];
  while (out.length < count) {
    const vehicleType = rand() < 0.85 ? 'economy' : 'comfort';
    const pick = rand();
    if (pick < 0.65) {
      const { east, north } = place({ ...shape, tail: 0 }, rand);
      out.push({ point: offsetKm(CENTER, east, north), vehicleType, kind: 'where riders are' });
    } else if (pick < 0.8) {
      const east = (rand() * 2 - 1) * shape.halfSideKm; const north = (rand() * 2 - 1) * shape.halfSideKm;
      out.push({ point: offsetKm(CENTER, east, north), vehicleType, kind: 'suburb' });
    } else if (pick < 0.85) {
      const east = BAY.west + rand() * (BAY.east - BAY.west); const north = BAY.south + rand() * (BAY.north - BAY.south);
      out.push({ point: offsetKm(CENTER, east, north), vehicleType, kind: 'bay (empty)' });
    } else {
      let i = Math.floor(rand() * f.n);
      while (!eligible(f, i, vehicleType)) i = (i + 1) % f.n;
      const km = rand() < 0.5 ? 2.995 : 3.005;
      const bearing = rand() * 2 * Math.PI;
      const point = offsetKm({ lat: f.lat[i]!, lng: f.lng[i]! }, km * Math.sin(bearing), km * Math.cos(bearing));
      out.push({ point, vehicleType, kind: 'radius edge' });
    }
  }
  return out;
}

/**
 * The reference answer: every eligible driver within the radius by the cells' own distance,
 * closest first (ties by id, as every nearest answer orders them). A linear scan, with a
 * latitude band to skip most of the fleet cheaply (a driver outside it is farther than the
 * radius on any sphere), so 1M drivers take milliseconds, not a minute, per query.
 */
export function bruteNearest(f: Fleet, q: Query, k: number, radiusKm: number): { id: string; km: number }[] {
  const band = (radiusKm * 1.01) / KM_PER_DEG_LAT;
  const found: { id: string; km: number }[] = [];
  const p = { lat: 0, lng: 0 };
  for (let i = 0; i < f.n; i++) {
    if (Math.abs(f.lat[i]! - q.point.lat) > band || !eligible(f, i, q.vehicleType)) continue;
    p.lat = f.lat[i]!; p.lng = f.lng[i]!;
    const km = distanceKm(q.point, p);
    if (km <= radiusKm) found.push({ id: driverId(i), km });
  }
  found.sort((a, b) => a.km - b.km || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return found.slice(0, k);
}

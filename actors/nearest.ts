// Nearest drivers across cells: rings of H3 cells outward from the pickup, asking
// cell actors ring by ring, and stopping as soon as the answer is certain: when
// k drivers are found and no cell of the next ring can hold anyone closer, or
// when the next ring lies wholly beyond the radius. A cell's lower bound is the
// distance to its centre minus its circumradius (triangle inequality), so the
// search never misses a closer driver across a cell boundary.
//
// Two bounds keep one search from waking a city's worth of actors: cells that
// never held a driver (an `occupied` filter says which did) are skipped without
// being asked, and at most `maxCells` cells are asked: the search stops before a
// ring that would pass the bound (whole rings only, so what it returns is still
// exactly the nearest within the rings it covered).

import { cellToBoundary, cellToLatLng, gridDisk, gridRingUnsafe, latLngToCell } from 'h3-js';
import type { Service, ServicePorts } from './behavior.ts';
import type { Candidate } from './cell.ts';
import { distanceKm, type Point } from './geo.ts';

export interface SearchSettings {
  /** Largest radius a nearby search may ask for (a city, not a region). */
  readonly maxRadiusKm: number;
  /** Most cells one search asks (nearby list or a booking's dispatch search). */
  readonly maxCells: number;
}

/** Defaults of SEARCH_MAX_RADIUS_KM and SEARCH_MAX_CELLS (config/variables.ts). */
export const DEFAULT_SEARCH: SearchSettings = { maxRadiusKm: 10, maxCells: 200 };

/**
 * Which of `cells` have ever held a driver (the others have nothing to answer).
 * It may answer more cells than really held one (asking those costs a wake-up,
 * nothing else) but never fewer for long, or a driver would be hidden.
 */
export type OccupiedFilter = (cells: readonly string[]) => Promise<readonly string[]> | readonly string[];

export interface SearchLimits {
  /** At most this many cells are asked; the search stops before a ring that would pass it. */
  readonly maxCells?: number;
  /** Skips cells that never held a driver; absent: every reachable cell is asked. */
  readonly occupied?: OccupiedFilter;
}

export interface NearestQuery {
  readonly point: Point;
  readonly k: number;
  readonly radiusKm: number;
  readonly vehicleType?: string;
}

/** Smallest possible distance from `point` to anywhere inside `cell`. */
export function cellLowerBoundKm(point: Point, cell: string): number {
  const [lat, lng] = cellToLatLng(cell);
  const center = { lat, lng };
  let radius = 0;
  for (const [vlat, vlng] of cellToBoundary(cell)) radius = Math.max(radius, distanceKm(center, { lat: vlat, lng: vlng }));
  return Math.max(0, distanceKm(point, center) - radius * 1.005);
}

export function ring(origin: string, r: number): string[] {
  if (r === 0) return [origin];
  try {
    return gridRingUnsafe(origin, r);
  } catch {
    // Near a pentagon the fast ring fails; the disk difference is always right.
    const inner = new Set(gridDisk(origin, r - 1));
    return gridDisk(origin, r).filter((c) => !inner.has(c));
  }
}

/** Merges candidate lists: closest first, one entry per driver, at most k. */
export function mergeTopK(lists: readonly (readonly Candidate[])[], k: number): Candidate[] {
  const best = new Map<string, Candidate>();
  for (const list of lists) for (const c of list) {
    const known = best.get(c.driverId);
    if (!known || c.seenAt > known.seenAt) best.set(c.driverId, c);
  }
  return [...best.values()].sort((a, b) => a.distanceKm - b.distanceKm || (a.driverId < b.driverId ? -1 : 1)).slice(0, k);
}

export interface SearchStats {
  rings: number;
  cellsAsked: number;
  /** Reachable cells the occupied filter left out (never held a driver: not asked). */
  cellsSkipped?: number;
  /** Set when the search stopped at `maxCells` before covering the radius. */
  truncated?: boolean;
}

/** Runs the ring search; `askCell` answers a cell's nearest query (a cell actor in the runtime). */
export async function searchNearest(
  q: NearestQuery, cellRes: number, askCell: (cell: string) => Promise<readonly Candidate[]>,
  stats: SearchStats = { rings: 0, cellsAsked: 0 }, limits: SearchLimits = {},
): Promise<Candidate[]> {
  const origin = latLngToCell(q.point.lat, q.point.lng, cellRes);
  const maxCells = limits.maxCells ?? Number.POSITIVE_INFINITY;
  let asked = 0;
  let found: Candidate[] = [];
  for (let r = 0; ; r++) {
    const cells = ring(origin, r).map((cell) => ({ cell, bound: cellLowerBoundKm(q.point, cell) }));
    const ringMin = Math.min(...cells.map((c) => c.bound));
    if (ringMin > q.radiusKm) break;
    const kth = found[q.k - 1];
    if (kth && ringMin > kth.distanceKm) break;
    const reachable = cells.filter((c) => c.bound <= q.radiusKm && (!kth || c.bound <= kth.distanceKm)).map((c) => c.cell);
    // One lookup per ring; what it answers is kept in ring order and never beyond the ring.
    const occupied = limits.occupied ? new Set(await limits.occupied(reachable)) : undefined;
    const toAsk = occupied ? reachable.filter((c) => occupied.has(c)) : reachable;
    if (asked + toAsk.length > maxCells) { stats.truncated = true; break; }
    stats.rings++;
    stats.cellsAsked += toAsk.length;
    if (occupied) stats.cellsSkipped = (stats.cellsSkipped ?? 0) + reachable.length - toAsk.length;
    asked += toAsk.length;
    if (toAsk.length > 0) {
      const answers = await Promise.all(toAsk.map((cell) => askCell(cell)));
      found = mergeTopK([found, ...answers], q.k);
    }
    if (r > 1000) break; // a radius larger than a continent: stop rather than spin
  }
  return found;
}

/** What a node service sees when the node keeps a set of occupied cells (see node.ts). */
export interface SearchPorts extends ServicePorts {
  readonly occupiedCells?: OccupiedFilter;
}

/** Hands `occupied` to every service through its ports, so a search can skip cells that never held a driver. */
export function withOccupiedCells(services: Readonly<Record<string, Service>>, occupied: OccupiedFilter): Record<string, Service> {
  return Object.fromEntries(Object.entries(services).map(([name, service]): [string, Service] =>
    [name, (payload, ports) => {
      const withCells: SearchPorts = { ...ports, occupiedCells: occupied };
      return service(payload, withCells);
    }]));
}

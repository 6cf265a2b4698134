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
import { TopK } from './top-k.ts';

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

interface CellDisc {
  readonly center: Point;
  /** Circumradius, with slack for the sphere. */
  readonly radiusKm: number;
}

/** Cells' centres and circumradii: fixed per cell id, and asking h3 for them costs more than a whole cell's answer. */
const discs = new Map<string, CellDisc>();
const MAX_DISCS = 100_000;

function discOf(cell: string): CellDisc {
  let disc = discs.get(cell);
  if (disc) return disc;
  const [lat, lng] = cellToLatLng(cell);
  const center = { lat, lng };
  let radius = 0;
  for (const [vlat, vlng] of cellToBoundary(cell)) radius = Math.max(radius, distanceKm(center, { lat: vlat, lng: vlng }));
  disc = { center, radiusKm: radius * 1.005 };
  if (discs.size >= MAX_DISCS) discs.clear(); // bounded: a city's cells fit many times over
  discs.set(cell, disc);
  return disc;
}

/** Smallest possible distance from `point` to anywhere inside `cell`. */
export function cellLowerBoundKm(point: Point, cell: string): number {
  const disc = discOf(cell);
  return Math.max(0, distanceKm(point, disc.center) - disc.radiusKm);
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

/**
 * Merges candidate lists: closest first (ties by driverId), one entry per driver (its
 * newest copy), at most k. A driver appears at most once within one list (true of a
 * cell's answer and of this function's own), so a single list needs no de-duplication.
 */
export function mergeTopK(lists: readonly (readonly Candidate[])[], k: number): Candidate[] {
  const full = lists.filter((list) => list.length > 0);
  let all: Iterable<Candidate> = full[0] ?? [];
  if (full.length > 1) {
    const newest = new Map<string, Candidate>();
    for (const list of full) for (const c of list) {
      const known = newest.get(c.driverId);
      if (!known || c.seenAt > known.seenAt) newest.set(c.driverId, c);
    }
    all = newest.values();
  }
  const best = new TopK<Candidate>(k);
  for (const c of all) best.offer(c.distanceKm, c);
  return best.sorted().map((e) => e.driver);
}

export interface SearchStats {
  rings: number;
  cellsAsked: number;
  /** Reachable cells the occupied filter left out (never held a driver: not asked). */
  cellsSkipped?: number;
  /** Set when the search stopped at `maxCells` before covering the radius. */
  truncated?: boolean;
}

/** A cell's answer: plain when the cell is at hand, a promise when it must be asked. */
export type CellAnswer = readonly Candidate[] | Promise<readonly Candidate[]>;

const isPromise = <T>(x: T | Promise<T>): x is Promise<T> => typeof (x as { then?: unknown } | undefined)?.then === 'function';

/** Awaits only what is a promise: a search over cells at hand never yields to the event loop. */
function settleAll(answers: CellAnswer[]): readonly (readonly Candidate[])[] | Promise<readonly (readonly Candidate[])[]> {
  return answers.some(isPromise) ? Promise.all(answers) : answers as (readonly Candidate[])[];
}

/** The cells of ring r within reach: under the radius and under the k-th distance found so far. */
function reachableOf(q: NearestQuery, cells: readonly string[], kthKm: number): { ringMin: number; reachable: string[] } {
  let ringMin = Number.POSITIVE_INFINITY;
  const reachable: string[] = [];
  for (const cell of cells) {
    const bound = cellLowerBoundKm(q.point, cell);
    ringMin = Math.min(ringMin, bound);
    if (bound <= q.radiusKm && bound <= kthKm) reachable.push(cell);
  }
  return { ringMin, reachable };
}

/** Runs the ring search; `askCell` answers a cell's nearest query (a cell actor in the runtime, or the cell's state at hand). */
export async function searchNearest(
  q: NearestQuery, cellRes: number, askCell: (cell: string) => CellAnswer,
  stats: SearchStats = { rings: 0, cellsAsked: 0 }, limits: SearchLimits = {},
): Promise<Candidate[]> {
  const origin = latLngToCell(q.point.lat, q.point.lng, cellRes);
  const maxCells = limits.maxCells ?? Number.POSITIVE_INFINITY;
  let asked = 0;
  let found: Candidate[] = [];
  for (let r = 0; ; r++) {
    const kthKm = found[q.k - 1]?.distanceKm ?? Number.POSITIVE_INFINITY;
    const { ringMin, reachable } = reachableOf(q, ring(origin, r), kthKm);
    if (ringMin > q.radiusKm || ringMin > kthKm) break;
    // One lookup per ring; what it answers is kept in ring order and never beyond the ring.
    const answered = limits.occupied?.(reachable);
    const occupied = answered === undefined ? undefined : new Set(isPromise(answered) ? await answered : answered);
    const toAsk = occupied ? reachable.filter((c) => occupied.has(c)) : reachable;
    if (asked + toAsk.length > maxCells) { stats.truncated = true; break; }
    stats.rings++;
    stats.cellsAsked += toAsk.length;
    if (occupied) stats.cellsSkipped = (stats.cellsSkipped ?? 0) + reachable.length - toAsk.length;
    asked += toAsk.length;
    if (toAsk.length > 0) {
      const pending = settleAll(toAsk.map(askCell));
      const answers = isPromise(pending) ? await pending : pending;
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

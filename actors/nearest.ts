// Nearest drivers across cells: rings of H3 cells outward from the pickup, asking
// cell actors ring by ring, and stopping as soon as the answer is certain: when
// k drivers are found and no cell of the next ring can hold anyone closer, or
// when the next ring lies wholly beyond the radius. A cell's lower bound is the
// distance to its centre minus its circumradius (triangle inequality), so the
// search never misses a closer driver across a cell boundary.

import { cellToBoundary, cellToLatLng, gridDisk, gridRingUnsafe, latLngToCell } from 'h3-js';
import type { Candidate } from './cell.ts';
import { distanceKm, type Point } from './geo.ts';

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
}

/** Runs the ring search; `askCell` answers a cell's nearest query (a cell actor in the runtime). */
export async function searchNearest(
  q: NearestQuery, cellRes: number, askCell: (cell: string) => Promise<readonly Candidate[]>, stats: SearchStats = { rings: 0, cellsAsked: 0 },
): Promise<Candidate[]> {
  const origin = latLngToCell(q.point.lat, q.point.lng, cellRes);
  let found: Candidate[] = [];
  for (let r = 0; ; r++) {
    const cells = ring(origin, r).map((cell) => ({ cell, bound: cellLowerBoundKm(q.point, cell) }));
    const ringMin = Math.min(...cells.map((c) => c.bound));
    if (ringMin > q.radiusKm) break;
    const kth = found[q.k - 1];
    if (kth && ringMin > kth.distanceKm) break;
    const reachable = cells.filter((c) => c.bound <= q.radiusKm && (!kth || c.bound <= kth.distanceKm));
    stats.rings++;
    stats.cellsAsked += reachable.length;
    const answers = await Promise.all(reachable.map((c) => askCell(c.cell)));
    found = mergeTopK([found, ...answers], q.k);
    if (r > 1000) break; // a radius larger than a continent: stop rather than spin
  }
  return found;
}

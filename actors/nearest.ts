// Nearest drivers across cells: rings of H3 cells outward from the pickup, asking
// cell actors ring by ring, and stopping as soon as the answer is certain: when
// k drivers are found and no cell of the next ring can hold anyone closer, or
// when the next ring lies wholly beyond the radius. A cell's lower bound is the
// greater of the distance to its centre minus its circumradius (triangle inequality)
// and the distance to the farthest of its edges' great circles the point lies
// outside of, so the search never misses a closer driver across a cell boundary.
// Within a ring, a cell is judged again against the k-th distance when its turn
// comes: the cells at hand before it may have found k closer drivers.
//
// Two bounds keep one search from waking a city's worth of actors: cells that
// never held a driver (an `occupied` filter says which did) are skipped without
// being asked, and at most `maxCells` cells are asked: the search stops before a
// ring that would pass the bound (whole rings only, so what it returns is still
// exactly the nearest within the rings it covered).

import { cellToBoundary, cellToLatLng, getResolution, gridDisk, gridRingUnsafe, latLngToCell } from 'h3-js';
import type { EntityRef, Service, ServicePorts } from './behavior.ts';
import type { Candidate, CellQuery, DriverCopy } from './cell.ts';
import { cosLat, distanceKm, haversineKm, type Point } from './geo.ts';
import { TopK, type Entry } from './top-k.ts';

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
  /** Cells at hand offer their drivers at once (see OfferCell); absent: every cell is asked. */
  readonly offer?: OfferCell;
}

export interface NearestQuery {
  readonly point: Point;
  readonly k: number;
  readonly radiusKm: number;
  readonly vehicleType?: string;
}

interface CellDisc {
  readonly center: Point;
  /** cosLat(center.lat). */
  readonly cos: number;
  /** Circumradius, with slack for the sphere. */
  readonly radiusKm: number;
  /** Its edges when a plain hexagon (see Edges). */
  readonly edges: Edges | undefined;
  /** The cell's resolution. */
  readonly res: number;
}

/**
 * A plain hexagon's six edges as the great circles they lie on (an H3 cell's edges are straight
 * in its face's gnomonic projection: arcs of great circles): each one's unit normal, pointing
 * inward, three numbers apiece. Cells that are not plain hexagons (pentagons, cells cut by an
 * icosahedron edge: more vertices, maybe not convex) have none.
 */
type Edges = Float64Array;
/**
 * sin of a metre over the earth's radius: the margin a point keeps from every edge to be
 * taken as inside (h3's own rounding is far below it), and one a lower bound gives away.
 */
const EDGE_SINE = 0.001 / 6371.0088;

/** Cells' centres, circumradii and edges: fixed per cell id, and asking h3 for them costs more than a whole cell's answer. */
const discs = new Map<string, CellDisc>();
const MAX_DISCS = 100_000;

function discOf(cell: string): CellDisc {
  let disc = discs.get(cell);
  if (disc) return disc;
  const [lat, lng] = cellToLatLng(cell);
  const center = { lat, lng };
  const boundary = cellToBoundary(cell);
  let radius = 0;
  for (const [vlat, vlng] of boundary) radius = Math.max(radius, distanceKm(center, { lat: vlat, lng: vlng }));
  disc = { center, cos: cosLat(lat), radiusKm: radius * 1.005, edges: edgesOf(center, boundary), res: getResolution(cell) };
  if (discs.size >= MAX_DISCS) discs.clear(); // bounded: a city's cells fit many times over
  discs.set(cell, disc);
  return disc;
}

const RAD = Math.PI / 180;
const EARTH_KM = 6371.0088;
const unit = (lat: number, lng: number): [number, number, number] =>
  [Math.cos(lat * RAD) * Math.cos(lng * RAD), Math.cos(lat * RAD) * Math.sin(lng * RAD), Math.sin(lat * RAD)];

/** The inward normals of a plain hexagon's edges; undefined for any other cell. */
function edgesOf(center: Point, boundary: readonly (readonly number[])[]): Edges | undefined {
  if (boundary.length !== 6) return undefined;
  const c = unit(center.lat, center.lng);
  const edges = new Float64Array(18);
  for (let i = 0; i < 6; i++) {
    const a = unit(boundary[i]![0]!, boundary[i]![1]!);
    const b = unit(boundary[(i + 1) % 6]![0]!, boundary[(i + 1) % 6]![1]!);
    const n = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
    const norm = Math.hypot(n[0]!, n[1]!, n[2]!) * Math.sign(n[0]! * c[0] + n[1]! * c[1] + n[2]! * c[2]);
    for (let j = 0; j < 3; j++) edges[3 * i + j] = n[j]! / norm;
  }
  return edges;
}

/** A search's point as a unit vector, for the edges' tests. */
interface Unit { readonly x: number; readonly y: number; readonly z: number }

function unitOf(point: Point, cos: number): Unit {
  return { x: cos * Math.cos(point.lng * RAD), y: cos * Math.sin(point.lng * RAD), z: Math.sin(point.lat * RAD) };
}

/** Whether the point lies inside all six edges (from `at` in `edges`), by EDGE_SINE at least: then it is in the cell. */
function insideEdges(edges: Float64Array, at: number, p: Unit): boolean {
  for (let i = at; i < at + 18; i += 3) if (edges[i]! * p.x + edges[i + 1]! * p.y + edges[i + 2]! * p.z < EDGE_SINE) return false;
  return true;
}

/**
 * The least distance from the point to the cell whose edges start at `at`: at least its distance
 * to the farthest of the great circles it lies outside of (the cell is inside all six), less
 * the margin. 0 inside, and for a cell without edges (all zero).
 */
function edgeBoundKm(edges: Float64Array, at: number, p: Unit): number {
  let outside = 0;
  for (let i = at; i < at + 18; i += 3) outside = Math.max(outside, -(edges[i]! * p.x + edges[i + 1]! * p.y + edges[i + 2]! * p.z));
  return outside <= EDGE_SINE ? 0 : EARTH_KM * Math.asin(Math.min(1, outside - EDGE_SINE));
}

/**
 * Whether `point` lies well inside `cell` (inside all six edges by a metre, as searches'
 * origins are placed), so that latLngToCell at `cellRes` would answer `cell`; false when that
 * is not sure (near an edge, a cell of another resolution, a pentagon). A driver's fix mostly
 * falls in the cell of its last one, and latLngToCell (h3's call, a new string) was a tenth of
 * a fix's CPU and a fifth of what it allocated.
 */
export function surelyIn(point: Point, cell: string, cellRes: number): boolean {
  const disc = discOf(cell);
  return disc.res === cellRes && disc.edges !== undefined && insideEdges(disc.edges, 0, unitOf(point, cosLat(point.lat)));
}

/** Smallest possible distance from `point` to anywhere inside `cell`. */
export function cellLowerBoundKm(point: Point, cell: string): number {
  const disc = discOf(cell);
  const cos = cosLat(point.lat);
  const byDisc = haversineKm(point.lat, point.lng, cos, disc.center.lat, disc.center.lng, disc.cos) - disc.radiusKm;
  return Math.max(0, byDisc, disc.edges ? edgeBoundKm(disc.edges, 0, unitOf(point, cos)) : 0);
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

/** Ring r around an origin cell with its cells' discs side by side: what bounding them needs, no h3 call. */
interface RingGeometry {
  readonly cells: readonly string[];
  readonly lat: Float64Array;
  readonly lng: Float64Array;
  readonly cos: Float64Array;
  readonly radiusKm: Float64Array;
  /** The cells' edges, 18 numbers each (all zero for a cell without: its disc bounds it alone). */
  readonly edges: Float64Array;
  /**
   * The least lower bound of the ring's cells as seen from the origin's centre: from a
   * point δ km from that centre, every cell's lower bound is at least this less δ (triangle
   * inequality), so a search can tell a ring lies beyond its reach without measuring it.
   */
  readonly innerKm: number;
}

function geometryOf(origin: string, cells: readonly string[]): RingGeometry {
  const n = cells.length;
  const g = {
    cells, lat: new Float64Array(n), lng: new Float64Array(n), cos: new Float64Array(n), radiusKm: new Float64Array(n), edges: new Float64Array(18 * n), innerKm: 0,
  };
  const from = discOf(origin);
  let inner = Number.POSITIVE_INFINITY;
  cells.forEach((cell, i) => {
    const disc = discOf(cell);
    g.lat[i] = disc.center.lat; g.lng[i] = disc.center.lng; g.cos[i] = disc.cos; g.radiusKm[i] = disc.radiusKm;
    if (disc.edges) g.edges.set(disc.edges, 18 * i);
    inner = Math.min(inner, haversineKm(from.center.lat, from.center.lng, from.cos, disc.center.lat, disc.center.lng, disc.cos) - disc.radiusKm);
  });
  // Below by a hair: rounding in the triangle inequality must never make it cut a ring a search would ask.
  g.innerKm = inner * (1 - 1e-9) - 1e-9;
  return g;
}

/**
 * Ring geometry per origin cell, computed once: a search from a cell asks the same rings
 * every time, and gridRing plus the cells' discs cost more than the cells' answers. Rings
 * beyond CACHED_RINGS (radii wider than a city search) are computed each time.
 */
interface Origin {
  readonly cell: string;
  readonly disc: CellDisc;
  /** Ring r's geometry at r, computed as far as searches from here went. */
  readonly rings: RingGeometry[];
}

/** A search's origin cells, with what it reads of them: one lookup per search. */
const origins = new Map<string, Origin>();
const MAX_ORIGINS = 20_000;
const CACHED_RINGS = 8;

function originOf(cell: string): Origin {
  let origin = origins.get(cell);
  if (!origin) {
    if (origins.size >= MAX_ORIGINS) origins.clear(); // bounded: a region's cells fit
    origins.set(cell, origin = { cell, disc: discOf(cell), rings: [] });
  }
  return origin;
}

/**
 * The origin last found in each square of SQUARE_DEG (per resolution): a point inside that
 * origin's edges, by a metre, is in it (insideEdges), with no latLngToCell (a call into h3's
 * WebAssembly, a new string to look up) which was a tenth of a search whose caches are cold.
 */
const squares = new Map<number, Squares>();
const MAX_SQUARES = 100_000;
/** A square's side: about a kilometre at resolution 7 (its cells' inradius), a seventh of the area each resolution finer. */
const squareDeg = (cellRes: number) => 0.01 * Math.sqrt(7) ** (7 - cellRes);

/** One resolution's squares, with their side and how many make a row of the globe. */
interface Squares {
  readonly side: number;
  readonly columns: number;
  readonly last: Map<number, Origin>;
}

function squaresOf(cellRes: number): Squares {
  let at = squares.get(cellRes);
  if (!at) {
    const side = squareDeg(cellRes);
    squares.set(cellRes, at = { side, columns: Math.ceil(361 / side), last: new Map() });
  }
  return at;
}

/** Row-major over the globe's squares: a small integer at resolution 7 and coarser. */
const squareKey = ({ side, columns }: Squares, lat: number, lng: number) => Math.floor((lat + 90) / side) * columns + Math.floor((lng + 180) / side);

/**
 * Origins found without latLngToCell: from their square (`hits`), or next to it (`near`, see
 * originNear). What tests read.
 */
export const squareStats = { hits: 0, near: 0 };

export function originAt(point: Point, cellRes: number, p: Unit = unitOf(point, cosLat(point.lat))): Origin {
  const at = squaresOf(cellRes);
  const byRes = at.last;
  const key = squareKey(at, point.lat, point.lng);
  const last = byRes.get(key);
  if (last !== undefined && holdsPoint(last, p)) {
    squareStats.hits++;
    return last;
  }
  const origin = originNear(byRes, key - at.columns - 1, at.columns, p, last) ?? originOf(latLngToCell(point.lat, point.lng, cellRes));
  if (byRes.size >= MAX_SQUARES) byRes.clear();
  byRes.set(key, origin);
  return origin;
}

/**
 * Makes a prepared origin the one of the square holding its centre, if that square has none: a
 * search from a square no search came from then finds its cell next door (originNear) rather
 * than by latLngToCell.
 */
function settle(origin: Origin): void {
  const at = squaresOf(origin.disc.res);
  const byRes = at.last;
  const key = squareKey(at, origin.disc.center.lat, origin.disc.center.lng);
  if (byRes.has(key) || byRes.size >= MAX_SQUARES) return;
  byRes.set(key, origin);
}

const holdsPoint = (origin: Origin, p: Unit) => origin.disc.edges !== undefined && insideEdges(origin.disc.edges, 0, p);

/**
 * The cell holding the point (inside its edges by a metre, as originAt requires) among the
 * origins of its square and the eight around it (`corner`: the key of the square one row and
 * column before) and the first rings around those origins, where computed; undefined if none.
 * A point whose square's origin does not hold it (a square spans a few cells) or that no search
 * came from yet mostly lies in or next to a cell a nearby search started from: that was 37% of
 * the bench's timed queries over a 100k metro (58% over the 1M region), each calling
 * latLngToCell, which cold cost five times a square's hit; with prepared origins holding their
 * centres' squares (settle), 1 of 1,000 over either.
 */
function originNear(byRes: Map<number, Origin>, corner: number, columns: number, p: Unit, own: Origin | undefined): Origin | undefined {
  let before: Origin | undefined;
  // Its own square first (the point crossed an edge of that square's origin), then the others.
  for (let i = -1; i < 9; i++) {
    const origin = i < 0 ? own : i === 4 ? undefined : byRes.get(corner + Math.floor(i / 3) * columns + (i % 3));
    if (origin === undefined || origin === before || (i >= 0 && origin === own)) continue;
    before = origin;
    if (i >= 0 && holdsPoint(origin, p)) { squareStats.near++; return origin; }
    const first = origin.rings[1];
    if (first === undefined) continue;
    for (let c = 0; c < first.cells.length; c++) {
      if (insideEdges(first.edges, 18 * c, p)) { squareStats.near++; return originOf(first.cells[c]!); }
    }
  }
  return undefined;
}

function ringGeometry(cell: string, origin: Origin, r: number): RingGeometry {
  if (r > CACHED_RINGS) return geometryOf(cell, ring(cell, r));
  const rings = origin.rings;
  while (rings.length <= r) { rings.push(geometryOf(cell, ring(cell, rings.length))); geometryStats.computed++; }
  return rings[r]!;
}

/** Ring geometries computed so far (by searches and by prepareOrigins): what tests read to see a search computed none. */
export const geometryStats = { computed: 0 };

/** The radius prepared origins cover: the nearby search's default (http/schemas.ts nearbyQuery). */
export const PREPARED_KM = 3;
/** Cells whose origins wait to be prepared; bounded like the origins themselves. */
const toPrepare = new Set<string>();
let preparing = false;
/** Longest a slice of preparing runs before yielding to the event loop, ms. */
const PREPARE_SLICE_MS = 2;

/**
 * Computes, in idle time, the ring geometry a search of PREPARED_KM from `cell` or its
 * neighbours needs. A search from an origin never seen computes it (gridRing, and the
 * discs of cells never seen) in the query: a 1M-driver region has thousands of origins,
 * and those first searches were the slowest percent. Called when a cell becomes occupied.
 */
export function prepareOrigins(cell: string): void {
  if (toPrepare.size >= MAX_ORIGINS) return;
  toPrepare.add(cell);
  if (preparing) return;
  preparing = true;
  setImmediate(prepareSome).unref();
}

function prepareSome(): void {
  const until = performance.now() + PREPARE_SLICE_MS;
  for (const cell of toPrepare) {
    toPrepare.delete(cell);
    for (const near of gridDisk(cell, 1)) prepareOrigin(near);
    if (performance.now() > until) break;
  }
  if (toPrepare.size > 0) setImmediate(prepareSome).unref(); else preparing = false;
}

/** Rings of `cell` out to the first a PREPARED_KM search from anywhere in the cell would not ask (it is measured to know). */
function prepareOrigin(cell: string): void {
  const origin = originOf(cell);
  settle(origin);
  for (let r = 0; r <= CACHED_RINGS; r++) {
    if (r > 0 && ringGeometry(cell, origin, r).innerKm - origin.disc.radiusKm > PREPARED_KM) return;
  }
}

/**
 * Offers a cell's eligible drivers within the radius to the search's top-k at once, when the
 * cell is at hand (active on this node); false when it is not, and the cell is asked instead.
 */
export type OfferCell = (cell: string, q: NearestQuery, best: TopK<DriverCopy>) => boolean;

/** An OfferCell over a region's askNow: the cell's `nearest.offer` query, answered only in process. */
export function offerByAskNow(askNow: (to: EntityRef, query: CellQuery) => { readonly value: unknown } | undefined): OfferCell {
  return (cell, q, best) =>
    askNow({ kind: 'cell', id: cell }, { type: 'nearest.offer', point: q.point, radiusKm: q.radiusKm, vehicleType: q.vehicleType, best }) !== undefined;
}

export interface SearchStats {
  rings: number;
  /** Cells asked (or offered at hand): not those left out as beyond the k-th distance when their turn came. */
  cellsAsked: number;
  /** Reachable cells the occupied filter left out (never held a driver: not asked). */
  cellsSkipped?: number;
  /** Set when the search stopped at `maxCells` before covering the radius. */
  truncated?: boolean;
}

/** A cell's answer: plain when the cell is at hand, a promise when it must be asked. */
export type CellAnswer = readonly Candidate[] | Promise<readonly Candidate[]>;

const isPromise = <T>(x: T | Promise<T>): x is Promise<T> => typeof (x as { then?: unknown } | undefined)?.then === 'function';

/**
 * The cells of ring r within reach (under the radius and the k-th distance found so far), and
 * each one's lower bound beside it, so a cell can be judged again when its turn comes.
 */
function reachableOf(q: NearestQuery, p: Unit, ring: RingGeometry, kthKm: number): { ringMin: number; reachable: string[]; bounds: number[] } {
  let ringMin = Number.POSITIVE_INFINITY;
  const reachable: string[] = [];
  const bounds: number[] = [];
  const { lat, lng } = q.point;
  const cos = cosLat(lat);
  for (let i = 0; i < ring.cells.length; i++) {
    // cellLowerBoundKm, with the cosines and edges at hand.
    const byDisc = haversineKm(lat, lng, cos, ring.lat[i]!, ring.lng[i]!, ring.cos[i]!) - ring.radiusKm[i]!;
    const bound = Math.max(0, byDisc, edgeBoundKm(ring.edges, 18 * i, p));
    ringMin = Math.min(ringMin, bound);
    if (bound <= q.radiusKm && bound <= kthKm) { reachable.push(ring.cells[i]!); bounds.push(bound); }
  }
  return { ringMin, reachable, bounds };
}

/** The cells of `ring` that `answered` names, in ring order, once each: a scan for a few, a set for many. */
function within(ring: readonly string[], answered: readonly string[]): readonly string[] {
  if (ring.length * answered.length <= 256) return ring.filter((c) => answered.includes(c));
  const named = new Set(answered);
  return ring.filter((c) => named.has(c));
}

function offerAll(best: TopK<DriverCopy>, answer: readonly Candidate[]): void {
  for (const c of answer) best.offer(c.distanceKm, c);
}

/**
 * Runs the ring search; `askCell` answers a cell's nearest query (a cell actor in the runtime,
 * or the cell's state at hand). With `limits.offer`, a cell at hand offers its drivers straight
 * to the search's one top-k instead (no list per cell, and the k-th distance found so far
 * prunes every later cell's walk); the cells it cannot offer at once are asked.
 */
export async function searchNearest(
  q: NearestQuery, cellRes: number, askCell: (cell: string) => CellAnswer,
  stats: SearchStats = { rings: 0, cellsAsked: 0 }, limits: SearchLimits = {},
): Promise<Candidate[]> {
  return (await searchFound(q, cellRes, askCell, stats, limits)).map(({ km, driver }) => ({ ...driver, distanceKm: km }));
}

/** A search's answer as the top-k holds it: each driver's copy as its cell holds it (not to be changed) and its distance. */
export type Found = Entry<DriverCopy>;

/**
 * searchNearest's answer without a Candidate per driver: copying each copy costs a tenth of a
 * search whose caches are cold, and a caller that builds its own view of a driver (the nearby
 * route) needs none.
 */
export async function searchFound(
  q: NearestQuery, cellRes: number, askCell: (cell: string) => CellAnswer,
  stats: SearchStats = { rings: 0, cellsAsked: 0 }, limits: SearchLimits = {},
): Promise<Found[]> {
  const p = unitOf(q.point, cosLat(q.point.lat));
  const origin = originAt(q.point, cellRes, p);
  const cell = origin.cell;
  const maxCells = limits.maxCells ?? Number.POSITIVE_INFINITY;
  let asked = 0;
  const best = takeTopK(q.k);
  // How far the point is from its cell's centre (see RingGeometry.innerKm).
  const from = origin.disc;
  const offsetKm = haversineKm(q.point.lat, q.point.lng, cosLat(q.point.lat), from.center.lat, from.center.lng, from.cos);
  for (let r = 0; ; r++) {
    const kthKm = best.bound;
    const geometry = ringGeometry(cell, origin, r);
    // Beyond reach as a whole: every cell's bound exceeds the radius or the k-th distance, as measuring would find.
    if (r > 0 && geometry.innerKm - offsetKm > Math.min(q.radiusKm, kthKm)) break;
    const { ringMin, reachable, bounds } = reachableOf(q, p, geometry, kthKm);
    if (ringMin > q.radiusKm || ringMin > kthKm) break;
    // One lookup per ring; what it answers is kept in ring order and never beyond the ring.
      const answered = limits.occupied?.(reachable);
    const toAsk = answered === undefined ? reachable : within(reachable, isPromise(answered) ? await answered : answered);
    if (asked + toAsk.length > maxCells) { stats.truncated = true; break; }
    stats.rings++;
    if (answered !== undefined) stats.cellsSkipped = (stats.cellsSkipped ?? 0) + reachable.length - toAsk.length;
    asked += toAsk.length;
    let pending: Promise<readonly Candidate[]>[] | undefined;
    let at = 0;
    for (const cell of toAsk) {
      while (reachable[at] !== cell) at++; // toAsk is in ring order: its bound is the next of its cell
      // Beyond the k-th distance the cells asked before it found: nothing in it can rank.
      if (bounds[at]! > best.bound) continue;
      stats.cellsAsked++;
      if (limits.offer?.(cell, q, best)) continue;
      const answer = askCell(cell);
      if (isPromise(answer)) (pending ??= []).push(answer); else offerAll(best, answer);
    }
    if (pending) for (const answer of await Promise.all(pending)) offerAll(best, answer);
    if (r > 1000) break; // a radius larger than a continent: stop rather than spin
  }
  const found = best.sorted();
  giveBack(best);
  return found;
}

/**
 * Spare top-ks, one per k, for the next search: making one (three arrays) was a twentieth of a
 * search. A search takes one and gives it back emptied, so one running meanwhile (an await on a
 * cell not at hand) takes another or makes a new one.
 */
const spareTopK = new Map<number, TopK<DriverCopy>>();

function takeTopK(k: number): TopK<DriverCopy> {
  const spare = spareTopK.get(k);
  if (!spare) return new TopK<DriverCopy>(k);
  spareTopK.delete(k);
  return spare;
}

function giveBack(best: TopK<DriverCopy>): void {
  if (spareTopK.size >= 64) return;
  best.clear();
  spareTopK.set(best.k, best);
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

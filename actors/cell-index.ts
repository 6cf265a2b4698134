// A cell's drivers, kept for O(1) updates and nearest queries that touch tens of
// drivers instead of the whole cell.
//
// Drivers sit in a grid of GRID_DEG x GRID_DEG buckets (about 110 m by 85 m in
// New York); a query walks buckets outward from its point, inside the box of buckets
// the cell ever filled, and stops where they lie wholly beyond the radius or the
// k-th best distance so far (see #walkRings). Both prunings use a
// lower bound of the great-circle distance; ranking and the radius test use the
// exact `distanceKm`, so answers equal a brute-force scan. A cell holding few drivers
// is scanned whole instead: cheaper than walking its empty buckets.
//
// Why one packed array. A search looks at tens of drivers it will not keep, in a few
// cells, per query, and between queries a node does other work that evicts them from the
// CPU's caches: what it reads must be few cache lines, read in order. So what a search
// reads of a driver (position, when it was seen, its tag and whether its rules need its
// copy, slot) sits in one Float64Array, 40 bytes a driver, in lanes, one per tag (a
// vehicle type's available drivers), each sorted by bucket row by row (a bucket, and a row
// of buckets, is one run of memory), under a table of where each lane's buckets start. A
// search for one vehicle type reads its lane only, and a driver no search answers (busy,
// offline) has no entry at all: a query reads about half the entries it would in one
// array of every driver. A driver's copy is read only when its entry passed the tag, box
// and freshness tests and its rules need more (a maintenance window, say). A driver that
// moves within its bucket is updated in place; one that changes bucket or tag, comes or
// goes leaves a dead entry and is appended past the sorted part (scanned whole by every
// search), until enough did that the array is sorted again (O(drivers), every few dozen
// moves): a cell of thousands of drivers still sorts in tens of microseconds. A search
// walks square rings of buckets until it holds k drivers, then the rest of its reach row
// by row, each row's buckets within reach as one run of entries.
//
// Why mutate in place. The cell reducer must look pure: `(state, message) ->
// state'`. Copying the driver map on every update costs O(drivers in the cell);
// a persistent map would still copy tree nodes and the grid per update. Instead
// the index is mutated and each CellState carries the `version` it saw. That is
// safe because a cell's state is ephemeral (never journaled, replayed or
// snapshotted), and one actor runs handle and query on one thread, always on the
// latest state. The one exception the runtime has: it may drop an outcome and
// keep the previous state (a redelivered command found in the journal, a reducer
// that threw), and a query answered from the last state an actor returned may
// read the previous state while the actor awaits storage for the next one.
// Every step keeps what it changed (each driver before and after), so the index
// moves between the last step's two versions, either way, as it is asked; any
// other state fails loudly (`StaleCellState`) instead of reading drivers it
// never held.

import type { DriverCopy } from './cell.ts';
import { cosLat, haversineKm, type Point } from './geo.ts';
import { idHash, type TopK } from './top-k.ts';

/** Bucket side in degrees of latitude and of longitude. */
export const GRID_DEG = 0.001;
const KM_PER_DEG = 6371.0088 * Math.PI / 180;
/** Slack on every lower bound: covers sin(x) <= x over a degree and float rounding at bucket edges. */
const SLACK = 0.999;
/**
 * Most starts a cell's table holds, lanes times buckets (256 KiB); a cell spread wider (the
 * antimeridian) or holding many vehicle types is one bucket per lane.
 */
const MAX_STARTS = 1 << 16;
/**
 * Entries past the sorted part (and dead ones) a cell tolerates before sorting again: this many,
 * or a sixteenth of its entries. Every search scans them all, in every cell it asks; a sort of
 * a few hundred entries costs microseconds.
 */
const UNSORTED_MIN = 32;
const unsortedAllowed = (live: number) => Math.max(UNSORTED_MIN, live / 16);
/** A cell holding at most this many drivers is scanned whole (a few ns each) instead of walking its buckets. */
const SCAN_AT_MOST = 48;
const NONE = -1;
/**
 * An entry's fields: ENTRY numbers per driver. KEY is the tag times two, plus one when a search
 * must check its copy. SLOT holds the slot and its driver's id hash (see slotField).
 */
const ENTRY = 5;
const LAT = 0, LNG = 1, SEEN = 2, KEY = 3, SLOT = 4;
/**
 * Slots a cell can number (2^21; a double holds this times 2^32 exactly). An entry's SLOT field
 * is the slot plus SLOTS times its driver's idHash as an unsigned number: a search hands the
 * top-k the hash from the entry it is reading, and reads the copy only for a driver the top-k
 * admits. Read from arrays beside the entries, each was a cache line of its own per driver
 * measured, and a search measures twice as many drivers as it keeps.
 */
const SLOTS = 2 ** 21;
const slotField = (slot: number, hash: number) => (hash >>> 0) * SLOTS + slot;
const hashOfField = (field: number) => Math.floor(field / SLOTS) | 0;
const slotOfField = (field: number) => field - Math.floor(field / SLOTS) * SLOTS;
/** A driver's tag when no search answers it (see CellIndex's `tagOf`): it has no entry. */
export const UNTAGGED = -1;
/** The KEY of a dead entry. */
const DEAD = -1;
const tagOfKey = (key: number) => key >> 1;

export class StaleCellState extends Error {}

interface Change {
  readonly id: string;
  /** What the driver was before the step (undefined: absent). */
  readonly before: DriverCopy | undefined;
  /** What the step left (undefined: absent); set when the step closes (declared from the start: one shape, no extra store). */
  after: DriverCopy | undefined;
}

/**
 * The changes of a step that changed nothing, shared: a cell takes a step per copy, and a new
 * empty array each, grown to room for 17 by its first push, was most of what a step allocated.
 */
const NO_CHANGES: Change[] = Object.freeze([]) as unknown as Change[];

/** One search's question, handed down the walk (one object per cell asked). */
interface Search {
  readonly point: Point;
  readonly radiusKm: number;
  readonly accept: (d: DriverCopy) => boolean;
  readonly best: TopK<DriverCopy>;
  readonly tag: number;
  /** Drivers seen before this are never answered (see `nearest`). */
  readonly seenSince: number;
  /** km per degree of latitude and (at the most poleward latitude in reach) of longitude, less the slack. */
  readonly kmLat: number;
  readonly kmLng: number;
  /** cosLat(point.lat), for haversineKm. */
  readonly cos: number;
}

const gx = (lng: number) => Math.floor(lng / GRID_DEG);
const gy = (lat: number) => Math.floor(lat / GRID_DEG);

export class CellIndex {
  /**
   * A driver's tag, kept in its entry so a search can skip drivers it cannot answer without
   * reading their copies: UNTAGGED (never answered, e.g. not available) or a small number a
   * search asks for (its vehicle type). Only a pre-filter: `accept` decides.
   */
  readonly #tagOf: (d: DriverCopy) => number;
  /**
   * Whether a search must ask `accept` about this driver; a driver it says no for is answered
   * on its tag and `seenAt` alone (its rules need nothing else), without reading its copy.
   */
  readonly #checkOf: (d: DriverCopy) => boolean;
  /** driverId -> slot. */
  readonly #ids = new Map<string, number>();
  /** Per slot: the copy (undefined: a free slot), and where its entry is (NONE: untagged, no entry). */
  #copies: (DriverCopy | undefined)[] = [];
  #pos = new Int32Array(8);
  /** Per slot: idHash of its driver's id, for the search's top-k (it then need not read the copy). */
  #hashes = new Int32Array(8);
  /** Slots in use or freed so far, and the freed ones. */
  #high = 0;
  #free: number[] = [];
  /** Entries: [0, #sorted) by lane and bucket, then appended ones up to #length; #dead of all are dead, #live are not. */
  #entries = new Float64Array(8 * ENTRY);
  #live = 0;
  /** The lane and bucket (its key in #starts) of each entry, while #sort runs. */
  #scratch = new Int32Array(0);
  #length = 0;
  #sorted = 0;
  #dead = 0;
  /**
   * The grid of the sorted part: w x h buckets from bucket (x0, y0); the entries of bucket b in
   * lane l start at #starts[l * w * h + b]. #lanes: a tag's lane.
   */
  #x0 = 0; #y0 = 0; #w = 1; #h = 1;
  #starts = new Int32Array(1);
  #lanes = new Map<number, number>();
  #version = 0;
  /** The version before the last step, and the last version handed out (versions are never reused). */
  #previous = 0;
  #clock = 0;
  #open = false;
  /** The changes of the last step (one per driver once it closes), or of the open step. */
  #undo: Change[] = NO_CHANGES;
  #undoable = false;
  /** Set while the last step is rolled back: `#latest` is the version redoing it gives. */
  #redoable = false;
  #latest = 0;

  constructor(tagOf: (d: DriverCopy) => number = () => 0, checkOf: (d: DriverCopy) => boolean = () => true) {
    this.#tagOf = tagOf;
    this.#checkOf = checkOf;
  }

  get version(): number {
    return this.#version;
  }

  /** Makes the index show `version`: the current one, or the one before (rolls the last step back). */
  checkout(version: number): void {
    if (this.#open) this.#rollBack(this.#version); // a step that threw half-way
    if (version === this.#version) return;
    if (version === this.#previous && this.#undoable) return this.#rollBack(version);
    if (version === this.#latest && this.#redoable) return this.#redo();
    throw new StaleCellState(`cell state version ${version} is gone (index at ${this.#version})`);
  }

  /** Runs `change` as one step from `version`; answers the version of the result (the same if nothing changed). */
  step<A = undefined>(version: number, change: (index: CellIndex, arg: A) => void, arg?: A): number {
    this.checkout(version);
    this.#undo = NO_CHANGES;
    this.#redoable = false; // a step from the previous version drops the rolled-back one for good
    this.#open = true;
    change(this, arg as A);
    this.#open = false;
    this.#undo = this.#closed(this.#undo);
    // Only the last step can be undone: the runtime never hands back an older state.
    this.#undoable = this.#undo.length > 0;
    if (!this.#undoable) return this.#version;
    this.#previous = this.#version;
    return (this.#version = this.#latest = ++this.#clock);
  }

  /** One change per driver: its value before the step and after it. */
  #closed(changes: Change[]): Change[] {
    if (changes.length === 1) { // one copy in, the common step: no map
      const c = changes[0]!;
      c.after = this.get(c.id);
      return c.before === c.after ? NO_CHANGES : changes;
    }
    const first = new Map<string, Change>();
    for (const c of changes) if (!first.has(c.id)) first.set(c.id, { id: c.id, before: c.before, after: undefined });
    for (const c of first.values()) c.after = this.get(c.id);
    return [...first.values()].filter((c) => c.before !== c.after);
  }

  get size(): number {
    return this.#ids.size;
  }

  get(id: string): DriverCopy | undefined {
    const slot = this.#ids.get(id);
    return slot === undefined ? undefined : this.#copies[slot];
  }

  *values(): IterableIterator<DriverCopy> {
    for (let s = 0; s < this.#high; s++) {
      const d = this.#copies[s];
      if (d) yield d;
    }
  }

  set(driver: DriverCopy): void {
    const s = this.#ids.get(driver.driverId);
    this.#record(driver.driverId, s === undefined ? undefined : this.#copies[s]);
    this.#put(driver, s);
  }

  delete(id: string): void {
    const s = this.#ids.get(id);
    if (s === undefined) return;
    this.#record(id, this.#copies[s]);
    this.#remove(id, s);
  }

  /**
   * How many tagged drivers (those searches answer) were seen at `seenSince` or later and pass
   * `accept`, asked only of drivers `checkOf` flags: one pass over the entries, reading no copy
   * of the others. A cell's supply is this; walking every copy for it was a twentieth of an
   * embedded node's CPU per booking, its quote's surge counting a downtown cell.
   */
  countTagged(seenSince: number, accept: (d: DriverCopy) => boolean): number {
    const entries = this.#entries;
    let n = 0;
    for (let i = 0; i < this.#length * ENTRY; i += ENTRY) {
      const key = entries[i + KEY]!;
      if (key < 0 || entries[i + SEEN]! < seenSince) continue;
      if ((key & 1) !== 0 && !accept(this.#copies[slotOfField(entries[i + SLOT]!)]!)) continue;
      n++;
    }
    return n;
  }

  /**
   * Offers to `best` every driver within `radiusKm` of `point`, seen at `seenSince` or later,
   * that `accept` lets through (asked only of drivers `checkOf` flags) and that could still
   * rank, walking buckets outward until none can. With `tag`, only drivers of that tag are
   * looked at; without it, every tagged one.
   */
  nearest(
    point: Point, radiusKm: number, accept: (d: DriverCopy) => boolean, best: TopK<DriverCopy>, tag?: number, seenSince = -Infinity,
  ): void {
    if (this.#live === 0) return;
    // Longitude degrees shrink toward the poles: bound with the most poleward latitude
    // a driver within 2 radii can have (one farther is beyond the radius by latitude alone).
    const cap = Math.min(89.9, Math.abs(point.lat) + 2 * radiusKm / KM_PER_DEG);
    const search: Search = {
      point, radiusKm, accept, best, tag: tag ?? UNTAGGED, seenSince, kmLat: KM_PER_DEG * SLACK, kmLng: KM_PER_DEG * Math.cos(cap * Math.PI / 180) * SLACK,
      cos: cosLat(point.lat),
    };
    if (this.#live <= SCAN_AT_MOST || this.#w * this.#h === 1) return this.#scan(0, this.#length, search);
    if (tag === undefined) {
      for (let lane = 0; lane < this.#lanes.size; lane++) this.#walkRings(search, lane * this.#w * this.#h);
    } else {
      const lane = this.#lanes.get(tag);
      if (lane !== undefined) this.#walkRings(search, lane * this.#w * this.#h);
    }
    this.#scan(this.#sorted, this.#length, search);
  }

  /**
   * Offers the drivers of entries [from, to) that pass the tag, the box test against the bound
   * so far, the time they were seen, the rules (when flagged) and the radius.
   */
  #scan(from: number, to: number, q: Search): void {
    const entries = this.#entries;
    const { point, kmLat, kmLng, best } = q;
    for (let i = from * ENTRY; i < to * ENTRY; i += ENTRY) {
      const key = entries[i + KEY]!;
      if (key < 0 || (q.tag !== UNTAGGED && tagOfKey(key) !== q.tag)) continue;
      const limit = Math.min(q.radiusKm, best.bound);
      const lat = entries[i + LAT]!;
      const lng = entries[i + LNG]!;
      if (Math.abs(lat - point.lat) * kmLat > limit || Math.abs(lng - point.lng) * kmLng > limit) continue;
      if (entries[i + SEEN]! < q.seenSince) continue;
      // The very number distanceKm(point, d) gives.
      const km = haversineKm(point.lat, point.lng, q.cos, lat, lng, cosLat(lat));
      if (km > q.radiusKm) continue;
      const field = entries[i + SLOT]!;
      const hash = hashOfField(field);
      if (!best.admits(km, hash)) continue;
      const d = this.#copies[slotOfField(field)]!;
      if ((key & 1) !== 0 && !q.accept(d)) continue;
      best.offer(km, d, hash);
    }
  }

  /** Buckets bx0..bx1 of row `by` of a lane (its buckets from `lane`) of the sorted part: one run of entries. */
  #row(lane: number, by: number, bx0: number, bx1: number, q: Search): void {
    const b = lane + by * this.#w;
    this.#scan(this.#starts[b + bx0]!, this.#starts[b + bx1 + 1]!, q);
  }

  /**
   * The buckets of one lane (its buckets from `lane`) that can hold anything within the bound:
   * square rings around the point's bucket until the top-k is full (the bound is unknown
   * before), then row by row outward, each row's buckets within reach left and right of the
   * square walked so far as one run of entries (a row of buckets is one run of memory). Rows
   * cost a lookup in the table of starts each; rings of ever more single buckets cost more.
   * The bound only shrinks, so a bucket skipped as out of reach stays out of reach.
   */
  #walkRings(q: Search, lane: number): void {
    const fx = q.point.lng / GRID_DEG;
    const fy = q.point.lat / GRID_DEG;
    const x = Math.floor(fx) - this.#x0;
    const y = Math.floor(fy) - this.#y0;
    const w = this.#w;
    const h = this.#h;
    // Ring r is at least r - 1 buckets away, plus the point's distance to its own bucket's nearest side.
    const inset = Math.min(Math.min(fx - Math.floor(fx), Math.ceil(fx) - fx) * q.kmLng, Math.min(fy - Math.floor(fy), Math.ceil(fy) - fy) * q.kmLat);
    const kmPerRing = Math.min(q.kmLat, q.kmLng) * GRID_DEG;
    const first = Math.max(0, -x, x - (w - 1), -y, y - (h - 1));
    const last = Math.max(x, w - 1 - x, y, h - 1 - y);
    // Rings below `first` lie wholly outside the box: the square walked is `first` rings wide at once.
    let r = first;
    if (r > 0 && (r - 1) * kmPerRing + inset * GRID_DEG > Math.min(q.radiusKm, q.best.bound)) return;
    // Rings up to `square` at once, row by row: each row one run and one lookup, where a ring's
    // sides cost a lookup per bucket (and rows were looked up once per ring, rings apart).
    const square = Math.min(last, Math.max(r, this.#squareFor(q, lane, kmPerRing)));
    if (square > r) {
      const left = Math.max(x - square, 0);
      const right = Math.min(x + square, w - 1);
      for (let by = Math.max(y - square, 0); by <= Math.min(y + square, h - 1); by++) this.#row(lane, by, left, right, q);
      r = square;
    } else {
      this.#ring(lane, x, y, r, q);
    }
    // Rings 0..r walked; more until the top-k is full (its bound unknown before).
    while (q.best.bound === Number.POSITIVE_INFINITY && r < last) {
      r++;
      if ((r - 1) * kmPerRing + inset * GRID_DEG > q.radiusKm) return;
      this.#ring(lane, x, y, r, q);
    }
    if (r >= last) return;
    this.#rowsOutward(q, lane, x, y, fx - Math.floor(fx), fy - Math.floor(fy), r);
  }

  /**
   * Half the side of a square of buckets (from the point's bucket) that should hold twice the
   * drivers the top-k still needs, at the lane's mean density over the box, and no wider than
   * the radius: 0 when the top-k is full (its bound decides). A guess: rings go on past it.
   */
  #squareFor(q: Search, lane: number, kmPerRing: number): number {
    const need = q.best.k - q.best.size;
    if (need <= 0) return 0;
    const buckets = this.#w * this.#h;
    const count = this.#starts[lane + buckets]! - this.#starts[lane]!;
    if (count <= 0) return 0;
    return Math.min(Math.floor(Math.sqrt((2 * need * buckets) / count) / 2), Math.ceil(q.radiusKm / kmPerRing) + 1);
  }

  /** Ring r of buckets around bucket (x, y), clipped to the box: its top and bottom rows as runs, its sides bucket by bucket. */
  #ring(lane: number, x: number, y: number, r: number, q: Search): void {
    if (r === 0) return this.#row(lane, y, x, x, q);
    const left = Math.max(x - r, 0);
    const right = Math.min(x + r, this.#w - 1);
    if (y - r >= 0) this.#row(lane, y - r, left, right, q);
    if (y + r < this.#h) this.#row(lane, y + r, left, right, q);
    for (let by = Math.max(y - r + 1, 0); by <= Math.min(y + r - 1, this.#h - 1); by++) {
      if (x - r >= 0) this.#row(lane, by, x - r, x - r, q);
      if (x + r < this.#w) this.#row(lane, by, x + r, x + r, q);
    }
  }

  /**
   * Rows y, y ± 1, y ± 2 … while a row is within reach; in each, the buckets whose horizontal gap
   * is within reach, less the square of `walked` rings around (x, y) that #walkRings covered.
   * `ox`, `oy`: the point's offset within its bucket, in buckets.
   */
  #rowsOutward(q: Search, lane: number, x: number, y: number, ox: number, oy: number, walked: number): void {
    const kmRow = q.kmLat * GRID_DEG;
    const kmColumn = q.kmLng * GRID_DEG;
    const w = this.#w;
    for (let d = 0; y + d < this.#h || y - d >= 0; d++) {
      const reach = Math.min(q.radiusKm, q.best.bound);
      // Row y + d begins d - oy buckets above the point; row y - d ends d - 1 + oy below it.
      const above = d === 0 ? 0 : (d - oy) * kmRow;
      const below = d === 0 ? 0 : (d - 1 + oy) * kmRow;
      if (above > reach && below > reach) return;
      // Column x + c begins c - ox buckets east of the point; column x - c ends c - 1 + ox west of it.
      const left = Math.max(0, x - Math.floor(reach / kmColumn + 1 - ox));
      const right = Math.min(w - 1, x + Math.floor(reach / kmColumn + ox));
      const beside = d <= walked ? walked : -1;
      if (above <= reach && y + d >= 0 && y + d < this.#h) this.#rowBeside(lane, y + d, left, right, beside, x, q);
      if (d > 0 && below <= reach && y - d >= 0 && y - d < this.#h) this.#rowBeside(lane, y - d, left, right, beside, x, q);
    }
  }

  /** Buckets left..right of row `by` (within the box), less x - walked..x + walked when walked >= 0. */
  #rowBeside(lane: number, by: number, left: number, right: number, walked: number, x: number, q: Search): void {
    const end = walked < 0 ? right : Math.min(right, x - walked - 1);
    if (left <= end) this.#row(lane, by, left, end, q);
    if (walked < 0) return;
    const start = Math.max(left, x + walked + 1);
    if (start <= right) this.#row(lane, by, start, right, q);
  }

  #record(id: string, before: DriverCopy | undefined): void {
    if (!this.#open) throw new Error('cell index changed outside a step');
    const change: Change = { id, before, after: undefined };
    // Most steps change one driver: an array of exactly one (push on the shared empty one would throw).
    if (this.#undo.length === 0) this.#undo = [change]; else this.#undo.push(change);
  }

  #rollBack(version: number): void {
    for (let i = this.#undo.length - 1; i >= 0; i--) {
      const { id, before } = this.#undo[i]!;
      if (before) this.#put(before); else this.#remove(id);
    }
    // A closed step can be redone (its state may still be handed in); a half-done one cannot.
    this.#redoable = !this.#open && this.#version === this.#latest && this.#undo.length > 0;
    if (!this.#redoable) this.#undo = NO_CHANGES;
    this.#open = false;
    this.#undoable = false;
    this.#version = version;
  }

  #redo(): void {
    for (const { id, after } of this.#undo) {
      if (after) this.#put(after); else this.#remove(id);
    }
    this.#redoable = false;
    this.#undoable = true;
    this.#version = this.#latest;
  }

  #put(driver: DriverCopy, slot = this.#ids.get(driver.driverId)): void {
    let s = slot;
    if (s === undefined) {
      s = this.#free.pop() ?? this.#newSlot();
      this.#ids.set(driver.driverId, s);
      this.#pos[s] = NONE;
      this.#hashes[s] = idHash(driver.driverId);
    }
    this.#copies[s] = driver;
    const tag = this.#tagOf(driver);
    const at = this.#pos[s]!;
    if (at !== NONE && tag !== UNTAGGED && this.#stays(at, driver, tag)) return this.#write(at, driver, s, tag);
    if (at !== NONE) this.#kill(s);
    if (tag !== UNTAGGED) this.#append(s, driver, tag);
  }

  /** Whether entry i can take the driver's new copy in place: past the sorted part (scanned whole), or the same lane and bucket. */
  #stays(i: number, driver: DriverCopy, tag: number): boolean {
    if (i >= this.#sorted) return true;
    return tagOfKey(this.#entries[i * ENTRY + KEY]!) === tag && this.#bucketOf(driver.lat, driver.lng) === this.#bucketAt(i);
  }

  #remove(id: string, slot = this.#ids.get(id)): void {
    const s = slot;
    if (s === undefined) return;
    this.#ids.delete(id);
    if (this.#pos[s]! !== NONE) this.#kill(s);
    this.#copies[s] = undefined;
    this.#free.push(s);
    if (this.#ids.size === 0) this.#reset();
  }

  /** Empty: forget the box, the slots and the entries (the next drivers may be elsewhere). */
  #reset(): void {
    this.#copies = [];
    this.#high = 0;
    this.#free = [];
    this.#length = this.#sorted = this.#dead = this.#live = 0;
    this.#w = this.#h = 1;
    this.#starts = new Int32Array(1);
    this.#lanes = new Map();
  }

  /** A new slot at the end, doubling `#pos` when full. */
  #newSlot(): number {
    if (this.#high >= SLOTS) throw new RangeError(`a cell holds at most ${SLOTS} drivers`);
    const s = this.#high++;
    if (s >= this.#pos.length) {
      const pos = new Int32Array(this.#pos.length * 2);
      pos.set(this.#pos);
      this.#pos = pos;
      const hashes = new Int32Array(this.#hashes.length * 2);
      hashes.set(this.#hashes);
      this.#hashes = hashes;
    }
    return s;
  }

  /** The bucket of the sorted part's grid a position falls in (NONE: outside the box). */
  #bucketOf(lat: number, lng: number): number {
    if (this.#w * this.#h === 1) return 0;
    const bx = gx(lng) - this.#x0;
    const by = gy(lat) - this.#y0;
    return bx >= 0 && bx < this.#w && by >= 0 && by < this.#h ? by * this.#w + bx : NONE;
  }

  /** The bucket of entry i (read from the entry: the copy object is not touched). */
  #bucketAt(i: number): number {
    return this.#bucketOf(this.#entries[i * ENTRY + LAT]!, this.#entries[i * ENTRY + LNG]!);
  }

  #write(i: number, d: DriverCopy, s: number, tag: number): void {
    const at = i * ENTRY;
    this.#entries[at + LAT] = d.lat;
    this.#entries[at + LNG] = d.lng;
    this.#entries[at + SEEN] = d.seenAt;
    this.#entries[at + KEY] = tag * 2 + (this.#checkOf(d) ? 1 : 0);
    this.#entries[at + SLOT] = slotField(s, this.#hashes[s]!);
  }

  /** Marks slot s's entry dead (its driver changed bucket or tag, became untagged, or left). */
  #kill(s: number): void {
    this.#entries[this.#pos[s]! * ENTRY + KEY] = DEAD;
    this.#pos[s] = NONE;
    this.#dead++;
    this.#live--;
  }

  /** Enters slot s past the sorted part; sorts again once too many entries are unsorted or dead. */
  #append(s: number, d: DriverCopy, tag: number): void {
    if (this.#length * ENTRY >= this.#entries.length) {
      const entries = new Float64Array(Math.max(this.#entries.length * 2, 8 * ENTRY));
      entries.set(this.#entries.subarray(0, this.#length * ENTRY));
      this.#entries = entries;
    }
    this.#pos[s] = this.#length;
    this.#write(this.#length++, d, s, tag);
    this.#live++;
    const unsorted = this.#length - this.#sorted + this.#dead;
    if (unsorted > unsortedAllowed(this.#live)) this.#sort();
  }

  /**
   * Sorts the live entries by lane and bucket (a counting sort) over a grid that fits them now,
   * with no entry dead or unsorted left: one bucket per lane when lanes times buckets would pass
   * MAX_STARTS.
   */
  #sort(): void {
    // From the entries alone (positions side by side), not the copies: a sort reads one run of memory.
    const from = this.#entries;
    const length = this.#length;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    const lanes = new Map<number, number>();
    for (let i = 0; i < length * ENTRY; i += ENTRY) {
      const key = from[i + KEY]!;
      if (key === DEAD) continue;
      const tag = tagOfKey(key);
      if (!lanes.has(tag)) lanes.set(tag, lanes.size);
      const x = gx(from[i + LNG]!), y = gy(from[i + LAT]!);
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
    const gridded = (x1 - x0 + 1) * (y1 - y0 + 1) * lanes.size <= MAX_STARTS;
    const w = gridded ? x1 - x0 + 1 : 1;
    const buckets = gridded ? w * (y1 - y0 + 1) : 1;
    const keys = Math.max(1, lanes.size) * buckets;
    // The table of the last sort when it fits (the box and lanes rarely change between sorts):
    // it is most of what a sort of a few dozen drivers costs, lanes times buckets long.
    const starts = this.#starts.length === keys + 1 ? this.#starts.fill(0) : new Int32Array(keys + 1);
    if (this.#scratch.length < length) this.#scratch = new Int32Array(Math.max(length, this.#scratch.length * 2));
    const keyOf = this.#scratch;
    for (let e = 0; e < length; e++) {
      const i = e * ENTRY;
      const key = from[i + KEY]!;
      if (key === DEAD) continue;
      const b = gridded ? (gy(from[i + LAT]!) - y0) * w + (gx(from[i + LNG]!) - x0) : 0;
      const k = lanes.get(tagOfKey(key))! * buckets + b;
      keyOf[e] = k;
      starts[k + 1]!++;
    }
    for (let k = 0; k < keys; k++) starts[k + 1]! += starts[k]!;
    // Into a new array with room for the appends until the next sort, each entry copied as it is.
    // Not kept as a spare: a second array per cell was memory per driver held for nothing
    // between sorts, a new one is a small allocation per sort.
    const live = this.#live;
    const to = new Float64Array((live + Math.ceil(unsortedAllowed(live)) + 1) * ENTRY);
    // Each key's start, moved along as its entries are placed: after, starts[k] is where k + 1
    // starts, and one shift gives the table back.
    for (let e = 0; e < length; e++) {
      const i = e * ENTRY;
      if (from[i + KEY]! === DEAD) continue;
      const at = starts[keyOf[e]!]!++;
      for (let f = 0; f < ENTRY; f++) to[at * ENTRY + f] = from[i + f]!;
      this.#pos[slotOfField(from[i + SLOT]!)] = at;
    }
    this.#x0 = x0; this.#y0 = y0;
    this.#w = w; this.#h = gridded ? y1 - y0 + 1 : 1;
    this.#entries = to;
    starts.copyWithin(1, 0, keys);
    starts[0] = 0;
    this.#starts = starts;
    this.#lanes = lanes;
    this.#length = this.#sorted = live;
    this.#dead = 0;
  }
}

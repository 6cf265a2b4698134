// A cell's drivers, kept for O(1) updates and nearest queries that touch tens of
// drivers instead of the whole cell.
//
// Drivers sit in a grid of GRID_DEG x GRID_DEG buckets (about 110 m by 85 m in
// New York); a query walks square rings of buckets outward from its point, inside
// the box of buckets the cell ever filled, and stops at the first ring that lies
// wholly beyond the radius or the k-th best distance so far. Both prunings use a
// lower bound of the great-circle distance; ranking and the radius test use the
// exact `distanceKm`, so answers equal a brute-force scan.
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
import { distanceKm, type Point } from './geo.ts';
import type { TopK } from './top-k.ts';

/** Bucket side in degrees of latitude and of longitude. */
export const GRID_DEG = 0.001;
const KM_PER_DEG = 6371.0088 * Math.PI / 180;
/** Slack on every lower bound: covers sin(x) <= x over a degree and float rounding at bucket edges. */
const SLACK = 0.999;
/** A cell whose buckets span wider than this (the antimeridian) is scanned whole. */
const MAX_SPAN = 1 / GRID_DEG;

export class StaleCellState extends Error {}

interface Slot {
  driver: DriverCopy;
  key: number;
  /** Position in its bucket, for O(1) removal. */
  pos: number;
}

interface Change {
  readonly id: string;
  /** What the driver was before the step (undefined: absent). */
  readonly before: DriverCopy | undefined;
  /** What the step left (undefined: absent); set when the step closes. */
  after?: DriverCopy | undefined;
}

const gx = (lng: number) => Math.floor(lng / GRID_DEG);
const gy = (lat: number) => Math.floor(lat / GRID_DEG);
// Small-integer keys (V8 hashes them fastest). They repeat every 2^15 buckets, farther apart
// than any cell walked by rings (MAX_SPAN); a wider cell is scanned whole, where shared buckets do no harm.
const keyOf = (x: number, y: number) => ((y & 0x7fff) << 15) | (x & 0x7fff);

export class CellIndex {
  readonly #slots = new Map<string, Slot>();
  readonly #buckets = new Map<number, Slot[]>();
  // Box of buckets ever filled since the index was last empty.
  #minX = Infinity; #maxX = -Infinity; #minY = Infinity; #maxY = -Infinity;
  #version = 0;
  /** The version before the last step, and the last version handed out (versions are never reused). */
  #previous = 0;
  #clock = 0;
  #open = false;
  /** The changes of the last step (one per driver once it closes), or of the open step. */
  #undo: Change[] = [];
  #undoable = false;
  /** Set while the last step is rolled back: `#latest` is the version redoing it gives. */
  #redoable = false;
  #latest = 0;

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
  step(version: number, change: (index: CellIndex) => void): number {
    this.checkout(version);
    this.#undo = [];
    this.#redoable = false; // a step from the previous version drops the rolled-back one for good
    this.#open = true;
    change(this);
    this.#open = false;
    this.#undo = this.#closed(this.#undo);
    // Only the last step can be undone: the runtime never hands back an older state.
    this.#undoable = this.#undo.length > 0;
    if (!this.#undoable) return this.#version;
    this.#previous = this.#version;
    return (this.#version = this.#latest = ++this.#clock);
  }

  /** One change per driver: its value before the step and after it. */
  #closed(changes: readonly Change[]): Change[] {
    const first = new Map<string, Change>();
    for (const c of changes) if (!first.has(c.id)) first.set(c.id, { id: c.id, before: c.before });
    for (const c of first.values()) c.after = this.#slots.get(c.id)?.driver;
    return [...first.values()].filter((c) => c.before !== c.after);
  }

  get size(): number {
    return this.#slots.size;
  }

  get(id: string): DriverCopy | undefined {
    return this.#slots.get(id)?.driver;
  }

  *values(): IterableIterator<DriverCopy> {
    for (const slot of this.#slots.values()) yield slot.driver;
  }

  set(driver: DriverCopy): void {
    this.#record(driver.driverId);
    this.#put(driver);
  }

  delete(id: string): void {
    if (!this.#slots.has(id)) return;
    this.#record(id);
    this.#remove(id);
  }

  /**
   * Offers to `best` every driver within `radiusKm` of `point` that `accept` lets through
   * and that could still rank, walking buckets outward until none can.
   */
  nearest(point: Point, radiusKm: number, accept: (d: DriverCopy) => boolean, best: TopK<DriverCopy>): void {
    if (this.#slots.size === 0) return;
    // Longitude degrees shrink toward the poles: bound with the most poleward latitude
    // a driver within 2 radii can have (one farther is beyond the radius by latitude alone).
    const cap = Math.min(89.9, Math.abs(point.lat) + 2 * radiusKm / KM_PER_DEG);
    const kmLat = KM_PER_DEG * SLACK;
    const kmLng = KM_PER_DEG * Math.cos(cap * Math.PI / 180) * SLACK;
    const visit = (bucket: Slot[]) => {
      for (const { driver: d } of bucket) {
        const limit = Math.min(radiusKm, best.bound);
        if (Math.abs(d.lat - point.lat) * kmLat > limit || Math.abs(d.lng - point.lng) * kmLng > limit) continue;
        if (!accept(d)) continue;
        const km = distanceKm(point, d);
        if (km <= radiusKm) best.offer(km, d);
      }
    };
    if (this.#maxX - this.#minX > MAX_SPAN || this.#maxY - this.#minY > MAX_SPAN) {
      for (const bucket of this.#buckets.values()) visit(bucket);
      return;
    }
    this.#walkRings(gx(point.lng), gy(point.lat), Math.min(kmLat, kmLng) * GRID_DEG, () => Math.min(radiusKm, best.bound), visit);
  }

  /** Square rings of buckets around (x, y), clipped to the filled box, while a ring can hold anything within `limit()`. */
  #walkRings(x: number, y: number, kmPerRing: number, limit: () => number, visit: (bucket: Slot[]) => void): void {
    const first = Math.max(0, this.#minX - x, x - this.#maxX, this.#minY - y, y - this.#maxY);
    const last = Math.max(x - this.#minX, this.#maxX - x, y - this.#minY, this.#maxY - y);
    const at = (bx: number, by: number) => {
      if (bx < this.#minX || bx > this.#maxX || by < this.#minY || by > this.#maxY) return;
      const bucket = this.#buckets.get(keyOf(bx, by));
      if (bucket) visit(bucket);
    };
    for (let r = first; r <= last; r++) {
      // Every point of ring r is at least r - 1 whole buckets away along one axis.
      if (r > 0 && (r - 1) * kmPerRing > limit()) return;
      if (r === 0) { at(x, y); continue; }
      for (let bx = Math.max(x - r, this.#minX); bx <= Math.min(x + r, this.#maxX); bx++) { at(bx, y - r); at(bx, y + r); }
      for (let by = Math.max(y - r + 1, this.#minY); by <= Math.min(y + r - 1, this.#maxY); by++) { at(x - r, by); at(x + r, by); }
    }
  }

  #record(id: string): void {
    if (!this.#open) throw new Error('cell index changed outside a step');
    this.#undo.push({ id, before: this.#slots.get(id)?.driver });
  }

  #rollBack(version: number): void {
    for (let i = this.#undo.length - 1; i >= 0; i--) {
      const { id, before } = this.#undo[i]!;
      if (before) this.#put(before); else this.#remove(id);
    }
    // A closed step can be redone (its state may still be handed in); a half-done one cannot.
    this.#redoable = !this.#open && this.#version === this.#latest && this.#undo.length > 0;
    if (!this.#redoable) this.#undo = [];
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

  #put(driver: DriverCopy): void {
    const x = gx(driver.lng);
    const y = gy(driver.lat);
    const key = keyOf(x, y);
    const slot = this.#slots.get(driver.driverId);
    if (slot && slot.key === key) { slot.driver = driver; return; }
    if (slot) this.#remove(driver.driverId);
    let bucket = this.#buckets.get(key);
    if (!bucket) this.#buckets.set(key, bucket = []);
    const added: Slot = { driver, key, pos: bucket.length };
    bucket.push(added);
    this.#slots.set(driver.driverId, added);
    this.#minX = Math.min(this.#minX, x); this.#maxX = Math.max(this.#maxX, x);
    this.#minY = Math.min(this.#minY, y); this.#maxY = Math.max(this.#maxY, y);
  }

  #remove(id: string): void {
    const slot = this.#slots.get(id);
    if (!slot) return;
    this.#slots.delete(id);
    const bucket = this.#buckets.get(slot.key)!;
    const moved = bucket.pop()!;
    if (moved !== slot) { bucket[slot.pos] = moved; moved.pos = slot.pos; }
    if (bucket.length === 0) this.#buckets.delete(slot.key);
    if (this.#slots.size === 0) { this.#minX = this.#minY = Infinity; this.#maxX = this.#maxY = -Infinity; }
  }
}

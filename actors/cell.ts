// An H3 cell: the online drivers inside it (soft state, rebuilt by their next
// updates, never journaled), nearest-k queries over its available drivers, and
// surge from demand against supply over a sliding window.
//
// The first driver a cell incarnation hears of makes it publish `cell.occupied`
// (topic `cell`): the node keeps the set of cells that ever held a driver, and
// searches skip the others without waking their actors. A restarted cell starts
// empty and publishes again on its first driver (marking is idempotent).

import { unchanged, type Behavior, type Outcome } from './behavior.ts';
import { CellIndex, UNTAGGED } from './cell-index.ts';
import type { DriverStatus } from './driver.ts';
import type { Point } from './geo.ts';
import { TopK } from './top-k.ts';
import { inMaintenance, type MaintenanceWindow } from './vehicle.ts';

export interface DriverCopy extends Point {
  readonly driverId: string;
  readonly status: DriverStatus;
  readonly vehicleType: string;
  readonly rating: number;
  readonly acceptanceRate: number;
  readonly lastTripEndedAt: number;
  readonly maintenance: readonly MaintenanceWindow[];
  readonly seenAt: number;
}

export interface CellSettings {
  /** Drivers unheard of for this long are dropped. */
  readonly driverTtlMs: number;
  readonly surgeCap: number;
  /** Demand is counted over this window. */
  readonly demandWindowMs: number;
  /** Time constant of the surge's smoothing. */
  readonly surgeTauMs: number;
  /** How strongly demand over supply raises surge: target = 1 + sensitivity * (demand/supply - 1). */
  readonly sensitivity: number;
}

export const DEFAULT_CELL: CellSettings = {
  driverTtlMs: 120_000, surgeCap: 3, demandWindowMs: 10 * 60_000, surgeTauMs: 2 * 60_000, sensitivity: 0.5,
};

export interface CellState {
  /**
   * The cell's drivers by id, with a grid for nearest queries. Shared by the states of
   * one cell and changed in place: `version` says which of its versions this state is
   * (see cell-index.ts for why that is safe). Read it through `driversOf`/`driverOf`.
   */
  readonly index: CellIndex;
  readonly version: number;
  /** Timestamps of recent demand (booking requests with pickup here). */
  readonly demand: readonly number[];
  readonly surge: number;
  readonly surgeAt: number;
  /** This incarnation has published `cell.occupied` (it has held a driver). */
  readonly marked?: boolean;
}

/**
 * Vehicle types as small numbers, for the index's tags: a search looks only at available
 * drivers of its type without reading their copies. Bounded: past the bound new types share
 * one tag (only a pre-filter; `eligible` still decides).
 */
const vehicleTags = new Map<string, number>();
const MAX_VEHICLE_TAGS = 1_000;

function vehicleTag(type: string): number {
  let tag = vehicleTags.get(type);
  if (tag === undefined) {
    tag = Math.min(vehicleTags.size, MAX_VEHICLE_TAGS);
    if (vehicleTags.size < MAX_VEHICLE_TAGS) vehicleTags.set(type, tag);
  }
  return tag;
}

/** The index's tag of a copy: its vehicle type when available, else never answered. */
const tagOf = (d: DriverCopy) => (d.status === 'available' ? vehicleTag(d.vehicleType) : UNTAGGED);

/**
 * Whether `eligible` must read the copy: a driver with maintenance windows, or one whose type
 * shares the overflow tag. Any other is eligible on its tag (available, its type) and its
 * freshness (the index's `seenSince`) alone.
 */
const checkOf = (d: DriverCopy) => d.maintenance.length > 0 || vehicleTag(d.vehicleType) === MAX_VEHICLE_TAGS;

export function emptyCell(): CellState {
  return { index: new CellIndex(tagOf, checkOf), version: 0, demand: [], surge: 1, surgeAt: 0 };
}

/** The index showing this state's drivers (it throws StaleCellState for a state older than the previous one). */
function live(state: CellState): CellIndex {
  state.index.checkout(state.version);
  return state.index;
}

export function driverOf(state: CellState, driverId: string): DriverCopy | undefined {
  return live(state).get(driverId);
}

export function driversOf(state: CellState): DriverCopy[] {
  return [...live(state).values()];
}

/** Published once per cell incarnation when it first holds a driver. */
export interface CellOccupied {
  readonly type: 'cell.occupied';
  readonly cell: string;
}

export const CELL_TOPIC = 'cell';

/** The cell a domain event says became occupied, if it is such an event. */
export function occupiedCellOf(topic: string, event: unknown): string | undefined {
  const e = event as Partial<CellOccupied> | undefined;
  return topic === CELL_TOPIC && e?.type === 'cell.occupied' && typeof e.cell === 'string' ? e.cell : undefined;
}

export type CellMessage =
  | { readonly type: 'driver.upsert'; readonly driver: DriverCopy }
  | { readonly type: 'driver.remove'; readonly driverId: string; readonly at: number }
  | { readonly type: 'demand'; readonly at: number };

export type CellQuery =
  | { readonly type: 'nearest'; readonly point: Point; readonly k: number; readonly radiusKm: number; readonly vehicleType?: string }
  /**
   * Offers the eligible drivers within the radius to a search's top-k (actors/nearest.ts):
   * in process only (ShardRegion.askNow), never sent to another node. Answers true.
   */
  | { readonly type: 'nearest.offer'; readonly point: Point; readonly radiusKm: number; readonly vehicleType?: string; readonly best: TopK<DriverCopy> }
  | { readonly type: 'surge' }
  | { readonly type: 'drivers' };

export interface Candidate extends DriverCopy {
  readonly distanceKm: number;
}

const fresh = (d: DriverCopy, now: number, s: CellSettings) => now - d.seenAt <= s.driverTtlMs;
const recentDemand = (state: CellState, now: number, s: CellSettings) => state.demand.filter((t) => now - t <= s.demandWindowMs);

/** Drops drivers unheard of beyond the TTL; only inside an index step. */
function sweep(index: CellIndex, now: number, s: CellSettings): void {
  const gone: string[] = [];
  for (const d of index.values()) if (!fresh(d, now, s)) gone.push(d.driverId);
  for (const id of gone) index.delete(id);
}

/**
 * Available drivers not in maintenance, and fresh when settings are given: the index's tagged
 * drivers (tagOf tags the available ones), the flagged ones (checkOf: a maintenance window)
 * asked about their windows.
 */
function countSupply(index: CellIndex, now: number, s?: CellSettings): number {
  return index.countTagged(s ? now - s.driverTtlMs : Number.NEGATIVE_INFINITY, (d) => !inMaintenance(d.maintenance, now));
}

/** Available drivers not in maintenance (including silent ones not yet swept). */
export function supply(state: CellState, now: number): number {
  return countSupply(live(state), now);
}

function surgeOf(index: CellIndex, state: CellState, now: number, s: CellSettings): number {
  const ratio = recentDemand(state, now, s).length / Math.max(1, countSupply(index, now, s));
  const target = Math.min(s.surgeCap, Math.max(1, 1 + s.sensitivity * (ratio - 1)));
  const alpha = 1 - Math.exp(-Math.max(0, now - state.surgeAt) / s.surgeTauMs);
  return Math.min(s.surgeCap, Math.max(1, state.surge + alpha * (target - state.surge)));
}

/** The surge the cell shows at `now`: smoothed toward demand/supply, never below 1 or above the cap. */
export function surgeAt(state: CellState, now: number, s: CellSettings): number {
  return surgeOf(live(state), state, now, s);
}

/** Whether a driver may be offered to a query at `now`: every rule a nearest answer obeys but distance. */
export function eligible(d: DriverCopy, vehicleType: string | undefined, now: number, s: CellSettings): boolean {
  return d.status === 'available' && fresh(d, now, s) && (!vehicleType || d.vehicleType === vehicleType) && !inMaintenance(d.maintenance, now);
}

/** Offers the cell's eligible drivers within the radius to `best` (which may already hold other cells' drivers). */
export function offerNearest(
  state: CellState, q: Omit<Extract<CellQuery, { type: 'nearest' }>, 'type' | 'k'>, now: number, s: CellSettings, best: TopK<DriverCopy>,
): void {
  const tag = q.vehicleType === undefined ? undefined : vehicleTag(q.vehicleType);
  // fresh(d) is seenAt >= now - driverTtlMs: the index tests it from its entries.
  live(state).nearest(q.point, q.radiusKm, (d) => eligible(d, q.vehicleType, now, s), best, tag, now - s.driverTtlMs);
}

export function nearestInCell(state: CellState, q: Extract<CellQuery, { type: 'nearest' }>, now: number, s: CellSettings): Candidate[] {
  const best = new TopK<DriverCopy>(q.k);
  offerNearest(state, q, now, s, best);
  return best.sorted().map(({ km, driver }) => ({ ...driver, distanceKm: km }));
}

/** How often a busy cell sweeps out silent drivers and settles its surge (each is a pass over all its drivers). */
const SETTLE_EVERY_MS = 10_000;

/**
 * One reducer step: `change` on the drivers, then (when due or forced) surge settled
 * on the changed drivers and silent drivers swept. One index step, so the runtime
 * dropping this outcome rolls all of it back.
 */
function advance<A>(state: CellState, now: number, s: CellSettings, change: (index: CellIndex, arg: A) => void, arg: A, settleNow = false): CellState {
  const settle = settleNow || now - state.surgeAt >= SETTLE_EVERY_MS;
  if (!settle) {
    // The common step (a copy in, a copy out): no closure, only the state of the new version.
    const version = state.index.step(state.version, change, arg);
    return version === state.version ? state : { ...state, version };
  }
  let surge = state.surge;
  const version = state.index.step(state.version, (index) => {
    change(index, arg);
    surge = surgeOf(index, state, now, s);
    sweep(index, now, s);
  });
  return { ...state, version, demand: recentDemand(state, now, s), surge, surgeAt: now };
}

const setDriver = (index: CellIndex, driver: DriverCopy) => index.set(driver);
const deleteDriver = (index: CellIndex, driverId: string) => index.delete(driverId);

export function makeCellBehavior(settings: CellSettings = DEFAULT_CELL): Behavior<CellState, CellMessage, never, CellQuery, unknown> {
  return {
    kind: 'cell',
    eventVersion: 1,
    ephemeral: true,
    // Never snapshotted by count either: the index is live memory, not data (see cell-index.ts).
    snapshotEvery: 0,
    initial: () => emptyCell(),
    handle(given, msg, ctx): Outcome<CellState, never> {
      // A state that is not ours (a snapshot read back): a restarted cell starts empty.
      const state = given.index instanceof CellIndex ? given : emptyCell();
      switch (msg.type) {
        case 'driver.upsert': {
          const known = driverOf(state, msg.driver.driverId);
          if (known && known.seenAt > msg.driver.seenAt) return unchanged(state); // stale
          const next = advance(state, ctx.now, settings, setDriver, msg.driver);
          if (state.marked) return unchanged(next);
          const occupied: CellOccupied = { type: 'cell.occupied', cell: ctx.self.id };
          return { state: { ...next, marked: true }, events: [], effects: [{ type: 'publish', topic: CELL_TOPIC, event: occupied }] };
        }
        case 'driver.remove': {
          const known = driverOf(state, msg.driverId);
          if (!known || known.seenAt > msg.at) return unchanged(state);
          return unchanged(advance(state, ctx.now, settings, deleteDriver, msg.driverId));
        }
        case 'demand':
          return unchanged(advance({ ...state, demand: [...state.demand, msg.at] }, ctx.now, settings, () => undefined, undefined, true));
      }
    },
    apply: (state) => state,
    query(given, q, ctx) {
      const state = given.index instanceof CellIndex ? given : emptyCell();
      switch (q.type) {
        case 'nearest': return nearestInCell(state, q, ctx.now, settings);
        case 'nearest.offer': offerNearest(state, q, ctx.now, settings, q.best); return true;
        case 'surge': return {
          surge: Math.round(surgeAt(state, ctx.now, settings) * 100) / 100, supply: supply(state, ctx.now),
          demand: recentDemand(state, ctx.now, settings).length,
        };
        case 'drivers': return driversOf(state).filter((d) => fresh(d, ctx.now, settings));
      }
    },
  };
}

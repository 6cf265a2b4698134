// An H3 cell: the online drivers inside it (soft state, rebuilt by their next
// updates, never journaled), nearest-k queries over its available drivers, and
// surge from demand against supply over a sliding window.
//
// The first driver a cell incarnation hears of makes it publish `cell.occupied`
// (topic `cell`): the node keeps the set of cells that ever held a driver, and
// searches skip the others without waking their actors. A restarted cell starts
// empty and publishes again on its first driver (marking is idempotent).

import type { Behavior, Outcome } from './behavior.ts';
import { distanceKm, type Point } from './geo.ts';

export interface MaintenanceWindow {
  readonly from: number;
  readonly to: number;
}

export type DriverStatus = 'offline' | 'available' | 'offered' | 'assigned' | 'on_trip';

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
  readonly drivers: Readonly<Record<string, DriverCopy>>;
  /** Timestamps of recent demand (booking requests with pickup here). */
  readonly demand: readonly number[];
  readonly surge: number;
  readonly surgeAt: number;
  /** This incarnation has published `cell.occupied` (it has held a driver). */
  readonly marked?: boolean;
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
  | { readonly type: 'surge' }
  | { readonly type: 'drivers' };

export interface Candidate extends DriverCopy {
  readonly distanceKm: number;
}

export function inMaintenance(windows: readonly MaintenanceWindow[], at: number): boolean {
  return windows.some((w) => w.from <= at && at < w.to);
}

function expire(state: CellState, now: number, s: CellSettings): CellState {
  const drivers: Record<string, DriverCopy> = {};
  let dropped = false;
  for (const [id, d] of Object.entries(state.drivers)) {
    if (now - d.seenAt <= s.driverTtlMs) drivers[id] = d; else dropped = true;
  }
  const demand = state.demand.filter((t) => now - t <= s.demandWindowMs);
  return dropped || demand.length !== state.demand.length ? { ...state, drivers: dropped ? drivers : state.drivers, demand } : state;
}

export function supply(state: CellState, now: number): number {
  return Object.values(state.drivers).filter((d) => d.status === 'available' && !inMaintenance(d.maintenance, now)).length;
}

/** The surge the cell shows at `now`: smoothed toward demand/supply, never below 1 or above the cap. */
export function surgeAt(state: CellState, now: number, s: CellSettings): number {
  const fresh = expire(state, now, s);
  const ratio = fresh.demand.length / Math.max(1, supply(fresh, now));
  const target = Math.min(s.surgeCap, Math.max(1, 1 + s.sensitivity * (ratio - 1)));
  const alpha = 1 - Math.exp(-Math.max(0, now - state.surgeAt) / s.surgeTauMs);
  return Math.min(s.surgeCap, Math.max(1, state.surge + alpha * (target - state.surge)));
}

export function nearestInCell(state: CellState, q: Extract<CellQuery, { type: 'nearest' }>, now: number, s: CellSettings): Candidate[] {
  const out: Candidate[] = [];
  for (const d of Object.values(state.drivers)) {
    if (d.status !== 'available' || now - d.seenAt > s.driverTtlMs) continue;
    if (q.vehicleType && d.vehicleType !== q.vehicleType) continue;
    if (inMaintenance(d.maintenance, now)) continue;
    const km = distanceKm(q.point, d);
    if (km <= q.radiusKm) out.push({ ...d, distanceKm: km });
  }
  out.sort((a, b) => a.distanceKm - b.distanceKm || (a.driverId < b.driverId ? -1 : 1));
  return out.slice(0, q.k);
}

/** How often a busy cell sweeps out silent drivers and settles its surge (each is a pass over all its drivers). */
const SETTLE_EVERY_MS = 10_000;

export function makeCellBehavior(settings: CellSettings = DEFAULT_CELL): Behavior<CellState, CellMessage, never, CellQuery, unknown> {
  const settle = (state: CellState, now: number): CellState => ({ ...expire(state, now, settings), surge: surgeAt(state, now, settings), surgeAt: now });
  // A driver update is one copy of the map; the full pass waits for demand or the interval.
  const maybeSettle = (state: CellState, now: number): CellState => (now - state.surgeAt >= SETTLE_EVERY_MS ? settle(state, now) : state);
  return {
    kind: 'cell',
    eventVersion: 1,
    ephemeral: true,
    initial: () => ({ drivers: {}, demand: [], surge: 1, surgeAt: 0 }),
    handle(state, msg, ctx): Outcome<CellState, never> {
      switch (msg.type) {
        case 'driver.upsert': {
          const known = state.drivers[msg.driver.driverId];
          if (known && known.seenAt > msg.driver.seenAt) return { state, events: [], effects: [] }; // stale
          const next = maybeSettle({ ...state, drivers: { ...state.drivers, [msg.driver.driverId]: msg.driver } }, ctx.now);
          if (state.marked) return { state: next, events: [], effects: [] };
          const occupied: CellOccupied = { type: 'cell.occupied', cell: ctx.self.id };
          return { state: { ...next, marked: true }, events: [], effects: [{ type: 'publish', topic: CELL_TOPIC, event: occupied }] };
        }
        case 'driver.remove': {
          const known = state.drivers[msg.driverId];
          if (!known || known.seenAt > msg.at) return { state, events: [], effects: [] };
          const { [msg.driverId]: _gone, ...rest } = state.drivers;
          return { state: maybeSettle({ ...state, drivers: rest }, ctx.now), events: [], effects: [] };
        }
        case 'demand':
          return { state: settle({ ...state, demand: [...state.demand, msg.at] }, ctx.now), events: [], effects: [] };
      }
    },
    apply: (state) => state,
    query(state, q, ctx) {
      switch (q.type) {
        case 'nearest': return nearestInCell(state, q, ctx.now, settings);
        case 'surge': return { surge: Math.round(surgeAt(state, ctx.now, settings) * 100) / 100, supply: supply(state, ctx.now), demand: expire(state, ctx.now, settings).demand.length };
        case 'drivers': return Object.values(expire(state, ctx.now, settings).drivers);
      }
    },
  };
}

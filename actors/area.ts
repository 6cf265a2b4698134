// An area: the owner of one batch of bookings in batched dispatch (DISPATCH_MODE=batched).
// Its id is the H3 parent of a booking's pickup cell AREA_LEVELS_UP resolutions coarser
// (at the default CELL_RES 7, a resolution 5 cell of about 250 km², 49 cells: a city
// district, big enough that most bookings competing for the same drivers meet in one
// batch, and one entity, so one shard and one node, owns each batch).
//
// Bookings are sharded by their own id, so an area's bookings live on many nodes: each
// joins its area with a soft tell. The first join opens a window and requests the node
// service `batch`, deferred to the window's end (`at`, batchMs later): it reads the
// window's joins (query `pending`), searches each booking's nearest drivers across cells
// on any node, solves one assignment for them all (batch.ts) and answers `batch.closed`;
// the area tells each booking its driver, or none, as the `candidates` a greedy search
// answers. Joins that came after the service read the window stay for the next one.
//
// Its state is soft (ephemeral: never journaled nor snapshotted): an owner that dies or
// moves mid-window loses the window, and each of its bookings joins again when its own
// search.retry timer rings (a booking never waits on an area for ever). A join repeated
// with the same search is idempotent; one with a newer search replaces the older.

import { cellToParent, getResolution } from 'h3-js';
import { unchanged, type Behavior, type Effect } from './behavior.ts';
import type { Candidate } from './cell.ts';
import type { Point } from './geo.ts';

/** An area is this many H3 resolutions coarser than the pickup cell. */
export const AREA_LEVELS_UP = 2;

/** The area (its entity id) a pickup cell's bookings batch in. */
export function areaOf(cell: string): string {
  return cellToParent(cell, Math.max(0, getResolution(cell) - AREA_LEVELS_UP));
}

/** A booking asks to be matched in its area's next batch (what a greedy booking asks `nearest`). */
export interface Join {
  readonly type: 'join';
  readonly bookingId: string;
  readonly search: number;
  readonly point: Point;
  readonly radiusKm: number;
  readonly k: number;
  readonly vehicleType?: string;
  /** Drivers this booking was offered already: never offered it again by a batch. */
  readonly tried: readonly string[];
}

/** What a batch gave one booking: its driver, or none. */
export interface BatchAnswer {
  readonly bookingId: string;
  readonly search: number;
  readonly drivers: readonly Candidate[];
}

export type AreaMessage =
  | Join
  /** The `batch` service's answer for a window (answers only for the joins it read). */
  | { readonly type: 'batch.closed'; readonly window: string; readonly answers: readonly BatchAnswer[] };

/** The `batch` service reads a window's joins; null when the area has another window (it moved or restarted). */
export type AreaQuery = { readonly type: 'pending'; readonly window: string };
export type AreaPending = { readonly joins: readonly Join[] } | null;

/** What the area asks the `batch` service: close this window at `closeAt`. */
export interface BatchRequest {
  readonly window: string;
  readonly closeAt: number;
}

export interface AreaState {
  /** The joins of the open window, by booking. */
  readonly pending: Readonly<Record<string, Join>>;
  readonly window?: { readonly id: string; readonly closeAt: number };
  /** Windows opened by this incarnation: with the time, a window id no other incarnation uses. */
  readonly opened: number;
}

export interface AreaSettings {
  /** How long a window gathers joins before it is matched. */
  readonly batchMs: number;
  /**
   * A window whose answer has not come this long after it closed (the service failed: a
   * search that threw, a node stopping) is given up: the next join opens a fresh one.
   */
  readonly overdueMs: number;
}

export const DEFAULT_AREA: AreaSettings = { batchMs: 2_000, overdueMs: 5_000 };

export function initialArea(): AreaState {
  return { pending: {}, opened: 0 };
}

export function makeAreaBehavior(settings: AreaSettings = DEFAULT_AREA): Behavior<AreaState, AreaMessage, never, AreaQuery, AreaPending> {
  /** Opens a window and asks the service to close it. */
  function open(s: AreaState, now: number): { state: AreaState; effect: Effect } {
    const window = { id: `${now}.${s.opened}`, closeAt: now + settings.batchMs };
    const payload: BatchRequest = { window: window.id, closeAt: window.closeAt };
    return { state: { ...s, window, opened: s.opened + 1 }, effect: { type: 'request', service: 'batch', payload, at: window.closeAt } };
  }

  function handle(s: AreaState, m: AreaMessage, ctx: { readonly now: number }) {
    switch (m.type) {
      case 'join': {
        const known = s.pending[m.bookingId];
        const overdue = s.window !== undefined && ctx.now >= s.window.closeAt + settings.overdueMs;
        // A repeat (the booking's retry while its window is open) changes nothing.
        if (known && known.search >= m.search && !overdue) return unchanged<AreaState, never>(s);
        const withJoin: AreaState = { ...s, pending: { ...s.pending, [m.bookingId]: known && known.search > m.search ? known : m } };
        if (s.window && !overdue) return unchanged<AreaState, never>(withJoin);
        const opened = open(withJoin, ctx.now);
        return { state: opened.state, events: [], effects: [opened.effect] };
      }
      case 'batch.closed': {
        // An answer for a window this incarnation did not open, or gave up: its bookings retry.
        if (s.window?.id !== m.window) return unchanged<AreaState, never>(s);
        const pending: Record<string, Join> = { ...s.pending };
        const effects: Effect[] = [];
        for (const a of m.answers) {
          // Soft: a lost answer is repaired by the booking's retry; the booking journals what it does with it.
          effects.push({
            type: 'tell', durable: false, to: { kind: 'booking', id: a.bookingId },
            message: { type: 'candidates', search: a.search, drivers: a.drivers },
          });
          if (pending[a.bookingId]?.search === a.search) delete pending[a.bookingId];
        }
        const rest: AreaState = { ...s, pending, window: undefined };
        if (Object.keys(pending).length === 0) return { state: rest, events: [], effects };
        // Joins that came after the service read the window: the next window.
        const opened = open(rest, ctx.now);
        return { state: opened.state, events: [], effects: [...effects, opened.effect] };
      }
    }
  }

  return {
    kind: 'area',
    eventVersion: 1,
    ephemeral: true,
    initial: initialArea,
    handle,
    apply: (s) => s,
    query: (s, q) => (s.window?.id === q.window ? { joins: Object.values(s.pending) } : null),
  };
}

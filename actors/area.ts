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
// A window lasts batchMs only where batching pays: while the area has seen at least
// `contention.events` contentions in the last `contention.holdMs`. A contention is a
// booking that did not get the driver it would have got alone: its best candidate went to
// another booking of its batch, or a driver given by the area within the last window was
// nearer to it than the one it got. Where drivers are plentiful for the bookings (a quiet
// city) nobody contends, so each join is matched at once, as greedy matches it, and a
// quiet city waits for no window.
//
// Its state is soft (ephemeral: never journaled nor snapshotted): an owner that dies or
// moves mid-window loses the window, and each of its bookings joins again when its own
// search.retry timer rings (a booking never waits on an area for ever). A join repeated
// with the same search is idempotent; one with a newer search replaces the older.

import { cellToParent, getResolution } from 'h3-js';
import { unchanged, type Behavior, type Effect } from './behavior.ts';
import type { Candidate } from './cell.ts';
import { distanceKm, type Point } from './geo.ts';

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
  /**
   * Wider radii the batch may search when nobody is left for it at `radiusKm`, each from a
   * time on (the booking's greedy backoff, counted from when it first searched its radius).
   */
  readonly wider?: readonly WiderRadius[];
}

export interface WiderRadius {
  readonly radiusKm: number;
  readonly from: number;
}

/** What a batch gave one booking: its driver, or none. */
export interface BatchAnswer {
  readonly bookingId: string;
  readonly search: number;
  readonly drivers: readonly Candidate[];
  /** Its best candidate went to another booking of the batch (batching changed its answer). */
  readonly contended?: boolean;
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
  /** Drivers given within the last batchMs, where they were when given. */
  readonly given: readonly Given[];
  /** When contentions were seen, within the last contention.holdMs. */
  readonly contended: readonly number[];
}

export interface Given extends Point {
  readonly driverId: string;
  readonly bookingId: string;
  readonly vehicleType: string;
  readonly at: number;
}

export interface AreaSettings {
  /** How long a window gathers joins before it is matched. */
  readonly batchMs: number;
  /**
   * A window whose answer has not come this long after it closed (the service failed: a
   * search that threw, a node stopping) is given up: the next join opens a fresh one.
   */
  readonly overdueMs: number;
  /**
   * Windows wait batchMs while at least `events` contentions were seen in the last `holdMs`,
   * and close at once otherwise; `events` 0: every window waits batchMs.
   */
  readonly contention: { readonly events: number; readonly holdMs: number };
}

/** Contention settings under which every window waits batchMs (DISPATCH_BATCH_CONTENTION=0). */
export const EVERY_WINDOW_WAITS = { events: 0, holdMs: 0 } as const;

export const DEFAULT_AREA: AreaSettings = { batchMs: 2_000, overdueMs: 5_000, contention: { events: 3, holdMs: 30_000 } };

export function initialArea(): AreaState {
  return { pending: {}, opened: 0, given: [], contended: [] };
}

/**
 * Whether `join`, answered `answer`, contends with a driver the area gave another booking
 * lately: one of them was nearer to its pickup than the driver it got (or, given none, in reach).
 */
function contendsWithGiven(join: Join, answer: BatchAnswer, given: readonly Given[]): boolean {
  const got = answer.drivers[0];
  const reach = got ? got.distanceKm : join.radiusKm;
  return given.some((g) => g.bookingId !== join.bookingId && (join.vehicleType === undefined || g.vehicleType === join.vehicleType)
    && distanceKm(join.point, g) < reach);
}

export function makeAreaBehavior(settings: AreaSettings = DEFAULT_AREA): Behavior<AreaState, AreaMessage, never, AreaQuery, AreaPending> {
  const { events: contentionEvents, holdMs } = settings.contention;
  /** A window waits only while batching pays (contentions lately), else it closes at once. */
  const windowMs = (s: AreaState, now: number) =>
    contentionEvents === 0 || s.contended.filter((t) => now - t <= holdMs).length >= contentionEvents ? settings.batchMs : 0;

  /** Opens a window and asks the service to close it. */
  function open(s: AreaState, now: number): { state: AreaState; effect: Effect } {
    const window = { id: `${now}.${s.opened}`, closeAt: now + windowMs(s, now) };
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
        const given = s.given.filter((g) => ctx.now - g.at <= settings.batchMs);
        const fresh: Given[] = [];
        let contended = s.contended.filter((t) => ctx.now - t <= holdMs);
        for (const a of m.answers) {
          const join = pending[a.bookingId];
          if (a.contended || (join && contendsWithGiven(join, a, given))) contended = [...contended, ctx.now];
          const d = a.drivers[0];
          if (d) fresh.push({ driverId: d.driverId, bookingId: a.bookingId, vehicleType: d.vehicleType, lat: d.lat, lng: d.lng, at: ctx.now });
          // Soft: a lost answer is repaired by the booking's retry; the booking journals what it does with it.
          effects.push({
            type: 'tell', durable: false, to: { kind: 'booking', id: a.bookingId },
            message: { type: 'candidates', search: a.search, drivers: a.drivers },
          });
          if (pending[a.bookingId]?.search === a.search) delete pending[a.bookingId];
        }
        const rest: AreaState = { ...s, pending, window: undefined, given: [...given, ...fresh], contended };
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

// The entity kinds and node services of a dispatch node.

import type { AnyBehavior, Service } from './behavior.ts';
import { DEFAULT_AREA, makeAreaBehavior, type AreaPending, type BatchRequest, type Join } from './area.ts';
import { closeBatch } from './batch.ts';
import { makeBookingBehavior, DEFAULT_BOOKING, type DispatchMode } from './booking.ts';
import { DEFAULT_CELL, makeCellBehavior, type Candidate } from './cell.ts';
import { DEFAULT_WEIGHTS } from './dispatch-policy.ts';
import { makeDriverBehavior } from './driver.ts';
import { makeVehicleBehavior } from './vehicle.ts';
import type { Point } from './geo.ts';
import { DEFAULT_SEARCH, offerByAskNow, searchNearest, type SearchPorts, type SearchSettings } from './nearest.ts';

export interface DomainSettings {
  readonly dispatch: {
    readonly cellRes: number;
    readonly offerTimeoutMs: number;
    readonly surgeCap: number;
    /** Absent: DEFAULT_PRICING's peak hours and multiplier. */
    readonly peakHours?: readonly number[];
    readonly peakMultiplier?: number;
    readonly deadlineMs: number;
    /** Absent: the behaviours' defaults (DEFAULT_BOOKING, DEFAULT_PRESENCE). */
    readonly scheduleLeadMs?: number;
    readonly searchBackoffMs?: number;
    readonly searchBackoffMaxMs?: number;
    readonly presenceMs?: number;
    readonly driverSilentAfterMs?: number;
    /** Absent: greedy (each booking offers its own best candidate). */
    readonly mode?: DispatchMode;
    /** Batched mode's window; absent: DEFAULT_AREA.batchMs. */
    readonly batchMs?: number;
    /** Contentions that keep an area's windows (area.ts); absent: DEFAULT_AREA's; 0: always a window. */
    readonly batchContention?: number;
  };
  /** Bounds of nearest-driver searches; absent: DEFAULT_SEARCH. */
  readonly search?: SearchSettings;
}

/**
 * A booking that got no answer asks again after this long; in batched mode an answer comes
 * only after the window, so the retry waits for the window and this much more.
 */
const BATCH_RETRY_SLACK_MS = 3_000;

/** An area counts its contentions over this many windows (DEFAULT_AREA's 30 s at 2 s windows). */
const CONTENTION_HOLD_WINDOWS = 15;

export function dispatchBehaviors(settings: DomainSettings): AnyBehavior[] {
  const d = settings.dispatch;
  const mode = d.mode ?? 'greedy';
  const batchMs = d.batchMs ?? DEFAULT_AREA.batchMs;
  return [
    makeDriverBehavior({
      cellRes: d.cellRes, offerTimeoutMs: d.offerTimeoutMs, presenceMs: d.presenceMs, silentAfterMs: d.driverSilentAfterMs,
    }),
    makeCellBehavior({ ...DEFAULT_CELL, surgeCap: d.surgeCap }),
    makeBookingBehavior({
      ...DEFAULT_BOOKING, offerTimeoutMs: d.offerTimeoutMs, deadlineMs: d.deadlineMs,
      scheduleLeadMs: d.scheduleLeadMs ?? DEFAULT_BOOKING.scheduleLeadMs,
      searchBackoffMs: d.searchBackoffMs ?? DEFAULT_BOOKING.searchBackoffMs,
      searchBackoffMaxMs: d.searchBackoffMaxMs ?? DEFAULT_BOOKING.searchBackoffMaxMs,
      dispatchMode: mode, batchMs,
      searchRetryMs: mode === 'batched' ? Math.max(DEFAULT_BOOKING.searchRetryMs, batchMs + BATCH_RETRY_SLACK_MS) : DEFAULT_BOOKING.searchRetryMs,
    }),
    makeVehicleBehavior(),
    // Known in both modes, so joins sent just before a switch to greedy still find their area.
    makeAreaBehavior({
      ...DEFAULT_AREA, batchMs,
      contention: { events: d.batchContention ?? DEFAULT_AREA.contention.events, holdMs: CONTENTION_HOLD_WINDOWS * batchMs },
    }),
  ] as unknown as AnyBehavior[];
}

export interface NearestRequest {
  readonly search: number;
  readonly point: Point;
  readonly radiusKm: number;
  readonly k: number;
  readonly vehicleType?: string;
}

/**
 * The nearest-driver search across cell actors, answered to the requesting booking as `candidates`.
 * It asks at most `maxCells` cells, and none that never held a driver when the node provides
 * its occupied cells (SearchPorts).
 */
export function nearestService(cellRes: number, limits: { readonly maxCells?: number } = {}): Service {
  return async (payload, ports: SearchPorts) => {
    const q = payload as NearestRequest;
    const drivers = await searchNearest(q, cellRes, (cell) =>
      ports.ask<Candidate[]>(
        { kind: 'cell', id: cell }, { type: 'nearest', point: q.point, k: q.k, radiusKm: q.radiusKm, vehicleType: q.vehicleType },
      ),
    undefined, { maxCells: limits.maxCells, occupied: ports.occupiedCells, offer: ports.askNow && offerByAskNow(ports.askNow) });
    return { type: 'candidates', search: q.search, drivers };
  };
}

/**
 * Closes an area's window (area.ts), run at `closeAt` (the area's request is deferred to
 * it) on the node that owns the area: reads the window's joins from the area, runs each
 * booking's nearest search exactly as `nearest` does (cells on any node, asked where they
 * live), matches them all at once (batch.ts) and answers the area `batch.closed`. A window
 * the area no longer has (it moved or restarted meanwhile) gets no answer: its bookings
 * join again by their retry.
 */
export function batchService(cellRes: number, limits: { readonly maxCells?: number } = {}, weights = DEFAULT_WEIGHTS): Service {
  const nearest = nearestService(cellRes, limits);
  return async (payload, ports: SearchPorts) => {
    const q = payload as BatchRequest;
    const pending = await ports.ask<AreaPending>(ports.requester, { type: 'pending', window: q.window });
    if (!pending || pending.joins.length === 0) return undefined;
    // A search that failed leaves its booking out of this batch (it stays for the next), not the whole batch.
    const search = (j: Join, radiusKm: number, k: number) => (nearest({ ...j, radiusKm, k }, ports) as Promise<{ drivers: Candidate[] }>)
      .then((a) => a.drivers, () => undefined);
    return { type: 'batch.closed', window: q.window, answers: await closeBatch(pending.joins, search, q.closeAt, weights) };
  };
}

export function dispatchServices(settings: DomainSettings): Record<string, Service> {
  const cellRes = settings.dispatch.cellRes;
  const limits = { maxCells: (settings.search ?? DEFAULT_SEARCH).maxCells };
  return { nearest: nearestService(cellRes, limits), batch: batchService(cellRes, limits) };
}

// The entity kinds and node services of a dispatch node.

import type { AnyBehavior, Service } from './behavior.ts';
import { makeBookingBehavior, DEFAULT_BOOKING } from './booking.ts';
import { DEFAULT_CELL, makeCellBehavior, type Candidate } from './cell.ts';
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
  };
  /** Bounds of nearest-driver searches; absent: DEFAULT_SEARCH. */
  readonly search?: SearchSettings;
}

export function dispatchBehaviors(settings: DomainSettings): AnyBehavior[] {
  const d = settings.dispatch;
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
    }),
    makeVehicleBehavior(),
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

export function dispatchServices(settings: DomainSettings): Record<string, Service> {
  return { nearest: nearestService(settings.dispatch.cellRes, { maxCells: (settings.search ?? DEFAULT_SEARCH).maxCells }) };
}

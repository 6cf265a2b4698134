// Who gets the offer: candidates ranked by a weighted score, distance first, then
// rating, time since the driver's last trip (fairness) and acceptance rate. Ties are
// broken by a hash of booking and driver, so no driver is always first by id. A driver
// is offered a booking once; one who let the offer run out (did not answer: a phone in
// a pocket, a missed sound) gets one more chance when nobody else is left, as dispatch
// systems with a fixed number of attempts per driver do. A decline is final.

import type { Candidate } from './cell.ts';
import { inMaintenance } from './vehicle.ts';

export interface DispatchWeights {
  readonly distance: number;
  readonly rating: number;
  readonly idle: number;
  readonly acceptance: number;
}

export const DEFAULT_WEIGHTS: DispatchWeights = { distance: 1, rating: 0.2, idle: 0.15, acceptance: 0.1 };

/** Lower is better. Distance is scaled by the search radius; the others are in [0, 1]. */
export function score(c: Candidate, radiusKm: number, now: number, w: DispatchWeights): number {
  const distance = c.distanceKm / Math.max(radiusKm, 0.001);
  const rating = (Math.min(5, Math.max(1, c.rating)) - 1) / 4;
  const idleMinutes = c.lastTripEndedAt > 0 ? (now - c.lastTripEndedAt) / 60_000 : 60;
  const idle = Math.min(1, Math.max(0, idleMinutes) / 60);
  return w.distance * distance - w.rating * rating - w.idle * idle - w.acceptance * Math.min(1, Math.max(0, c.acceptanceRate));
}

function tieBreak(bookingId: string, driverId: string): number {
  let h = 2166136261;
  for (const ch of `${bookingId}/${driverId}`) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
  return h;
}

export function rankCandidates(
  candidates: readonly Candidate[],
  o: { bookingId: string; radiusKm: number; now: number; tried: readonly string[]; weights: DispatchWeights },
): Candidate[] {
  const tried = new Set(o.tried);
  return candidates
    .filter((c) => !tried.has(c.driverId) && c.status === 'available' && !inMaintenance(c.maintenance, o.now))
    .map((c) => ({ c, s: score(c, o.radiusKm, o.now, o.weights), t: tieBreak(o.bookingId, c.driverId) }))
    .sort((a, b) => a.s - b.s || a.t - b.t)
    .map((x) => x.c);
}

/** How many times a driver who let an offer run out may be offered the same booking. */
export const OFFERS_PER_LAPSED_DRIVER = 2;

/**
 * When no untried candidate is left: those whose offer of this booking ran out unanswered
 * (`lapsed`) and who have had fewer than OFFERS_PER_LAPSED_DRIVER offers of it, best first.
 */
export function rankSecondChances(
  candidates: readonly Candidate[],
  o: { bookingId: string; radiusKm: number; now: number; tried: readonly string[]; lapsed: readonly string[]; weights: DispatchWeights },
): Candidate[] {
  const offers = (id: string) => o.tried.filter((t) => t === id).length;
  const again = candidates.filter((c) => o.lapsed.includes(c.driverId) && offers(c.driverId) < OFFERS_PER_LAPSED_DRIVER);
  return rankCandidates(again, { ...o, tried: [] });
}

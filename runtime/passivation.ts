// Which entities to stop, and when: the passivation strategies (after Pekko's, each
// in one place). An entity with messages in flight, or a timer due within the
// horizon, is never a victim. One whose next timer is further off may go: its
// reminder brings it back before the timer is due (the region scans reminders due
// within its scan interval, and the horizon is longer than that).

import type { Activation } from './activation.ts';

export interface Candidate<A extends Activation<unknown> = Activation<unknown>> {
  readonly activation: A;
  /** When its next armed timer is due, if it has one. */
  readonly nextTimerAt: number | undefined;
}

export interface Horizon {
  readonly now: number;
  /** Timers due within this are kept in memory. */
  readonly keepTimersWithinMs: number;
}

const idle = (h: Horizon) => (c: Candidate<Activation<unknown>>) => c.activation.state === 'active' && c.activation.inFlight === 0
  && (c.nextTimerAt === undefined || c.nextTimerAt > h.now + h.keepTimersWithinMs);

/** Entities unused for `afterMs`. */
export function idleVictims<A extends Activation<unknown>>(candidates: readonly Candidate<A>[], h: Horizon, afterMs: number): A[] {
  return candidates.filter((c) => idle(h)(c) && c.activation.lastUsed <= h.now - afterMs).map((c) => c.activation);
}

/**
 * When the node holds `max` entities or more: the least recently used, enough to make
 * room for one more, and at least 1% of `max` at a time so a busy node does not pay
 * for one eviction per activation.
 */
export function leastRecentlyUsed<A extends Activation<unknown>>(
  candidates: readonly Candidate<A>[], h: Horizon, active: number, max: number,
): A[] {
  const excess = active - max + 1;
  if (excess <= 0) return [];
  return candidates.filter(idle(h)).map((c) => c.activation)
    .sort((a, b) => a.lastUsed - b.lastUsed)
    .slice(0, Math.max(excess, Math.ceil(max / 100)));
}

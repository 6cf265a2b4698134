// Which entities to stop, and when: the passivation strategies (after Pekko's, each
// in one place). An entity with messages in flight, or a timer due within the
// horizon, is never a victim. One whose next timer is further off may go: its
// reminder brings it back before the timer is due (the region scans reminders due
// within its scan interval, and the horizon is longer than that).
//
// The strategies visit the node's entities in place (`Visit`): a sweep runs every few
// seconds over every active entity, and a candidate object per entity per sweep (with a
// generator step to reach it) was most of what an idle node with thousands of online
// drivers allocated between their presence firings (heap sampling).

import type { Activation } from './activation.ts';

/** Calls `visit` once for every active entity of the node. */
export type Visit<A> = (visit: (activation: A) => void) => void;

/** When an entity's next armed timer is due, if it has one; asked only of entities that could go. */
export type NextTimerAt<A> = (activation: A) => number | undefined;

export interface Horizon {
  readonly now: number;
  /** Timers due within this are kept in memory. */
  readonly keepTimersWithinMs: number;
}

/** Active, nothing in flight, and no timer due within the horizon. */
function stoppable<A extends Activation<unknown>>(a: A, nextTimerAt: NextTimerAt<A>, h: Horizon): boolean {
  if (a.state !== 'active' || a.inFlight > 0) return false;
  const at = nextTimerAt(a);
  return at === undefined || at > h.now + h.keepTimersWithinMs;
}

/** Entities unused for `afterMs`: the time of last use is compared first, as most entities of a busy node fail it. */
export function idleVictims<A extends Activation<unknown>>(each: Visit<A>, nextTimerAt: NextTimerAt<A>, h: Horizon, afterMs: number): A[] {
  const unusedSince = h.now - afterMs;
  const victims: A[] = [];
  each((a) => { if (a.lastUsed <= unusedSince && stoppable(a, nextTimerAt, h)) victims.push(a); });
  return victims;
}

/**
 * When the node holds `max` entities or more: the least recently used, enough to make
 * room for one more, and at least 1% of `max` at a time so a busy node does not pay
 * for one eviction per activation.
 */
export function leastRecentlyUsed<A extends Activation<unknown>>(
  each: Visit<A>, nextTimerAt: NextTimerAt<A>, h: Horizon, active: number, max: number,
): A[] {
  const excess = active - max + 1;
  if (excess <= 0) return [];
  const idle: A[] = [];
  each((a) => { if (stoppable(a, nextTimerAt, h)) idle.push(a); });
  return idle.sort((a, b) => a.lastUsed - b.lastUsed).slice(0, Math.max(excess, Math.ceil(max / 100)));
}

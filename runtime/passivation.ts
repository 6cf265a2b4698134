// Which entities to stop, and when: the passivation strategies (after Pekko's, each
// in one place). An entity with an armed timer or messages in flight is never a
// victim; it stays until its timer fires or its work is done.

import type { Activation } from './activation.ts';

export interface Candidate<A extends Activation<unknown> = Activation<unknown>> {
  readonly activation: A;
  readonly hasTimers: boolean;
}

const idle = (c: Candidate<Activation<unknown>>) => c.activation.state === 'active' && c.activation.inFlight === 0 && !c.hasTimers;

/** Entities unused for `afterMs`. */
export function idleVictims<A extends Activation<unknown>>(candidates: readonly Candidate<A>[], now: number, afterMs: number): A[] {
  return candidates.filter((c) => idle(c) && c.activation.lastUsed <= now - afterMs).map((c) => c.activation);
}

/**
 * When the node holds `max` entities or more: the least recently used, enough to make
 * room for one more, and at least 1% of `max` at a time so a busy node does not pay
 * for one eviction per activation.
 */
export function leastRecentlyUsed<A extends Activation<unknown>>(candidates: readonly Candidate<A>[], active: number, max: number): A[] {
  const excess = active - max + 1;
  if (excess <= 0) return [];
  return candidates.filter(idle).map((c) => c.activation)
    .sort((a, b) => a.lastUsed - b.lastUsed)
    .slice(0, Math.max(excess, Math.ceil(max / 100)));
}

// The entity lifecycle and passivation strategies, pure: no actors, no I/O.

import test from 'ava';
import { Activation, accepts, transition, type ActivationEvent, type ActivationState } from '../runtime/activation.ts';
import { idleVictims, leastRecentlyUsed } from '../runtime/passivation.ts';

test('the lifecycle takes only its transitions', (t) => {
  const walk = (events: ActivationEvent[]) => events.reduce<ActivationState>(transition, 'recovering');
  t.is(walk(['recovered']), 'active');
  t.is(walk(['recovered', 'poison']), 'poisoned');
  t.is(walk(['recovered', 'poison', 'passivate', 'stopped']), 'stopped');
  t.is(walk(['recovery_failed']), 'poisoned');
  t.is(walk(['recovered', 'passivate', 'recovered']), 'passivating', 'nothing brings a passivating entity back');
  t.is(walk(['recovered', 'passivate', 'stopped', 'recovered']), 'stopped', 'stopped is final');
  t.is(walk(['stopped']), 'recovering', 'an entity cannot stop without passivating');
  t.deepEqual((['recovering', 'active', 'passivating', 'poisoned', 'stopped'] as const).filter(accepts), ['recovering', 'active']);
});

function entity(id: string, lastUsed: number, events: ActivationEvent[] = ['recovered'], inFlight = 0) {
  const a = new Activation({ kind: 'k', id }, `k:${id}`, 0, lastUsed);
  for (const e of events) a.on(e);
  a.inFlight = inFlight;
  return a;
}

/** The strategies' view of a node holding these entities with these timers. */
function visiting(candidates: readonly { activation: Activation; nextTimerAt: number | undefined }[]) {
  const timers = new Map(candidates.map((c) => [c.activation, c.nextTimerAt]));
  return {
    each: (visit: (a: Activation) => void) => candidates.forEach((c) => visit(c.activation)),
    nextTimerAt: (a: Activation) => timers.get(a),
  };
}

test('idle passivation takes active entities unused long enough, with no work in flight and no timer due soon', (t) => {
  const h = { now: 10_000, keepTimersWithinMs: 60_000 };
  const candidates = [
    { activation: entity('old', 1_000), nextTimerAt: undefined },
    { activation: entity('recent', 9_500), nextTimerAt: undefined },
    { activation: entity('timer-soon', 1_000), nextTimerAt: 20_000 },
    { activation: entity('timer-far', 1_000), nextTimerAt: 3_600_000 },
    { activation: entity('busy', 1_000, ['recovered'], 1), nextTimerAt: undefined },
    { activation: entity('recovering', 1_000, []), nextTimerAt: undefined },
    { activation: entity('poisoned', 1_000, ['recovered', 'poison']), nextTimerAt: undefined },
  ];
  const { each, nextTimerAt } = visiting(candidates);
  t.deepEqual(idleVictims(each, nextTimerAt, h, 5_000).map((a) => a.self.id), ['old', 'timer-far'],
    'a timer an hour away does not pin its entity: the reminder scan brings it back in time');
});

test('the LRU cap evicts the least recently used idle entities, at least 1% of the cap at a time', (t) => {
  const h = { now: 1_000, keepTimersWithinMs: 60_000 };
  const candidates = Array.from({ length: 300 }, (_, i) => ({ activation: entity(`e${i}`, 300 - i), nextTimerAt: i === 299 ? 2_000 : undefined }));
  const { each, nextTimerAt } = visiting(candidates);
  t.deepEqual(leastRecentlyUsed(each, nextTimerAt, h, 300, 1_000), [], 'under the cap');
  const victims = leastRecentlyUsed(each, nextTimerAt, h, 300, 300);
  t.is(victims.length, 3);
  t.deepEqual(victims.map((a) => a.self.id), ['e298', 'e297', 'e296'], 'oldest first, and e299 keeps its timer due soon');
});

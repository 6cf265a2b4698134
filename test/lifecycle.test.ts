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

test('idle passivation takes active entities unused long enough, without timers or work in flight', (t) => {
  const now = 10_000;
  const candidates = [
    { activation: entity('old', 1_000), hasTimers: false },
    { activation: entity('recent', 9_500), hasTimers: false },
    { activation: entity('timer', 1_000), hasTimers: true },
    { activation: entity('busy', 1_000, ['recovered'], 1), hasTimers: false },
    { activation: entity('recovering', 1_000, []), hasTimers: false },
    { activation: entity('poisoned', 1_000, ['recovered', 'poison']), hasTimers: false },
  ];
  t.deepEqual(idleVictims(candidates, now, 5_000).map((a) => a.self.id), ['old']);
});

test('the LRU cap evicts the least recently used idle entities, at least 1% of the cap at a time', (t) => {
  const candidates = Array.from({ length: 300 }, (_, i) => ({ activation: entity(`e${i}`, 300 - i), hasTimers: i === 299 }));
  t.deepEqual(leastRecentlyUsed(candidates, 300, 1_000), [], 'under the cap');
  const victims = leastRecentlyUsed(candidates, 300, 300);
  t.is(victims.length, 3);
  t.deepEqual(victims.map((a) => a.self.id), ['e298', 'e297', 'e296'], 'oldest first, and e299 keeps its timer');
});

// The shard host's trims of nact's actor objects (runtime/nact-trim.ts): an entity actor
// shares one empty map of children with every other, so it must still work as an actor and
// must refuse a child rather than register it where all of them would see it.

import test from 'ava';
import { dispatch, query, spawn, spawnStateless, start, stop } from 'nact';
import { withoutChildMaps } from '../runtime/nact-trim.ts';

type Ref = Parameters<typeof dispatch>[0];

const counter = (system: Ref, name: string) => spawn(system as never, (state: number = 0, msg: { add?: number; sender?: Ref }) => {
  const next = state + (msg.add ?? 0);
  if (msg.sender) dispatch(msg.sender as never, next);
  return next;
}, name) as unknown as Ref;

const read = (ref: Ref) => query(ref as never, (sender: Ref) => ({ sender }), 2_000) as Promise<number>;

test('actors trimmed of their child maps keep their state apart, answer, stop, and refuse a child', async (t) => {
  const system = start() as unknown as Ref;
  try {
    const a = counter(system, 'a');
    const b = counter(system, 'b');
    withoutChildMaps(a);
    withoutChildMaps(b);
    dispatch(a as never, { add: 2 });
    dispatch(b as never, { add: 5 });
    t.is(await read(a), 2);
    t.is(await read(b), 5);
    // An untrimmed actor takes a child; a trimmed one refuses it (its map is every entity's).
    t.notThrows(() => spawnStateless(counter(system, 'c') as never, () => undefined, 'child'));
    t.throws(() => spawnStateless(a as never, () => undefined, 'child'), { message: /spawns no child actors/ });
    t.is(await read(a), 2, 'the refused child left the actor as it was');
    stop(a as never);
    await t.throwsAsync(read(a));
    t.is(await read(b), 5, 'stopping one trimmed actor leaves the others');
  } finally {
    stop(system as never);
  }
});

// The node's active entities by kind and id (runtime/active-entities.ts): found by any ref
// naming them, one per ref, and a stale one's removal leaves its successor in place.

import test from 'ava';
import { ActiveEntities } from '../runtime/active-entities.ts';

const entity = (kind: string, id: string) => ({ self: { kind, id } });

test('an entity is found by any ref with its kind and id, not by another kind\'s same id', (t) => {
  const active = new ActiveEntities<ReturnType<typeof entity>>();
  const driver = entity('driver', 'd1');
  active.set(driver);
  active.set(entity('cell', 'd1'));
  t.is(active.get({ kind: 'driver', id: 'd1' }), driver, 'a new ref object finds it');
  t.not(active.get({ kind: 'cell', id: 'd1' }), driver);
  t.is(active.get({ kind: 'driver', id: 'd2' }), undefined);
  t.is(active.size, 2);
});

test('kinds and ids are told apart even where their joined key would be the same', (t) => {
  const active = new ActiveEntities<ReturnType<typeof entity>>();
  const a = entity('a', 'b:c');
  const b = entity('a:b', 'c');
  active.set(a);
  active.set(b);
  t.is(active.get({ kind: 'a', id: 'b:c' }), a);
  t.is(active.get({ kind: 'a:b', id: 'c' }), b);
  t.is(active.size, 2);
});

test('one entity per ref; removing one that was replaced leaves its successor', (t) => {
  const active = new ActiveEntities<ReturnType<typeof entity>>();
  const old = entity('booking', 'b1');
  const next = entity('booking', 'b1');
  active.set(old);
  active.set(next);
  t.is(active.size, 1);
  t.false(active.delete(old), 'the stale one is not the one held');
  t.is(active.get(old.self), next);
  t.true(active.delete(next));
  t.is(active.size, 0);
  t.deepEqual([...active.values()], []);
});

test('values lists every entity of every kind once', (t) => {
  const active = new ActiveEntities<ReturnType<typeof entity>>();
  const all = [entity('driver', '1'), entity('driver', '2'), entity('cell', 'x')];
  for (const e of all) active.set(e);
  t.deepEqual(new Set(active.values()), new Set(all));
});

// Minted ids (runtime/random-id.ts): random UUIDs after their prefix, each one flat string.
// An id kept in memory (an entity's recent command ids, a booking's id) must cost its
// characters, not the tree of pieces Node's randomUUID leaves (about 490 bytes).

import test from 'ava';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { randomId } from '../runtime/random-id.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('a random id is a version 4 UUID after its prefix, and never repeats', (t) => {
  const ids = Array.from({ length: 10_000 }, () => randomId('bk_'));
  for (const id of ids.slice(0, 100)) t.regex(id.slice(3), UUID);
  t.true(ids.every((id) => id.startsWith('bk_')));
  t.is(new Set(ids).size, ids.length);
  t.regex(randomId(), UUID);
});

test('kept ids cost their characters in the heap: well under the 490 bytes of a UUID left in pieces', (t) => {
  setFlagsFromString('--expose_gc');
  const gc = runInNewContext('gc') as () => void;
  const n = 50_000;
  gc(); gc();
  const before = process.memoryUsage().heapUsed;
  const kept = Array.from({ length: n }, () => randomId());
  gc(); gc();
  const perId = (process.memoryUsage().heapUsed - before) / n;
  t.is(kept.length, n);
  t.true(perId < 150, `${Math.round(perId)} bytes per kept id`);
});

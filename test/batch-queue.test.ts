// The one-batch-at-a-time queue of the batched stores (adapters/postgres/batch-queue.ts).

import test from 'ava';
import { BatchQueue, onePerKey } from '../adapters/postgres/batch-queue.ts';

test('what is pushed in one tick runs as one batch; what comes while it runs waits and goes together in the next', async (t) => {
  const batches: number[][] = [];
  let release!: () => void;
  const first = new Promise<void>((r) => { release = r; });
  const queue = new BatchQueue<number>({
    take: (q) => ({ batch: [...q], rest: [] }),
    run: async (batch) => { batches.push([...batch]); if (batches.length === 1) await first; },
  });
  for (const n of [1, 2, 3]) queue.push(n);
  await new Promise((r) => setImmediate(r));
  t.deepEqual(batches, [[1, 2, 3]]);
  for (const n of [4, 5]) queue.push(n);
  await new Promise((r) => setTimeout(r, 20));
  t.deepEqual(batches, [[1, 2, 3]], 'nothing else runs while a batch does');
  release();
  await queue.settled();
  t.deepEqual(batches, [[1, 2, 3], [4, 5]]);
});

test('onePerKey takes at most max in arrival order, and a second item of a key waits for a later batch', (t) => {
  const items = ['a1', 'b1', 'a2', 'c1', 'd1', 'b2'];
  const { batch, rest } = onePerKey(items, 3, (s) => s[0]!);
  t.deepEqual(batch, ['a1', 'b1', 'c1']);
  t.deepEqual(rest, ['a2', 'd1', 'b2']);
});

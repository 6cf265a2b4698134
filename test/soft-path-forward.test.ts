// Soft messages for a shard another node serves (SoftPath): the messages of one tick for one
// shard go as one record, and share its one outcome, one promise for all of them, not one
// each; entities' tells among them are settled with the record, so a sender waiting for room
// gets it once the record is taken, and hears of a record refused (or a log that throws)
// rather than waiting forever.

import test from 'ava';
import type { EntityRef } from '../actors/behavior.ts';
import type { SoftMessage } from '../runtime/ports.ts';
import { SoftPath } from '../runtime/soft-path.ts';

const ref = (id: string): EntityRef => ({ kind: 'driver', id });
const tick = () => new Promise((r) => setImmediate(r));

/** A path serving shard 0 only, every entity hashed to shard 1, whose log's appends are held until released. */
function remote(o: { throws?: boolean } = {}) {
  const appends: { shard: number; messages: readonly SoftMessage[]; done: () => void; fail: (e: Error) => void }[] = [];
  const errors: string[] = [];
  const soft = new SoftPath({
    log: {
      append: async () => undefined,
      appendSoft: (shard, messages) => {
        if (o.throws) throw new Error('cannot write this');
        return new Promise<void>((resolve, reject) => { appends.push({ shard, messages, done: resolve, fail: reject }); });
      },
    },
    host: { knows: () => true, activeShard: () => undefined, soft: () => 'applied' },
    shardOf: () => 1,
    holds: (shard) => shard === 0,
    closed: () => false,
    onError: (_e, context) => errors.push(context),
  });
  return { soft, appends, errors };
}

test('the messages of one tick for a shard served elsewhere go as one record and share its one promise', async (t) => {
  const p = remote();
  const outcomes = [1, 2, 3].map((n) => p.soft.deliverTo(ref(`d${n}`), { n }, n));
  t.true(outcomes.every((o) => o === outcomes[0]), 'one promise for the record, not one per message');
  await tick();
  t.is(p.appends.length, 1);
  t.deepEqual(p.appends[0]!.messages.map((m) => m.to.id), ['d1', 'd2', 'd3']);
  t.is(p.soft.stats().softForwarded, 0, 'not forwarded before the log has the record');
  p.appends[0]!.done();
  t.deepEqual(await Promise.all(outcomes), ['forwarded', 'forwarded', 'forwarded']);
  t.is(p.soft.stats().softForwarded, 3);
  t.not(p.soft.deliverTo(ref('d4'), {}, 4), outcomes[0], 'the next tick\'s messages are the next record\'s');
});

test('tells forwarded are settled with their record: a sender waiting for room gets it once the record is taken, or refused', async (t) => {
  const p = remote();
  const tells = Array.from({ length: 5_000 }, (_, i) => ({ to: ref(`d${i}`), message: { i } }));
  t.truthy(p.soft.tellFrom(ref('sender'), tells, 1), 'past the bound of tells in flight, the sender is told to wait');
  await tick();
  t.is(p.appends.length, 5, 'a record per 1,000 messages');
  for (const a of p.appends.slice(0, 4)) a.done();
  p.appends[4]!.fail(new Error('broker gone'));
  await tick();
  t.is(p.soft.tellFrom(ref('sender'), [], 2), undefined, 'every tell settled: room again');
  t.deepEqual(p.errors, ['1000 soft tell(s) to shard 1'], 'the refused record is reported once, for its tells');
  t.is(p.soft.stats().softForwarded, 4_000);
});

test('a log that throws instead of refusing: the record\'s senders hear of it and its tells are settled', async (t) => {
  const p = remote({ throws: true });
  const outcome = p.soft.deliverTo(ref('d1'), {}, 1);
  const tells = Array.from({ length: 5_000 }, (_, i) => ({ to: ref(`t${i}`), message: { i } }));
  t.truthy(p.soft.tellFrom(ref('sender'), tells, 1));
  await t.throwsAsync(Promise.resolve(outcome), { message: /did not take 1000 soft message\(s\): cannot write this/ });
  await tick();
  t.is(p.soft.tellFrom(ref('sender'), [], 2), undefined, 'its tells settled');
  t.is(p.soft.stats().softForwarded, 0);
});

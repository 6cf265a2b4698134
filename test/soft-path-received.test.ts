// A soft record from another node (SoftPath.received): each message is applied only when this
// node serves the record's shard and the message's entity belongs to it; an entity active here
// is known to be in the shard it was activated in, without hashing its ref again; the record is
// done once every message is, those applied at once and those that took a while alike.

import test from 'ava';
import type { EntityRef } from '../actors/behavior.ts';
import type { SoftOutcome } from '../runtime/entity-actor.ts';
import type { SoftMessage } from '../runtime/ports.ts';
import { SoftPath } from '../runtime/soft-path.ts';

const ref = (id: string): EntityRef => ({ kind: 'driver', id });
const msg = (id: string): SoftMessage => ({ to: ref(id), message: { type: 'location', id }, at: 1 });

/** A path whose host knows where each entity is active, and whose hashing is counted. */
function path(o: { active: Record<string, number>; hashed: Record<string, number>; held?: number[]; outcome?: (id: string) => SoftOutcome | Promise<SoftOutcome> }) {
  const applied: string[] = [];
  const hashedRefs: string[] = [];
  const errors: string[] = [];
  const soft = new SoftPath({
    // Only a durable outcome reaches the log: here it is down.
    log: { append: () => Promise.reject(new Error('log down')) },
    host: {
      knows: () => true,
      activeShard: (to) => o.active[to.id],
      soft: (to, _shard, message) => {
        applied.push(to.id);
        return o.outcome?.((message as { id: string }).id) ?? 'applied';
      },
    },
    shardOf: (to) => { hashedRefs.push(to.id); return o.hashed[to.id]!; },
    holds: (shard) => (o.held ?? [1]).includes(shard),
    closed: () => false,
    onError: (_e, context) => errors.push(context),
  });
  return { soft, applied, hashedRefs, errors };
}

test('a received message is applied only when its entity belongs to the record\'s shard, active here or not', async (t) => {
  // a: active here in shard 1; b: active here in shard 2 (the record says 1); c, d: not active, hashed to 1 and 2.
  const p = path({ active: { a: 1, b: 2 }, hashed: { a: 1, b: 2, c: 1, d: 2 } });
  await p.soft.received(1, [msg('a'), msg('b'), msg('c'), msg('d')]);
  t.deepEqual(p.applied, ['a', 'c']);
  t.deepEqual(p.hashedRefs, ['c', 'd'], 'an entity active here is not hashed: its activation knows its shard');
  t.like(p.soft.stats(), { softApplied: 2, softDropped: 2 });
});

test('a received record for a shard this node does not hold is dropped whole', async (t) => {
  const p = path({ active: { a: 3 }, hashed: { a: 3 }, held: [1] });
  await p.soft.received(3, [msg('a')]);
  t.deepEqual(p.applied, []);
  t.like(p.soft.stats(), { softApplied: 0, softDropped: 1 });
});

test('received resolves once every message is handled, those that took a while too; one whose command the log refused is counted dropped and reported', async (t) => {
  let finish!: () => void;
  const slow = new Promise<SoftOutcome>((resolve) => { finish = () => resolve('applied'); });
  const p = path({
    active: { a: 1, b: 1, c: 1 }, hashed: { a: 1, b: 1, c: 1 },
    outcome: (id) => (id === 'b' ? slow : id === 'c' ? 'durable' : 'applied'),
  });
  let done = false;
  const received = p.soft.received(1, [msg('a'), msg('b'), msg('c')]).then(() => { done = true; });
  await new Promise((r) => setImmediate(r));
  t.false(done, 'not done while b is being handled');
  t.like(p.soft.stats(), { softApplied: 1 });
  finish();
  await received;
  t.true(done);
  t.like(p.soft.stats(), { softApplied: 2, softDropped: 1 });
  t.deepEqual(p.errors, ['soft message to driver:c: sending it as a command failed']);
});

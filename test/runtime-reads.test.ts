// Queries answered from an entity's current state, without entering its mailbox: they do
// not wait behind a command's storage write, see the state before that command until the
// write succeeded, never see the state of a write that failed, reactivate a passivated
// entity, and are refused during a rebalance or a stop as before.

import test from 'ava';
import { MemoryJournal } from '../adapters/memory/journal.ts';
import { Activation } from '../runtime/activation.ts';
import type { CommandLog, CommandLogHandlers, JournalEntry, AppendOptions } from '../runtime/ports.ts';
import { counter, type CounterState } from './fixtures/counter.ts';
import { startRig, type Rig } from './helpers/rig.ts';
import { eventually } from './helpers/node-process.ts';

const ref = (id: string) => ({ kind: 'counter', id });
const get = (r: Rig, id: string) => r.region.ask<CounterState>(ref(id), { type: 'get' });

/** A journal whose appends to one key wait for a gate the test opens. */
function gatedJournal() {
  const journal = new MemoryJournal();
  const append = journal.append.bind(journal);
  const gate = { key: '', entered: Promise.withResolvers<void>(), open: Promise.withResolvers<void>() };
  journal.append = async (entry: JournalEntry, options?: AppendOptions) => {
    if (entry.persistenceKey === gate.key) {
      gate.entered.resolve();
      await gate.open.promise;
    }
    return append(entry, options);
  };
  return { journal, gate };
}

const within = <T>(promise: Promise<T>, ms: number) =>
  Promise.race([promise, new Promise<'waited'>((r) => setTimeout(() => r('waited'), ms))]);

test('a query while a command\'s journal write is held sees the previous state at once; after the write, the new one', async (t) => {
  const { journal, gate } = gatedJournal();
  const r = await startRig({ behaviors: [counter], journal });
  await r.region.request(ref('held'), { type: 'add', n: 1 });
  gate.key = 'counter:held';
  let settled = false;
  const pending = r.region.request(ref('held'), { type: 'add', n: 5 }).finally(() => { settled = true; });
  await gate.entered.promise;
  const answer = await within(get(r, 'held'), 1_000);
  t.not(answer, 'waited', 'the query did not wait for the write');
  t.is((answer as CounterState).total, 1, 'the state before the command');
  t.false(settled, 'the write is still held');
  const viaHost = await within(r.host.query(ref('held'), r.region.shardOf(ref('held')), { type: 'get' }), 1_000);
  t.is((viaHost as CounterState).total, 1);
  gate.open.resolve();
  const result = await pending;
  t.is(result.status, 'applied');
  // Read-your-writes: the outcome is heard only after the new state is published.
  t.is((await get(r, 'held')).total, 6);
  await r.stop();
});

test('a failed write never exposes the state the command computed; once storage is back the command applies', async (t) => {
  const journal = new MemoryJournal();
  const append = journal.append.bind(journal);
  const r = await startRig({ behaviors: [counter], journal });
  await r.region.request(ref('p'), { type: 'add', n: 1 });
  let failing = true;
  let failures = 0;
  journal.append = async (entry, options) => {
    if (failing && entry.persistenceKey === 'counter:p') { failures++; throw new Error('connection reset'); }
    return append(entry, options);
  };
  const pending = r.region.request(ref('p'), { type: 'add', n: 5 });
  const seen = new Set<number>();
  // Poisoned, stopped, recovered, retried, poisoned again...: ask all along.
  const until = Date.now() + 400;
  while (Date.now() < until) {
    seen.add((await get(r, 'p')).total);
    await new Promise((w) => setImmediate(w));
  }
  t.true(failures >= 2, `the write failed and was retried (${failures})`);
  t.true(r.errors.some((e) => e.includes('counter:p failed; it will recover')), 'the incarnation was poisoned');
  t.deepEqual([...seen], [1], 'only the journaled state was ever answered');
  failing = false;
  t.is((await pending).status, 'applied');
  t.is((await get(r, 'p')).total, 6);
  t.is(journal.count('counter:p'), 2);
  await r.stop();
});

test('a write that reached the journal but reported failure: the poisoned incarnation is not asked again, the recovered one answers', async (t) => {
  const journal = new MemoryJournal();
  const append = journal.append.bind(journal);
  const r = await startRig({ behaviors: [counter], journal });
  await r.region.request(ref('amb'), { type: 'add', n: 1 });
  let failOnce = true;
  journal.append = async (entry, options) => {
    await append(entry, options);
    if (failOnce && entry.persistenceKey === 'counter:amb') { failOnce = false; throw new Error('timeout after commit'); }
  };
  const pending = r.region.request(ref('amb'), { type: 'add', n: 5 });
  const seen: number[] = [];
  let done = false;
  void pending.finally(() => { done = true; });
  while (!done) {
    seen.push((await get(r, 'amb')).total);
    await new Promise((w) => setImmediate(w));
  }
  t.true(['applied', 'duplicate'].includes((await pending).status));
  t.is((await get(r, 'amb')).total, 6);
  const firstNew = seen.indexOf(6);
  t.true(seen.every((v, i) => (firstNew === -1 || i < firstNew ? v === 1 : v === 6)), `never back to the old state once the new one was seen: ${seen.join(',')}`);
  t.is(journal.count('counter:amb'), 2);
  await r.stop();
});

test('a query to an entity whose shard is stopped while it recovers is answered by that incarnation or refused, never by a second one', async (t) => {
  const journal = new MemoryJournal();
  const r = await startRig({ behaviors: [counter], journal, passivateAfterMs: 100 });
  await r.region.request(ref('mv'), { type: 'add', n: 4 });
  t.true(await eventually(async () => !r.host.isActive(ref('mv')), 60_000), 'passivated');
  const read = journal.read.bind(journal);
  const slow = Promise.withResolvers<void>();
  journal.read = async (...args) => { await slow.promise; return read(...args); };
  const shard = r.region.shardOf(ref('mv'));
  const activations = r.host.stats().activations;
  const asked = r.host.query(ref('mv'), shard, { type: 'get' }).then((v) => (v as CounterState).total, (e: Error) => e.name);
  await new Promise((w) => setTimeout(w, 20));
  const stopped = r.host.stopShards([shard]); // the shard is revoked while the entity recovers
  slow.resolve();
  await stopped;
  t.true([4, 'EntityStoppedError'].includes(await asked), String(await asked));
  t.is(r.host.stats().activations, activations + 1, 'no second incarnation was activated');
  t.false(r.host.isActive(ref('mv')));
  journal.read = read;
  await r.stop();
});

test('a query to a passivated entity reactivates it and sees its journaled state', async (t) => {
  const r = await startRig({ behaviors: [counter], passivateAfterMs: 100 });
  await r.region.request(ref('sleepy'), { type: 'add', n: 3 });
  t.true(await eventually(async () => !r.host.isActive(ref('sleepy')), 60_000), 'passivated');
  t.is((await get(r, 'sleepy')).total, 3);
  t.true(r.host.isActive(ref('sleepy')), 'active again');
  await r.stop();
});

test('queries keep an entity from being passivated', async (t) => {
  const r = await startRig({ behaviors: [counter], passivateAfterMs: 300 });
  await r.region.request(ref('busy'), { type: 'add', n: 1 });
  const until = Date.now() + 1_000;
  while (Date.now() < until) {
    t.is((await get(r, 'busy')).total, 1);
    t.true(r.host.isActive(ref('busy')), 'still active');
    await new Promise((w) => setTimeout(w, 50));
  }
  await r.stop();
});

test('a query during a rebalance is refused with ShardHandoffError, and answered once the join keeps the shard', async (t) => {
  let handlers: CommandLogHandlers | undefined;
  const capture = (log: CommandLog): CommandLog => ({
    shards: log.shards,
    append: (shard, command) => log.append(shard, command),
    appendMany: (entries) => log.appendMany(entries),
    start: (h) => { handlers = h; return log.start(h); },
    commit: (shard, offset) => log.commit(shard, offset),
    ...(log.drain ? { drain: () => log.drain!() } : {}),
    stop: () => log.stop(),
  });
  const r = await startRig({ behaviors: [counter], askTimeoutMs: 200, wrapLog: capture });
  await r.region.request(ref('rb'), { type: 'add', n: 2 });
  t.is((await get(r, 'rb')).total, 2);
  t.true(r.host.isActive(ref('rb')), 'active, so only the region can refuse it');
  handlers!.onRebalancing!();
  await t.throwsAsync(get(r, 'rb'), { name: 'ShardHandoffError' });
  const waiting = r.region.ask<CounterState>(ref('rb'), { type: 'get' }, 2_000);
  handlers!.onJoined!([...Array(r.region.shards).keys()]);
  t.is((await waiting).total, 2, 'an ask waiting on the hand-off is answered once the shard is kept');
  await r.stop();
});

test('a query after the node stopped is refused, not answered from memory', async (t) => {
  const r = await startRig({ behaviors: [counter], askTimeoutMs: 200 });
  await r.region.request(ref('bye'), { type: 'add', n: 1 });
  t.is((await get(r, 'bye')).total, 1);
  await r.stop();
  await t.throwsAsync(get(r, 'bye'), { name: 'ShardHandoffError' });
  const shard = r.region.shardOf(ref('bye'));
  await t.throwsAsync(r.host.query(ref('bye'), shard, { type: 'get' }), { message: /node is stopping/ });
});

test('an activation serves a published state only while active, and never again once poisoned', (t) => {
  const a = new Activation({ kind: 'counter', id: 'x' }, 'counter:x', 0, 0);
  a.publish({ state: 1 });
  t.is(a.current, undefined, 'recovering');
  a.on('recovered');
  t.deepEqual(a.current, { state: 1 });
  a.publish({ state: 2 });
  t.deepEqual(a.current, { state: 2 });
  a.on('poison');
  t.is(a.current, undefined, 'poisoned');
  a.publish({ state: 3 });
  a.on('passivate');
  t.is(a.current, undefined, 'a poisoned incarnation publishes nothing more');

  const b = new Activation({ kind: 'counter', id: 'y' }, 'counter:y', 0, 0);
  b.on('recovered');
  b.publish({ state: 1 });
  b.on('passivate');
  t.is(b.current, undefined, 'passivating');
  b.on('poison'); // a drained command's write failed while passivating
  b.publish({ state: 2 });
  t.is(b.current, undefined);
});

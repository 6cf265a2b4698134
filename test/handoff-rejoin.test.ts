// A node that comes back: paused or cut off past its group session, it may get its old
// shards back after another node held them meanwhile. What it still has in memory is then
// no longer true, and the epochs it holds are stale. These tests drive the region through
// the log's handlers (the real region, shard host and fences over in-memory storage that
// refuses writes under a stale epoch, as PostgreSQL does) and check that it serves every
// shard it is assigned, with the current state, and never moves past a command it left.

import test from 'ava';
import { MemoryJournal } from '../adapters/memory/journal.ts';
import { MemoryShardEpochs } from '../adapters/memory/shard-epochs.ts';
import { MemoryReminderStore } from '../adapters/memory/reminders.ts';
import { InProcessNotifier } from '../adapters/memory/notifier.ts';
import { ShardFences } from '../runtime/fencing.ts';
import { ShardHost } from '../runtime/shard-host.ts';
import { ShardRegion } from '../runtime/region.ts';
import { shardOf, parseEntityKey, type Placement } from '../runtime/entity.ts';
import type { CommandLog, CommandLogHandlers, Journal, LogRecord, ShardAssignment } from '../runtime/ports.ts';
import { counter, type CounterState } from './fixtures/counter.ts';

const P: Placement = { shards: 4, placementRes: 4 };
const ALL = [0, 1, 2, 3];
const x = { kind: 'counter', id: 'x' };
const S = shardOf(x, P);
/** Longer than any test here takes, however loaded the machine: a lease runs out only where a test says so. */
const LEASE_MS = 600_000;

async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A journal that refuses a shard's writes unless this node's epoch is the current one (as fenced PostgreSQL writes do). */
function fencedJournal(store: MemoryJournal, epochs: MemoryShardEpochs, fences: ShardFences): Journal {
  const check = (key: string, what: string) => {
    const shard = shardOf(parseEntityKey(key), P);
    const held = fences.epochOf(shard);
    if (held === undefined || epochs.current(shard)?.epoch !== held) throw fences.refused(shard, held, what);
  };
  return {
    append: async (e, o) => { check(e.persistenceKey, 'append'); return store.append(e, o); },
    read: (k, a, l) => store.read(k, a, l), findCommand: (k, c) => store.findCommand(k, c),
    latestSnapshot: (k) => store.latestSnapshot(k),
    saveSnapshot: async (s) => { check(s.persistenceKey, 'snapshot'); return store.saveSnapshot(s); },
    ping: () => store.ping(), close: () => store.close(),
  };
}

/** One node whose log is driven by the test: joins, leases and record batches as a group would give them. */
async function node(options: { lease: boolean; passivateAfterMs?: number }) {
  const epochs = new MemoryShardEpochs();
  const store = new MemoryJournal();
  const fences = new ShardFences(epochs);
  const commits = new Map<number, number>();
  const errors: string[] = [];
  let h!: CommandLogHandlers;
  const all: ShardAssignment = { owned: ALL, placement: new Map(ALL.map((s) => [s, 'a'])), nodes: ['a'] };
  const log: CommandLog = {
    shards: P.shards,
    start: async (handlers) => {
      h = handlers;
      if (options.lease) { h.onRebalancing!(); h.onLease!(Date.now() + LEASE_MS); h.onJoined!(ALL); }
      await h.onAssignment(all, [], ALL);
    },
    append: async () => undefined, appendMany: async () => undefined,
    commit: async (s, o) => { commits.set(s, Math.max(commits.get(s) ?? -1, o)); }, stop: async () => undefined,
  };
  const host = new ShardHost({
    journal: fencedJournal(store, epochs, fences), behaviors: [counter as never], passivateAfterMs: options.passivateAfterMs ?? 60_000,
    maxActiveEntities: 100, maxConcurrentRecoveries: 4, snapshotEvery: 0, onError: (_e, c) => errors.push(c),
  });
  const region = new ShardRegion({
    nodeId: 'a', placement: P, host, log, reminders: new MemoryReminderStore(), notifier: new InProcessNotifier(),
    askTimeoutMs: 1_000, fences, retryMinMs: 5, retryMaxMs: 20, onError: (_e, c) => errors.push(c),
  });
  await region.start();
  let offset = 0;
  const record = (id: string, n: number): LogRecord => ({ shard: S, offset: offset++, command: { id, to: x, message: { type: 'add', n }, at: Date.now() } });
  /** Another node's write of x under its own, newer epoch (what it journaled while it held the shard). */
  const writtenElsewhere = async (seq: number, n: number) => {
    await store.append({
      persistenceKey: 'counter:x', sequenceNr: seq, createdAt: Date.now(), tags: [],
      data: { v: 2, cmd: `elsewhere-${seq}`, at: 0, events: [{ type: 'added', n, by: 'v2' }], tells: [], timersSet: [], timersCancelled: [] },
    });
  };
  /**
   * The node was out of its group (its lease ran out: paused, cut off) and the group gives it
   * every shard again: a rebalance, a join, then the assignment with nothing gained.
   */
  const rejoin = async () => {
    h.onLease?.(Date.now() - 1);
    h.onRebalancing!();
    h.onLease?.(Date.now() + LEASE_MS);
    h.onJoined!(ALL);
    await h.onAssignment(all, [], []);
  };
  return { region, host, fences, epochs, store, commits, errors, handlers: () => h, record, writtenElsewhere, rejoin };
}

test('a node given its old shards back after another held them answers with the current state, and keeps serving them', async (t) => {
  const a = await node({ lease: true, passivateAfterMs: 300 });
  t.teardown(() => a.region.stop());
  t.true(await a.handlers().onRecords(S, [a.record('c0', 1)]));
  t.is((await a.region.ask<CounterState>(x, { type: 'get' })).total, 1);
  // Out of the group for a while: another node is given the shard, takes epoch 2 and handles a command of x.
  await a.epochs.acquire([S], 'b');
  await a.writtenElsewhere(2, 10);
  // The group gives the shard back, with nothing "gained" in the log's eyes.
  await a.rejoin();
  t.true(a.region.owns(S));
  t.is(a.fences.epochOf(S), a.epochs.current(S)?.epoch, 'a new epoch was taken');
  t.is((await a.region.ask<CounterState>(x, { type: 'get' })).total, 11, 'the journal holds 1 + 10');
  // Idle long enough to be passivated: its snapshot is written under the new epoch, not refused.
  await eventually('x passivated', () => !a.host.isActive(x));
  t.true(a.region.owns(S));
  t.is(a.region.unready(), undefined);
  t.deepEqual(a.region.unservedShards(), []);
  t.true(await a.handlers().onRecords(S, [a.record('c1', 100)]));
  t.is(a.commits.get(S), 1);
  t.is((await a.region.ask<CounterState>(x, { type: 'get' })).total, 111);
});

test('a rejoined shard is not answered from memory before its epoch is checked', async (t) => {
  const a = await node({ lease: true });
  t.teardown(() => a.region.stop());
  t.true(await a.handlers().onRecords(S, [a.record('c0', 1)]));
  await a.epochs.acquire([S], 'b');
  await a.writtenElsewhere(2, 10);
  const h = a.handlers();
  h.onLease!(Date.now() - 1); // out of the group for a while
  h.onRebalancing!();
  h.onLease!(Date.now() + LEASE_MS);
  h.onJoined!(ALL);
  // The join is known but the assignment step (which checks epochs) has not run: nothing is answered yet.
  t.is(a.region.askNow(x, { type: 'get' }), undefined);
  const answer = a.region.ask<CounterState>(x, { type: 'get' });
  await h.onAssignment({ owned: ALL, placement: new Map(ALL.map((s) => [s, 'a'])), nodes: ['a'] }, [], []);
  t.is((await answer).total, 11);
});

test('past its group session a node answers nothing from memory until the group confirms it again', async (t) => {
  const a = await node({ lease: true });
  t.teardown(() => a.region.stop());
  t.true(await a.handlers().onRecords(S, [a.record('c0', 1)]));
  t.is((await a.region.ask<CounterState>(x, { type: 'get' })).total, 1);
  // The last confirmation's session ran out (a SIGSTOP, a partition): the node may have been evicted.
  a.handlers().onLease!(Date.now() - 1);
  t.is(a.region.askNow(x, { type: 'get' }), undefined);
  await t.throwsAsync(a.region.ask(x, { type: 'get' }), { name: 'ShardHandoffError' });
  t.false(await a.handlers().onRecords(S, [a.record('c1', 10)]), 'a command batch is left, not handled');
  t.is(a.commits.get(S), 0, 'nothing committed past c0');
  // The group answers again (a heartbeat): the node was not evicted after all, and serves again.
  a.handlers().onLease!(Date.now() + LEASE_MS);
  t.is((await a.region.ask<CounterState>(x, { type: 'get' })).total, 1);
});

test('a shard the group still assigns here is taken back after a refused write, once the group confirms this node twice', async (t) => {
  const a = await node({ lease: true });
  t.teardown(() => a.region.stop());
  t.true(await a.handlers().onRecords(S, [a.record('c0', 1)]));
  // A straggling node takes the shard's epoch after this node checked it (it was assigned the shard a generation ago).
  await a.epochs.acquire([S], 'b');
  const refused = a.handlers().onRecords(S, [a.record('c1', 10)]);
  t.false(await refused, 'the refused command is left for whoever serves the shard');
  t.false(a.region.owns(S));
  t.is(a.commits.get(S), 0);
  t.deepEqual(a.region.unservedShards().map((u) => [u.shard, u.reason]), [[S, 'fenced']]);
  t.regex(a.region.unready() ?? '', new RegExp(`shard\\(s\\) ${S} assigned but not served`));
  t.false(await a.handlers().onRecords(S, [{ ...a.record('c1', 10), offset: 1 }]), 'still left while dropped');
  // One confirmation may have been on its way before the refusal: the second one takes the shard back.
  a.handlers().onLease!(Date.now() + LEASE_MS);
  t.false(a.region.owns(S));
  a.handlers().onLease!(Date.now() + LEASE_MS);
  await eventually('the shard is taken back', () => a.region.owns(S));
  t.is(a.fences.epochOf(S), a.epochs.current(S)?.epoch);
  t.true(await a.handlers().onRecords(S, [{ shard: S, offset: 1, command: { id: 'c1', to: x, message: { type: 'add', n: 10 }, at: Date.now() } }]));
  t.is(a.commits.get(S), 1);
  t.is((await a.region.ask<CounterState>(x, { type: 'get' })).total, 11);
  t.is(a.region.unready(), undefined);
});

test('without a group (the in-process log) a fenced shard is not taken back, and /ready says why', async (t) => {
  const a = await node({ lease: false });
  t.teardown(() => a.region.stop());
  t.true(await a.handlers().onRecords(S, [a.record('c0', 1)]));
  await a.epochs.acquire([S], 'b');
  t.false(await a.handlers().onRecords(S, [a.record('c1', 10)]));
  t.false(a.region.owns(S));
  t.regex(a.region.unready() ?? '', /assigned but not served: a write was refused .*another process writes this storage/);
  t.deepEqual(a.region.unservedShards().map((u) => u.reason), ['fenced']);
});

test('a join while the node stayed in its group (its lease never ran out) keeps serving the kept shards without a pause', async (t) => {
  const a = await node({ lease: true });
  t.teardown(() => a.region.stop());
  t.true(await a.handlers().onRecords(S, [a.record('c0', 1)]));
  const h = a.handlers();
  h.onRebalancing!();
  h.onLease!(Date.now() + LEASE_MS);
  h.onJoined!(ALL);
  // Answered at once from the entity's state, before the assignment step runs.
  t.is(a.region.askNow<CounterState>(x, { type: 'get' })?.value.total, 1);
});

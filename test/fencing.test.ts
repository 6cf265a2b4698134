// Fencing tokens on real PostgreSQL: a node that gains a shard takes a new epoch for it,
// and every write of the shard made under an older epoch is refused and changes nothing
// (runtime/fencing.ts, adapters/postgres/shard-epochs.ts). A node whose write is refused
// stops the shard at once.

import test from 'ava';
import pg from 'pg';
import { openOrm, type Orm } from '../adapters/postgres/orm.ts';
import { PostgresJournal } from '../adapters/postgres/journal.ts';
import { PostgresReminderStore } from '../adapters/postgres/reminders.ts';
import { PostgresDeadLetterStore } from '../adapters/postgres/dead-letters.ts';
import { PostgresShardEpochs } from '../adapters/postgres/shard-epochs.ts';
import { Projector, type Projection } from '../adapters/postgres/projections.ts';
import { InProcessCommandLog } from '../adapters/file/command-log.ts';
import { InProcessNotifier } from '../adapters/memory/notifier.ts';
import { MemoryShardEpochs } from '../adapters/memory/shard-epochs.ts';
import { ShardFencedError } from '../runtime/errors.ts';
import { ShardFences } from '../runtime/fencing.ts';
import { shardOf, type Placement } from '../runtime/entity.ts';
import { ShardRegion } from '../runtime/region.ts';
import { ShardHost } from '../runtime/shard-host.ts';
import { timerCommandId } from '../runtime/timers.ts';
import type { CommandEnvelope, Epoch, JournalEntry, WriteFence } from '../runtime/ports.ts';
import { Metrics } from '../http/metrics.ts';
import { counter, type CounterState } from './fixtures/counter.ts';
import { freshDatabase } from './helpers/services.ts';

const PLACEMENT: Placement = { shards: 4, placementRes: 4 };
const ref = (id: string) => ({ kind: 'counter', id });

async function database(t: { teardown(f: () => Promise<void>): void }): Promise<{ orm: Orm; url: string }> {
  const db = await freshDatabase();
  const orm = await openOrm({ url: db.url, poolMax: 4 });
  t.teardown(async () => { await orm.close(true); await db.drop(); });
  return { orm, url: db.url };
}

async function query<T>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try { return (await client.query(sql, params)).rows as T[]; } finally { await client.end(); }
}

/** A fence that always writes with one epoch, and counts what storage refused. */
function fixedFence(epoch: Epoch): WriteFence & { refusals: number } {
  return {
    refusals: 0,
    epochOf: () => epoch,
    refused(shard, e, what) { this.refusals++; return new ShardFencedError(shard, e, what); },
  };
}

async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const entry = (key: string, seq: number): JournalEntry => ({
  persistenceKey: key, sequenceNr: seq, createdAt: Date.now(), tags: [],
  data: { v: 2, cmd: `c-${seq}`, at: 0, events: [{ type: 'added', n: 1 }], tells: [], timersSet: [], timersCancelled: [] },
});

test('epochs are taken by compare-and-set: each acquisition is one more, owned by the taker', async (t) => {
  const { orm, url } = await database(t);
  const epochs = new PostgresShardEpochs(orm);
  t.deepEqual([...await epochs.acquire([0, 1], 'a')], [[0, 1], [1, 1]]);
  t.deepEqual([...await epochs.acquire([1], 'b')], [[1, 2]]);
  const rows = await query<{ shard: number; epoch: string; owner: string }>(url, 'select shard, epoch, owner from shard_epoch order by shard');
  t.deepEqual(rows.map((r) => [r.shard, Number(r.epoch), r.owner]), [[0, 1, 'a'], [1, 2, 'b']]);
  const memory = new MemoryShardEpochs();
  t.is((await memory.acquire([3], 'a')).get(3), 1);
  t.is((await memory.acquire([3], 'b')).get(3), 2);
});

test('every write kind made with a stale epoch is refused and changes nothing; with the current one it succeeds', async (t) => {
  const { orm, url } = await database(t);
  const key = 'counter:fenced';
  const shard = shardOf(ref('fenced'), PLACEMENT);
  const epochs = new PostgresShardEpochs(orm);
  t.is((await epochs.acquire([shard], 'old')).get(shard), 1);
  t.is((await epochs.acquire([shard], 'new')).get(shard), 2);
  const stale = fixedFence(1);
  const current = fixedFence(2);

  // Journal append and snapshot.
  const staleJournal = new PostgresJournal(orm, PLACEMENT, stale);
  const journal = new PostgresJournal(orm, PLACEMENT, current);
  await t.throwsAsync(staleJournal.append(entry(key, 1)), { instanceOf: ShardFencedError });
  t.deepEqual(await journal.read(key, 0, 10), []);
  await journal.append(entry(key, 1));
  t.is((await journal.read(key, 0, 10)).length, 1);
  await t.throwsAsync(staleJournal.append(entry(key, 2)), { instanceOf: ShardFencedError });
  t.is((await journal.read(key, 0, 10)).length, 1);
  await t.throwsAsync(staleJournal.saveSnapshot({ persistenceKey: key, sequenceNr: 1, data: { stale: true }, createdAt: Date.now() }), { instanceOf: ShardFencedError });
  t.is(await journal.latestSnapshot(key), undefined);
  await journal.saveSnapshot({ persistenceKey: key, sequenceNr: 1, data: { fresh: true }, createdAt: Date.now() });
  t.deepEqual((await journal.latestSnapshot(key))?.data, { fresh: true });
  // An older snapshot under the current epoch is skipped, not refused.
  await journal.saveSnapshot({ persistenceKey: key, sequenceNr: 0, data: { older: true }, createdAt: Date.now() });
  t.deepEqual((await journal.latestSnapshot(key))?.data, { fresh: true });
  await t.throwsAsync(staleJournal.saveSnapshot({ persistenceKey: key, sequenceNr: 5, data: { stale: true }, createdAt: Date.now() }), { instanceOf: ShardFencedError });
  t.deepEqual((await journal.latestSnapshot(key))?.data, { fresh: true });

  // Reminders: set and clear.
  const staleReminders = new PostgresReminderStore(orm, stale);
  const reminders = new PostgresReminderStore(orm, current);
  const reminder = { shard, entityKey: key, name: 'alarm', dueAt: Date.now() + 60_000 };
  await t.throwsAsync(staleReminders.set(reminder), { instanceOf: ShardFencedError });
  t.deepEqual(await reminders.forShards([shard]), []);
  await reminders.set(reminder);
  await t.throwsAsync(staleReminders.set({ ...reminder, dueAt: reminder.dueAt + 1 }), { instanceOf: ShardFencedError });
  await t.throwsAsync(staleReminders.clear(key, 'alarm', shard), { instanceOf: ShardFencedError });
  t.deepEqual((await reminders.forShards([shard])).map((r) => r.dueAt), [reminder.dueAt]);
  await reminders.clear(key, 'missing', shard); // nothing to delete is not a refusal
  await reminders.clear(key, 'alarm', shard);
  t.deepEqual(await reminders.forShards([shard]), []);

  // Dead letters.
  const command: CommandEnvelope = { id: 'dl-1', to: ref('fenced'), message: { type: 'boom' }, at: Date.now() };
  const letter = { id: 'dl-1', shard, offset: 3, command, failure: { kind: 'reducer_failed', message: 'boom' }, attempts: 1, at: Date.now() };
  const staleLetters = new PostgresDeadLetterStore(orm, stale);
  const letters = new PostgresDeadLetterStore(orm, current);
  await t.throwsAsync(staleLetters.add(letter), { instanceOf: ShardFencedError });
  t.is(await letters.get('dl-1'), undefined);
  await letters.add(letter);
  await t.throwsAsync(staleLetters.add(letter), { instanceOf: ShardFencedError });
  t.is((await letters.get('dl-1'))?.attempts, 1);

  // Projection offsets: the stale batch is rolled back whole (its view row too).
  await query(url, 'create table fenced_view (key text primary key)');
  const viewing: Projection = {
    name: 'fenced', kind: 'counter', tables: ['fenced_view'],
    async apply(sql, rows) { for (const r of rows) await sql('insert into fenced_view (key) values (?) on conflict do nothing', [r.key]); },
  };
  const projectorOf = (fence: WriteFence) => new Projector({ orm, projections: [viewing], owned: () => [shard], totalShards: PLACEMENT.shards, fence, pollMs: 50 });
  const staleProjector = projectorOf(stale);
  staleProjector.start();
  await eventually('the stale projector fails', () => staleProjector.status()[0]!.failures > 0);
  await staleProjector.stop();
  t.regex(staleProjector.status()[0]!.lastError ?? '', /refused/);
  t.deepEqual(await query(url, 'select * from projection_offset'), []);
  t.deepEqual(await query(url, 'select * from fenced_view'), []);
  const projector = projectorOf(current);
  projector.start();
  await eventually('the current projector moves the offset', async () => (await query(url, 'select * from projection_offset')).length === 1);
  await projector.stop();
  t.deepEqual(await query<{ key: string }>(url, 'select key from fenced_view'), [{ key }]);

  t.true(stale.refusals >= 9);
  t.is(current.refusals, 0);
});

/** A node over the shared database: its own in-process log (it believes it owns every shard), fenced storage. */
function nodeOn(orm: Orm, nodeId: string) {
  const fences = new ShardFences(new PostgresShardEpochs(orm));
  const errors: string[] = [];
  const onError = (_e: unknown, context: string) => { errors.push(context); };
  const appended: CommandEnvelope[] = [];
  const inner = new InProcessCommandLog({ shards: PLACEMENT.shards, nodeId });
  const host = new ShardHost({
    journal: new PostgresJournal(orm, PLACEMENT, fences), behaviors: [counter as never], passivateAfterMs: 60_000,
    maxActiveEntities: 10_000, maxConcurrentRecoveries: 8, snapshotEvery: 0, onError,
  });
  const region = new ShardRegion({
    nodeId, placement: PLACEMENT, host, notifier: new InProcessNotifier(), askTimeoutMs: 5_000, retryMinMs: 5, retryMaxMs: 50,
    reminders: new PostgresReminderStore(orm, fences), deadLetters: new PostgresDeadLetterStore(orm, fences), fences, onError,
    log: {
      shards: inner.shards,
      append: async (shard, command) => { appended.push(command); await inner.append(shard, command); },
      appendMany: async (entries) => { appended.push(...entries.map((e) => e.command)); await inner.appendMany(entries); },
      start: (h) => inner.start(h), commit: (s, o) => inner.commit(s, o), stop: () => inner.stop(),
    },
  });
  return { region, host, fences, appended, errors };
}

test('a node whose shard was taken by another stops it on its first fenced write: no timers, no asks, no rows', async (t) => {
  const { orm, url } = await database(t);
  const shard = shardOf(ref('x'), PLACEMENT);
  const yId = Array.from({ length: 100 }, (_, i) => `y${i}`).find((id) => shardOf(ref(id), PLACEMENT) === shard)!;
  const a = nodeOn(orm, 'node-a');
  t.teardown(() => a.region.stop());
  await a.region.start();
  t.true(a.region.owns(shard));
  t.is(a.fences.epochOf(shard), 1);

  const alarmAt = Date.now() + 6_000;
  t.is((await a.region.request(ref('x'), { type: 'alarm.set', at: alarmAt })).status, 'applied');
  t.is((await a.region.request(ref(yId), { type: 'add', n: 1 })).status, 'applied');
  const rowsOf = async () => Number((await query<{ n: string }>(url, 'select count(*) as n from journal where shard = $1', [shard]))[0]!.n);
  const before = await rowsOf();

  // Another node takes every shard (a new epoch) while node-a still believes it owns them.
  const b = nodeOn(orm, 'node-b');
  t.teardown(() => b.region.stop());
  await b.region.start();
  t.is(b.fences.epochOf(shard), 2);
  t.true(a.region.owns(shard), 'node-a has not noticed yet');
  const takenOver = await rowsOf();

  // node-a's next write of the shard is refused, and the shard is stopped there.
  await a.region.tell(ref(yId), { type: 'add', n: 10 }, { id: 'stale-1' });
  await eventually('node-a drops the shard', () => !a.region.owns(shard));
  const appendedBeforeDrop = a.appended.length;
  t.true(a.region.stats().fencedWrites > 0);
  t.is(a.region.stats().shardsFenced, 1);
  t.is(a.fences.epochOf(shard), undefined);
  const metrics = new Metrics({ region: a.region, host: a.host });
  const exposed = await metrics.registry.getSingleMetricAsString('dispatch_fenced_writes_total');
  const value = Number(/^dispatch_fenced_writes_total (\d+)/m.exec(exposed)?.[1]);
  t.true(value > 0, exposed);
  await eventually('node-a stops the entities of the shard', () => (a.host.stats().activeByShard.get(shard) ?? 0) === 0);

  // Asks fail with a retryable error (503 at the edge); other shards are still served.
  const asked = await t.throwsAsync(a.region.ask(ref('x'), { type: 'get' }));
  t.is(asked?.name, 'NotOwnerError');

  // The alarm's due time passes: node-a does not fire it (its timers are disarmed).
  await new Promise((r) => setTimeout(r, Math.max(0, alarmAt - Date.now()) + 1_000));
  t.false(a.appended.slice(appendedBeforeDrop).some((c) => c.id === timerCommandId(ref('x'), 'alarm', alarmAt)), 'node-a fired no timer of the lost shard');
  t.deepEqual(await query(url, "select * from journal where data->>'cmd' = 'stale-1'"), [], 'the stale write is nowhere');
  // Whatever was journaled after the take-over on that shard is node-b's (its alarm of x), never node-a's y.
  const ys = await query<{ n: string }>(url, 'select count(*) as n from journal where persistence_key = $1', [`counter:${yId}`]);
  t.is(Number(ys[0]!.n), 1);
  t.is(takenOver, before);

  // The new owner carries on from the journal.
  const got = await b.region.ask<CounterState>(ref(yId), { type: 'get' });
  t.is(got.total, 1);
  t.is((await b.region.request(ref(yId), { type: 'add', n: 2 })).status, 'applied');
});

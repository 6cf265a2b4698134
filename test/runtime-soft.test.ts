// The soft path (region.tellSoft, durable:false tells): GPS fixes and a driver's copy
// in its cell reach their entities without a command id, a journal row or a log record
// when this node serves the shard; for a shard another node owns they travel batched,
// many to one Kafka record, and the owner applies them. A soft message whose outcome
// would have to be journaled is never applied softly: it goes through the log as a command.

import test, { type ExecutionContext } from 'ava';
import { randomUUID } from 'node:crypto';
import { latLngToCell } from 'h3-js';
import { createKafka } from '../adapters/kafka/client.ts';
import { KafkaCommandLog } from '../adapters/kafka/command-log.ts';
import { MemoryJournal } from '../adapters/memory/journal.ts';
import { MemoryReminderStore } from '../adapters/memory/reminders.ts';
import { InProcessNotifier } from '../adapters/memory/notifier.ts';
import { DEFAULT_CELL, makeCellBehavior, type DriverCopy } from '../actors/cell.ts';
import { makeDriverBehavior, type DriverState } from '../actors/driver.ts';
import type { EntityRef } from '../actors/behavior.ts';
import { ShardRegion } from '../runtime/region.ts';
import { ShardHost } from '../runtime/shard-host.ts';
import type { CommandEnvelope, CommandLog, JournalEntry, SoftMessage } from '../runtime/ports.ts';
import { counter, type CounterState } from './fixtures/counter.ts';
import { startRig } from './helpers/rig.ts';
import { kafkaBrokers } from './helpers/services.ts';
import { eventually } from './helpers/node-process.ts';
import { MemoryShardOffsets } from '../adapters/memory/shard-offsets.ts';
import { offsetsOf } from './helpers/offsets.ts';

const CELL_RES = 7;

/** A memory journal that counts every row written. */
class CountingJournal extends MemoryJournal {
  rows = 0;
  override async append(entry: JournalEntry): Promise<void> {
    this.rows++;
    await super.append(entry);
  }
}

/** Counts what reaches the command log: commands and soft records. */
function countingLog(log: CommandLog) {
  const counts = { commands: 0, softRecords: 0, softMessages: 0, commandsTo: [] as CommandEnvelope[] };
  const wrapped: CommandLog = {
    shards: log.shards,
    append: (shard, command) => { counts.commands++; counts.commandsTo.push(command); return log.append(shard, command); },
    appendMany: (entries) => { counts.commands += entries.length; counts.commandsTo.push(...entries.map((e) => e.command)); return log.appendMany(entries); },
    ...(log.appendSoft ? {
      appendSoft: (shard: number, messages: readonly SoftMessage[]) => {
        counts.softRecords++;
        counts.softMessages += messages.length;
        return log.appendSoft!(shard, messages);
      },
    } : {}),
    start: (handlers) => log.start(handlers),
    commit: (shard, offset) => log.commit(shard, offset),
    drain: () => log.drain!(),
    stop: () => log.stop(),
  };
  return { counts, wrapped };
}

async function city(t: ExecutionContext) {
  const journal = new CountingJournal();
  let counted: ReturnType<typeof countingLog> | undefined;
  const rig = await startRig({
    shards: 8, journal,
    behaviors: [makeDriverBehavior({ cellRes: CELL_RES, offerTimeoutMs: 15_000 }), makeCellBehavior(DEFAULT_CELL), counter],
    wrapLog: (log) => (counted = countingLog(log)).wrapped,
  });
  t.teardown(() => rig.stop());
  return { ...rig, journal, counts: counted!.counts };
}

const at = (lat: number, lng: number, when: number) => ({ lat, lng, at: when });
const driverCell = (lat: number, lng: number): EntityRef => ({ kind: 'cell', id: latLngToCell(lat, lng, CELL_RES) });

async function copyIn(region: ShardRegion, cell: EntityRef, driverId: string): Promise<DriverCopy | undefined> {
  return (await region.ask<DriverCopy[]>(cell, { type: 'drivers' })).find((c) => c.driverId === driverId);
}

test('a soft fix reaches the driver and its cell copy, with no journal row and no log record', async (t) => {
  const c = await city(t);
  const driver = { kind: 'driver', id: 'd1' };
  t.is((await c.region.request(driver, { type: 'online', vehicleType: 'economy' })).status, 'applied');
  const rows = c.journal.rows;
  const commands = c.counts.commands;

  const now = Date.now();
  t.is(await c.region.tellSoft(driver, { type: 'location', fix: at(41.3874, 2.1686, now) }), 'applied');
  // The first fix sets the cell copy; later ones move it (and, here, to another cell).
  for (let i = 1; i <= 50; i++) t.is(await c.region.tellSoft(driver, { type: 'location', fix: at(41.3874 + i * 0.001, 2.1686, now + i) }), 'applied');
  const last = at(41.3874 + 50 * 0.001, 2.1686, now + 50);

  const state = await c.region.ask<DriverState>(driver, { type: 'get' }).catch(() => undefined);
  const view = await c.region.ask<{ status: string }>(driver, { type: 'get' });
  t.truthy(state ?? view);
  t.true(await eventually(async () => (await copyIn(c.region, driverCell(last.lat, last.lng), 'd1'))?.lat === last.lat), 'the cell shows the newest fix');
  const first = driverCell(41.3874, 2.1686);
  if (first.id !== driverCell(last.lat, last.lng).id) {
    // The remove travels to the old cell as its own soft tell: it arrives, but not
    // necessarily before the newest cell shows the newest fix.
    t.true(await eventually(async () => (await copyIn(c.region, first, 'd1')) === undefined), 'the copy left the cell the driver left');
  }
  t.is(c.journal.rows, rows, 'no journal row for 51 fixes and their cell copies');
  t.is(c.counts.commands, commands, 'no log record either');
  const stats = c.region.stats();
  t.true(stats.softApplied >= 51, `applied softly: ${stats.softApplied}`);
  t.is(stats.softDurable, 0);
  t.is(stats.softForwarded, 0, 'embedded: nothing to forward');
});

test('tellSoftSoon answers at once when the entity took the message at once, else a promise of the same answer', async (t) => {
  const c = await city(t);
  const ref = { kind: 'counter', id: `soon-${randomUUID().slice(0, 6)}` };
  // Not active yet: it is activated first, so the answer comes later.
  const first = c.region.tellSoftSoon(ref, { type: 'seen', at: 1 });
  t.true(first instanceof Promise, 'an entity not active here answers through a promise');
  t.is(await first, 'applied');
  // Active and idle: taken at once, answered at once (no promise per message).
  t.is(c.region.tellSoftSoon(ref, { type: 'seen', at: 2 }), 'applied');
  t.is((await c.region.ask<CounterState>(ref, { type: 'get' })).lastSeen, 2);
  t.is(c.region.tellSoftSoon(ref, { type: 'add', n: 1 }) instanceof Promise, true, 'an outcome to journal goes through the log: a promise');
});

test('soft messages handled at once count toward the soft snapshot, and a snapshot keeps the state it was taken at', async (t) => {
  const journal = new MemoryJournal();
  const rig = await startRig({ shards: 8, journal, behaviors: [counter] });
  t.teardown(() => rig.stop());
  const ref = { kind: 'counter', id: `snap-${randomUUID().slice(0, 6)}` };
  // The counter snapshots soft state every 5 changes (softSnapshotEvery).
  for (let i = 1; i <= 12; i++) t.is(await rig.region.tellSoft(ref, { type: 'seen', at: i }), 'applied');
  t.is((await rig.region.ask<CounterState>(ref, { type: 'get' })).lastSeen, 12);
  const snapshot = await journal.latestSnapshot(`counter:${ref.id}`);
  t.is((snapshot?.data as { state: CounterState } | undefined)?.state.lastSeen, 10, 'the tenth change is the last snapshotted');
  t.is((snapshot?.data as { unsnapshotted: number }).unsnapshotted, 0);
  // A crash: a second node on the same journal recovers up to the snapshot.
  const second = await startRig({ shards: 8, journal, behaviors: [counter] });
  t.teardown(() => second.stop());
  t.is((await second.region.ask<CounterState>(ref, { type: 'get' })).lastSeen, 10);
});

test('an older fix after a newer one is ignored, by the driver and in its cell', async (t) => {
  const c = await city(t);
  const driver = { kind: 'driver', id: 'd2' };
  await c.region.request(driver, { type: 'online', vehicleType: 'economy' });
  const now = Date.now();
  const newer = at(40.7300, -73.9900, now);
  const older = at(40.7600, -73.9500, now - 10_000);
  await c.region.tellSoft(driver, { type: 'location', fix: newer });
  await c.region.tellSoft(driver, { type: 'location', fix: older });
  await c.region.tellSoft(driver, { type: 'location.batch', fixes: [older, at(40.75, -73.96, now - 5_000)] });
  t.true(await eventually(async () => (await copyIn(c.region, driverCell(newer.lat, newer.lng), 'd2'))?.lat === newer.lat));
  await new Promise((r) => setTimeout(r, 50));
  t.is(await copyIn(c.region, driverCell(older.lat, older.lng), 'd2'), undefined, 'the older fix moved nothing');
  const copy = await copyIn(c.region, driverCell(newer.lat, newer.lng), 'd2');
  t.is(copy?.lng, newer.lng);
});

test('a soft message whose outcome would be journaled is not applied softly: it is sent as a command and applied once', async (t) => {
  const c = await city(t);
  const ref = { kind: 'counter', id: `soft-${randomUUID().slice(0, 6)}` };
  const rows = c.journal.rows;
  const commands = c.counts.commands;
  // Soft state only: applied, nothing written.
  t.is(await c.region.tellSoft(ref, { type: 'seen', at: 42 }), 'applied');
  t.is((await c.region.ask<CounterState>(ref, { type: 'get' })).lastSeen, 42);
  t.is(c.journal.rows, rows);

  // An event: the soft path refuses it, the log carries it, the entity journals it.
  t.is(await c.region.tellSoft(ref, { type: 'add', n: 5 }), 'durable');
  t.is(c.counts.commands, commands + 1, 'sent as one command');
  t.true(await eventually(async () => (await c.region.ask<CounterState>(ref, { type: 'get' })).total === 5));
  t.is(c.journal.rows, rows + 1, 'journaled once, by the command');
  // A refusal, a timer, a durable tell: each would be journaled, so none is applied softly.
  t.is(await c.region.tellSoft(ref, { type: 'take', n: 100 }), 'durable');
  t.is(await c.region.tellSoft(ref, { type: 'alarm.set', at: Date.now() + 3_600_000 }), 'durable');
  t.is(await c.region.tellSoft(ref, { type: 'forward', to: `${ref.id}-b`, n: 1 }), 'durable');
  t.true(await eventually(async () => (await c.region.ask<CounterState>({ kind: 'counter', id: `${ref.id}-b` }, { type: 'get' })).total === 1));
  t.is((await c.region.ask<CounterState>(ref, { type: 'get' })).total, 5, 'the refused take changed nothing');
  t.is(c.region.stats().softDurable, 4);
  // A reducer that throws on a soft message drops it: nothing applied, nothing written, the entity lives on.
  const before = c.journal.rows;
  t.is(await c.region.tellSoft(ref, { type: 'boom' }), 'dropped');
  t.is(c.journal.rows, before);
  t.is((await c.region.ask<CounterState>(ref, { type: 'get' })).total, 5);
});

test('a driver without a presence timer gets it through the log: its fix is applied as a command, not dropped', async (t) => {
  const c = await city(t);
  const driver = { kind: 'driver', id: 'd3' };
  await c.region.request(driver, { type: 'online', vehicleType: 'economy' });
  // Stopping the entity without a snapshot (the soft `presence` flag is lost), as a replay after a crash does.
  await c.host.stopShards([c.region.shardOf(driver)], { snapshot: false });
  const commands = c.counts.commands;
  const fix = at(40.73, -73.99, Date.now());
  t.is(await c.region.tellSoft(driver, { type: 'location', fix }), 'durable');
  t.true(c.counts.commands > commands);
  t.true(await eventually(async () => (await copyIn(c.region, driverCell(fix.lat, fix.lng), 'd3'))?.lat === fix.lat));
  // The timer is set now: the next fix is soft again.
  t.is(await c.region.tellSoft(driver, { type: 'location', fix: at(40.731, -73.99, Date.now() + 1) }), 'applied');
});

// --- Two members on a real Kafka broker ---

interface Member { readonly node: string; readonly region: ShardRegion; readonly journal: CountingJournal; readonly counts: ReturnType<typeof countingLog>['counts'] }

async function member(t: ExecutionContext, node: string, topic: string, shards: number): Promise<Member> {
  const brokers = (await kafkaBrokers()).split(',');
  const journal = new CountingJournal();
  const host = new ShardHost({
    journal, behaviors: [counter as never], passivateAfterMs: 60_000, maxActiveEntities: 100_000, maxConcurrentRecoveries: 16, snapshotEvery: 0,
  });
  const { counts, wrapped } = countingLog(new KafkaCommandLog({
    kafka: createKafka({ brokers, clientId: `soft-${node}` }), topic, groupId: `${topic}.group`, shards, nodeId: node,
    sessionTimeoutMs: 6_000, heartbeatIntervalMs: 500, offsets: new MemoryShardOffsets({ table: offsetsOf(topic) }),
  }));
  const region = new ShardRegion({
    nodeId: node, placement: { shards, placementRes: 4 }, log: wrapped, host, reminders: new MemoryReminderStore(),
    notifier: new InProcessNotifier(), askTimeoutMs: 3_000, retryMinMs: 20, retryMaxMs: 200,
  });
  t.teardown(() => region.stop());
  await region.start();
  return { node, region, journal, counts };
}

test.serial('a soft message for a shard another node owns goes to it through Kafka, many to a record, and the owner applies it', async (t) => {
  const topic = `test.${randomUUID().slice(0, 8)}.commands`;
  const shards = 4;
  const a = await member(t, 'a', topic, shards);
  const b = await member(t, 'b', topic, shards);
  t.true(await eventually(async () => a.region.stats().owned.length > 0 && b.region.stats().owned.length > 0
    && a.region.stats().owned.length + b.region.stats().owned.length === shards && a.region.ready && b.region.ready, 60_000), 'both members own shards');
  // Entities on shards b owns, asked of b; a tells them.
  const theirs = Array.from({ length: 400 }, (_, i) => ({ kind: 'counter', id: `k${i}` })).filter((r) => b.region.owns(b.region.shardOf(r))).slice(0, 20);
  t.true(theirs.length >= 5);
  const shardsOf = new Set(theirs.map((r) => b.region.shardOf(r)));
  const rowsA = a.journal.rows;
  const rowsB = b.journal.rows;

  // 10 fixes each, all in one tick: one record per shard.
  const told = theirs.flatMap((ref) => Array.from({ length: 10 }, (_, i) => a.region.tellSoft(ref, { type: 'seen', at: 1_000 + i })));
  t.deepEqual(new Set(await Promise.all(told)), new Set(['forwarded']));
  t.is(a.counts.softRecords, shardsOf.size, `${theirs.length * 10} soft messages in ${a.counts.softRecords} record(s)`);
  t.is(a.counts.softMessages, theirs.length * 10);
  t.true(await eventually(async () => {
    // In order per entity: each ends with the last one told.
    for (const ref of theirs) if ((await b.region.ask<CounterState>(ref, { type: 'get' })).lastSeen !== 1_009) return false;
    return true;
  }, 30_000), 'the owner applied them');
  t.is(a.counts.commands, 0, 'no command record');
  t.is(a.journal.rows, rowsA);
  t.is(b.journal.rows, rowsB, 'no journal row on the owner either');
  t.true(b.region.stats().softApplied >= theirs.length * 10);
  t.is(a.region.stats().softApplied, 0, 'never applied by the node that does not own the shard');

  // A soft message whose outcome is durable, forwarded: the owner sends it on as a command and applies it once.
  const ref = theirs[1]!;
  t.is(await a.region.tellSoft(ref, { type: 'add', n: 3 }), 'forwarded');
  t.true(await eventually(async () => (await b.region.ask<CounterState>(ref, { type: 'get' })).total === 3, 30_000));
  t.is(b.region.stats().softDurable, 1);
  await new Promise((r) => setTimeout(r, 300));
  t.is((await b.region.ask<CounterState>(ref, { type: 'get' })).total, 3, 'applied once');
});

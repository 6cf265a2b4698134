// The hand-off order on a real Kafka broker, with in-process members (the real region,
// shard host and Kafka command log over an in-memory journal): a graceful stop commits
// what it handled before it leaves the group, and a node that loses a shard to a joining
// node fires no timer, answers no ask and handles no command of it once the new owner has.

import test, { type ExecutionContext } from 'ava';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { pino } from 'pino';
import type { Kafka } from 'kafkajs';
import { createKafka } from '../adapters/kafka/client.ts';
import { KafkaCommandLog } from '../adapters/kafka/command-log.ts';
import { MemoryJournal } from '../adapters/memory/journal.ts';
import { MemoryReminderStore } from '../adapters/memory/reminders.ts';
import { InProcessNotifier } from '../adapters/memory/notifier.ts';
import type { EntityRef } from '../actors/behavior.ts';
import { ShardRegion } from '../runtime/region.ts';
import { ShardHandoffError } from '../runtime/errors.ts';
import { requestContext } from '../http/request-context.ts';
import { ShardHost } from '../runtime/shard-host.ts';
import type { CommandLog, Journal } from '../runtime/ports.ts';
import { counter, type CounterState } from './fixtures/counter.ts';
import { kafkaBrokers } from './helpers/services.ts';
import { eventually } from './helpers/node-process.ts';
import { MemoryShardOffsets } from '../adapters/memory/shard-offsets.ts';
import { ShardFences } from '../runtime/fencing.ts';
import { epochsOf, offsetsOf } from './helpers/offsets.ts';

interface Happening { readonly node: string; readonly shard: number; readonly what: 'command' | 'ask' | 'timer'; readonly seq: number }

/** What every member did, in one order: everything runs in this process, so `seq` orders it. */
class Record {
  #seq = 0;
  readonly all: Happening[] = [];
  add(node: string, shard: number, what: Happening['what']): void {
    this.all.push({ node, shard, what, seq: this.#seq++ });
  }
}

/** A shard host that notes each command its entities handled. */
class RecordingHost extends ShardHost {
  node = '';
  record: Record | undefined;
  override command(...args: Parameters<ShardHost['command']>): ReturnType<ShardHost['command']> {
    return super.command(...args).then((result) => {
      if (result.status !== 'failed') this.record?.add(this.node, args[1], 'command');
      return result;
    });
  }
}

/** The member's log, noting every timer it fires (a fire is an append of a `$timer` command). */
function recordingLog(log: KafkaCommandLog, node: string, record: Record): CommandLog {
  const note = (shard: number, message: unknown) => {
    if ((message as { $timer?: unknown })?.$timer !== undefined) record.add(node, shard, 'timer');
  };
  return {
    shards: log.shards,
    append: (shard, command) => { note(shard, command.message); return log.append(shard, command); },
    appendMany: (entries) => { for (const e of entries) note(e.shard, e.command.message); return log.appendMany(entries); },
    start: (handlers) => log.start(handlers),
    commit: (shard, offset) => log.commit(shard, offset),
    drain: () => log.drain(),
    stop: () => log.stop(),
  };
}

interface Member { readonly node: string; readonly region: ShardRegion; readonly host: RecordingHost; stop(): Promise<void> }

async function member(t: ExecutionContext, o: {
  node: string; kafka: Kafka; topic: string; shards: number; journal: Journal; reminders: MemoryReminderStore; record: Record;
}): Promise<Member> {
  const host = new RecordingHost({
    journal: o.journal, behaviors: [counter as never], passivateAfterMs: 60_000, maxActiveEntities: 100_000,
    maxConcurrentRecoveries: 16, snapshotEvery: 0,
  });
  host.node = o.node;
  host.record = o.record;
  // Epochs and offsets shared by the members, as PostgreSQL is: a shard is taken over once its last owner released it.
  const epochs = epochsOf(o.topic);
  const fences = new ShardFences(epochs);
  const log = new KafkaCommandLog({
    kafka: o.kafka, topic: o.topic, groupId: `${o.topic}.group`, shards: o.shards, nodeId: o.node,
    sessionTimeoutMs: 6_000, heartbeatIntervalMs: 500, offsets: new MemoryShardOffsets({ table: offsetsOf(o.topic), fence: fences, epochs }),
  });
  const region = new ShardRegion({
    nodeId: o.node, placement: { shards: o.shards, placementRes: 4 }, log: recordingLog(log, o.node, o.record), host,
    reminders: o.reminders, notifier: new InProcessNotifier(), askTimeoutMs: 1_500, retryMinMs: 20, retryMaxMs: 200,
    maxAttempts: 1_000, reminderScanMs: 60_000, fences,
  });
  let stopped: Promise<void> | undefined;
  const stop = () => (stopped ??= region.stop());
  t.teardown(stop);
  await region.start();
  return { node: o.node, region, host, stop };
}

/** A journal whose writes take a while, so a batch is still being handled when the node is told to stop. */
function slowJournal(inner: MemoryJournal, ms: number): Journal {
  return {
    append: async (entry, options) => { await new Promise((r) => setTimeout(r, ms)); return inner.append(entry, options); },
    read: (key, after, limit) => inner.read(key, after, limit),
    findCommand: (key, id) => inner.findCommand(key, id),
    latestSnapshot: (key) => inner.latestSnapshot(key),
    saveSnapshot: (entry) => inner.saveSnapshot(entry),
    ping: () => inner.ping(),
    close: () => inner.close(),
  };
}

/** A client whose consumers read the group slowly (a loaded coordinator): reading the map must not hold up a hand-off. */
function slowGroupReads(kafka: Kafka, ms: number): Kafka {
  return new Proxy(kafka, {
    get(target, prop) {
      if (prop === 'consumer') {
        return (config: Parameters<Kafka['consumer']>[0]) => {
          const consumer = target.consumer(config);
          const describe = consumer.describeGroup.bind(consumer);
          return Object.assign(consumer, { describeGroup: async () => { await new Promise((r) => setTimeout(r, ms)); return describe(); } });
        };
      }
      const value = Reflect.get(target, prop) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

const ref = (id: string): EntityRef => ({ kind: 'counter', id });

test.serial('a graceful stop in the middle of a batch commits what it handled: the group is at the end offsets and a restart redelivers nothing', async (t) => {
  t.timeout(180_000);
  const topic = `test.${randomUUID().slice(0, 8)}.handoff`;
  const brokers = (await kafkaBrokers()).split(',');
  const kafka = createKafka({ brokers, clientId: 'test-handoff-stop' });
  const journal = new MemoryJournal();
  const reminders = new MemoryReminderStore();
  const record = new Record();
  const shards = 2;
  const n1 = await member(t, { node: 'n1', kafka, topic, shards, journal: slowJournal(journal, 40), reminders, record });

  // One append, so each shard's commands arrive in one batch that takes a while to handle.
  const ids = Array.from({ length: 4 }, (_, i) => `s${i}`);
  const perEntity = 10;
  const producer = kafka.producer();
  t.teardown(() => producer.disconnect());
  await producer.connect();
  const entries = ids.flatMap((id) => Array.from({ length: perEntity }, (_, k) => ({
    shard: n1.region.shardOf(ref(id)), command: { id: `${id}-${k}`, to: ref(id), message: { type: 'add', n: 1 }, at: Date.now() },
  })));
  await producer.send({ topic, messages: entries.map((e) => ({ partition: e.shard, key: `counter:${e.command.to.id}`, value: JSON.stringify(e.command) })) });
  // Each shard's batch is fetched on its own: stopping before one has begun would leave it
  // unfetched, not in flight, so the stop waits until every shard with commands has begun.
  const shardsWithCommands = new Set(entries.map((e) => e.shard)).size;
  const begun = () => new Set(record.all.map((h) => h.shard)).size;
  t.true(await eventually(async () => begun() === shardsWithCommands, 60_000, 5), 'handling has begun on every shard');
  t.true(record.all.length < entries.length, 'and is still under way when the node is told to stop');
  await n1.stop();
  const handled = record.all.length;
  t.is(handled, entries.length, 'the batches in flight were finished before the node left');

  const admin = kafka.admin();
  t.teardown(() => admin.disconnect());
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(topic);
  const committed = offsetsOf(topic);
  for (const end of ends) {
    const c = committed.get(end.partition) ?? 0;
    t.is(String(c), end.high, `shard ${end.partition}: committed ${c}, end ${end.high}`);
  }
  t.true(ends.every((e) => epochsOf(topic).current(e.partition)?.released !== false), 'every shard n1 held was released as it left');

  // The next member of the group starts from those commits: nothing is handled again.
  const n2 = await member(t, { node: 'n2', kafka, topic, shards, journal, reminders, record });
  t.true(await eventually(async () => n2.region.ready, 60_000));
  await new Promise((r) => setTimeout(r, 2_000));
  t.deepEqual(record.all.filter((h) => h.node === 'n2'), [], 'no command was delivered again');
  for (const id of ids) t.is((await n2.region.ask<CounterState>(ref(id), { type: 'get' })).total, perEntity);
  await n2.stop();
});

test.serial('a node losing shards to a joining node fires no timer, answers no ask and handles no command of them after the new owner did', async (t) => {
  t.timeout(240_000);
  const topic = `test.${randomUUID().slice(0, 8)}.handoff`;
  const brokers = (await kafkaBrokers()).split(',');
  const shards = 6;
  const journal = new MemoryJournal();
  const reminders = new MemoryReminderStore();
  const record = new Record();
  const common = { topic, shards, journal, reminders, record };
  const n1 = await member(t, { ...common, node: 'n1', kafka: slowGroupReads(createKafka({ brokers, clientId: 'test-handoff-n1' }), 1_500) });
  const members: Member[] = [n1];
  const ids = Array.from({ length: 24 }, (_, i) => `e${i}`);

  // Load: commands, alarms, and asks to every member for every entity. An alarm is due before
  // the next round can set it again (a round sleeps 50 ms): set further ahead, a quick machine
  // pushed every alarm back before it was due, and none ever fired.
  let running = true;
  const errors = new Map<string, number>();
  const noteError = (e: unknown) => {
    const key = e instanceof Error ? `${e.name}: ${e.message.slice(0, 80)}` : String(e);
    errors.set(key, (errors.get(key) ?? 0) + 1);
  };
  // What the members were doing, for a failure's message.
  const state = () => JSON.stringify({
    members: members.map((m) => ({ node: m.node, ready: m.region.ready, ...m.region.stats() })),
    record: record.all.length, errors: [...errors].slice(0, 5),
  });
  t.teardown(() => { running = false; }); // a failed assertion must not leave the load running
  const load = (async () => {
    for (let round = 0; running; round++) {
      const now = Date.now();
      await Promise.allSettled(ids.map((id) => n1.region.tell(ref(id), round % 2 === 0 ? { type: 'add', n: 1 } : { type: 'alarm.set', at: now + 20 })
        .catch(noteError)));
      await Promise.allSettled(members.flatMap((m) => ids.map((id) =>
        m.region.ask(ref(id), { type: 'get' }).then(() => record.add(m.node, m.region.shardOf(ref(id)), 'ask'), noteError))));
      await new Promise((r) => setTimeout(r, 50));
    }
  })();

  t.true(await eventually(async () => record.all.some((h) => h.what === 'timer') && record.all.some((h) => h.what === 'ask'), 60_000),
    `n1 fires timers and answers asks: ${state()}`);
  const n2 = await member(t, { ...common, node: 'n2', kafka: createKafka({ brokers, clientId: 'test-handoff-n2' }) });
  members.push(n2);
  t.true(await eventually(async () => n2.region.stats().owned.length > 0 && n1.region.stats().owned.length < shards, 60_000), `n2 took shards: ${state()}`);
  const moved = n2.region.stats().owned;
  // Until n2 has answered asks and fired timers on what it took.
  t.true(await eventually(async () => moved.every((s) => record.all.some((h) => h.node === 'n2' && h.shard === s && h.what === 'ask')), 60_000),
    `n2 answers asks of every shard it took: ${state()}`);
  t.true(await eventually(async () => record.all.some((h) => h.node === 'n2' && h.what === 'timer'), 60_000), `n2 fires timers of its shards: ${state()}`);
  await new Promise((r) => setTimeout(r, 1_000));
  running = false;
  await load;

  for (const shard of moved) {
    const first = record.all.find((h) => h.node === 'n2' && h.shard === shard)!;
    const late = record.all.filter((h) => h.node === 'n1' && h.shard === shard && h.seq > first.seq);
    t.deepEqual(late, [], `shard ${shard}: n1 acted on it after n2 first did (${first.what} #${first.seq})`);
    t.true(record.all.some((h) => h.node === 'n1' && h.shard === shard), `shard ${shard} was n1's before`);
  }
  t.true(n1.region.stats().owned.every((s) => !moved.includes(s)));
  await n2.stop();
  await n1.stop();
});

test('the edge answers an ask to a shard in hand-off with 503 and Retry-After, naming the hand-off', async (t) => {
  const app = new Koa();
  app.use(requestContext(pino({ level: 'silent' })));
  app.use(() => { throw new ShardHandoffError('shard 3 of counter:x is being handed to another node; ask again'); });
  const server = createServer(app.callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
  t.is(res.status, 503);
  t.is(res.headers.get('retry-after'), '1');
  t.deepEqual(await res.json(), { error: { code: 'unavailable', message: 'shard 3 of counter:x is being handed to another node; ask again' } });
});

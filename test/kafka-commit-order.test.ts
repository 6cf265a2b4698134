// The Kafka command log never moves past a command the runtime left unhandled: not by
// resolving its batch, not by committing it, and not by committing a later batch of soft
// records (GPS fixes, which other nodes send all the time). kafkajs is faked here so the
// test controls every batch, join and heartbeat; the region, shard host and fences are real.

import test from 'ava';
import { AssignerProtocol } from 'kafkajs';
import { KafkaCommandLog } from '../adapters/kafka/command-log.ts';
import { MemoryJournal } from '../adapters/memory/journal.ts';
import { MemoryShardEpochs } from '../adapters/memory/shard-epochs.ts';
import { MemoryReminderStore } from '../adapters/memory/reminders.ts';
import { InProcessNotifier } from '../adapters/memory/notifier.ts';
import { ShardFences } from '../runtime/fencing.ts';
import { ShardHost } from '../runtime/shard-host.ts';
import { ShardRegion } from '../runtime/region.ts';
import { shardOf, parseEntityKey, type Placement } from '../runtime/entity.ts';
import type { Journal } from '../runtime/ports.ts';
import { counter, type CounterState } from './fixtures/counter.ts';
import { MemoryShardOffsets } from '../adapters/memory/shard-offsets.ts';

const T = 't.commands';
const P: Placement = { shards: 4, placementRes: 4 };
const x = { kind: 'counter', id: 'x' };
const S = shardOf(x, P);

async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** One fake kafkajs consumer: its listeners, its batch handler, and what was asked of it. */
interface FakeConsumer {
  readonly groupId: string;
  readonly listeners: Map<string, (e: unknown) => void>;
  eachBatch?: (payload: unknown) => Promise<void>;
  readonly seeks: string[];
}

/**
 * kafkajs as far as KafkaCommandLog uses it, driven by the test: the group member (group `g`,
 * joined by the test) and the node's reader (its own group, joined as it runs, every partition).
 */
function fakeKafka() {
  const consumers: FakeConsumer[] = [];
  const userData = Buffer.from(JSON.stringify({ nodes: ['a'], owners: ['a', 'a', 'a', 'a'] }));
  const kafka = {
    consumer: (config: { groupId: string }) => {
      const c: FakeConsumer = { groupId: config.groupId, listeners: new Map(), seeks: [] };
      consumers.push(c);
      return {
        events: { GROUP_JOIN: 'join', CRASH: 'crash', HEARTBEAT: 'heartbeat' },
        on: (event: string, f: (e: unknown) => void) => c.listeners.set(event, f),
        connect: async () => undefined, subscribe: async () => undefined, disconnect: async () => undefined,
        run: async (o: { eachBatch: (payload: unknown) => Promise<void> }) => {
          c.eachBatch = o.eachBatch;
          // The reader is alone in its group: it joins as it runs, with every partition.
          if (c.groupId !== 'g') c.listeners.get('join')!({ payload: { memberAssignment: { [T]: [0, 1, 2, 3] } } });
        },
        pause: () => undefined, resume: () => undefined,
        seek: (o: { partition: number; offset: string }) => { c.seeks.push(`p${o.partition}@${o.offset}`); },
        describeGroup: async () => ({
          state: 'Stable',
          members: [{ memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 1, assignment: { [T]: [0, 1, 2, 3] }, userData }) }],
        }),
      };
    },
    producer: () => ({ connect: async () => undefined, send: async () => undefined, disconnect: async () => undefined }),
    admin: () => ({
      connect: async () => undefined, disconnect: async () => undefined, listTopics: async () => [T],
      fetchTopicMetadata: async () => ({ topics: [{ partitions: [0, 1, 2, 3].map(() => ({ leader: 1, replicas: [1] })) }] }),
    }),
  };
  const member = () => consumers.find((c) => c.groupId === 'g')!;
  const reader = () => consumers.find((c) => c.groupId !== 'g')!;
  /** Hands one batch of records (starting at `offset`) to the reader; resolves to the offset the log resolved, or -1. */
  const batch = (offset: number, values: unknown[]) => {
    let resolved = -1;
    const last = offset + values.length - 1;
    const payload = {
      batch: {
        partition: S, highWatermark: String(last + 1), firstOffset: () => String(offset), lastOffset: () => String(last),
        messages: values.map((v, i) => ({ offset: String(offset + i), value: Buffer.from(JSON.stringify(v)) })),
      },
      resolveOffset: (o: string) => { resolved = Number(o); }, heartbeat: async () => undefined, isRunning: () => true, isStale: () => false,
    };
    return reader().eachBatch!(payload).then(() => resolved);
  };
  return {
    kafka, batch, seeks: () => reader().seeks,
    join: () => member().listeners.get('join')!({ payload: { memberAssignment: { [T]: [0, 1, 2, 3] } } }),
    heartbeat: () => member().listeners.get('heartbeat')!({ payload: {} }),
  };
}

test('a command batch the region left is neither resolved nor committed, nor committed past by a soft-only batch; it is handled once the shard is back', async (t) => {
  const k = fakeKafka();
  const epochs = new MemoryShardEpochs();
  const store = new MemoryJournal();
  const fences = new ShardFences(epochs);
  const check = (key: string, what: string) => {
    const shard = shardOf(parseEntityKey(key), P);
    const held = fences.epochOf(shard);
    if (held === undefined || epochs.current(shard)?.epoch !== held) throw fences.refused(shard, held, what);
  };
  const journal: Journal = {
    append: async (e, o) => { check(e.persistenceKey, 'append'); return store.append(e, o); },
    read: (key, after, limit) => store.read(key, after, limit), findCommand: (key, c) => store.findCommand(key, c),
    latestSnapshot: (key) => store.latestSnapshot(key),
    saveSnapshot: async (s) => { check(s.persistenceKey, 'snapshot'); return store.saveSnapshot(s); },
    ping: () => store.ping(), close: () => store.close(),
  };
  const table = new Map<number, number>();
  const log = new KafkaCommandLog({
    kafka: k.kafka as never, topic: T, groupId: 'g', shards: 4, nodeId: 'a', sessionTimeoutMs: 600_000, onError: () => undefined,
    offsets: new MemoryShardOffsets({ table, fence: fences, epochs }),
  });
  const host = new ShardHost({ journal, behaviors: [counter as never], passivateAfterMs: 60_000, maxActiveEntities: 100, maxConcurrentRecoveries: 4, snapshotEvery: 0 });
  const region = new ShardRegion({
    nodeId: 'a', placement: P, host, log, reminders: new MemoryReminderStore(), notifier: new InProcessNotifier(), askTimeoutMs: 1_000, fences,
  });
  t.teardown(() => region.stop());
  const started = region.start();
  await new Promise((r) => setTimeout(r, 50));
  k.join();
  await started;
  await eventually('the shard is served', () => region.owns(S) && region.ready);
  const cmd = (id: string, n: number) => ({ id, to: x, message: { type: 'add', n }, at: Date.now() });
  t.is(await k.batch(0, [cmd('c0', 1)]), 0);
  t.is(table.get(S), 1, 'c0 handled: reading resumes at 1');

  // A straggling node takes the shard's epoch: this node's next write is refused and the shard dropped here.
  await epochs.acquire([S], 'b');
  t.is(await k.batch(1, [cmd('c1', 10)]), -1, 'the batch with c1 is not resolved');
  t.false(region.owns(S));
  t.is(table.get(S), 1, 'nothing committed past c0');
  // Kafka would fetch c1 again; a soft-only record after it must not be committed past it either.
  const soft = { soft: [{ to: { kind: 'counter', id: 'y' }, message: { type: 'seen', at: 1 }, at: 1 }] };
  t.is(await k.batch(2, [soft]), -1, 'a batch past an unhandled one is not taken');
  t.is(table.get(S), 1);
  t.is(k.seeks().at(-1), `p${S}@1`, 'the log goes back for c1');

  // The group confirms this node (heartbeats): the shard is taken back, and c1 is handled when it comes again.
  k.heartbeat();
  k.heartbeat();
  await eventually('the shard is taken back', () => region.owns(S));
  t.is(await k.batch(1, [cmd('c1', 10), soft]), 2);
  t.is(table.get(S), 3, 'c1 and the soft record after it handled');
  t.is((await region.ask<CounterState>(x, { type: 'get' })).total, 11);
  t.is(store.count('counter:x'), 2, 'c0 and c1 journaled once each');
});

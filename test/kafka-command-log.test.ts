// The command log on a real Kafka broker, through kafkajs.

import test, { type ExecutionContext } from 'ava';
import { randomUUID } from 'node:crypto';
import { createKafka } from '../adapters/kafka/client.ts';
import { KafkaCommandLog, TopicMismatchError } from '../adapters/kafka/command-log.ts';
import type { CommandLogHandlers, LogRecord, ShardAssignment } from '../runtime/ports.ts';
import { kafkaBrokers } from './helpers/services.ts';
import { eventually } from './helpers/node-process.ts';
import { MemoryShardOffsets } from '../adapters/memory/shard-offsets.ts';
import { offsetsOf } from './helpers/offsets.ts';

async function logFor(t: ExecutionContext, topic: string, shards: number, nodeId = 'n1') {
  const brokers = (await kafkaBrokers()).split(',');
  const log = new KafkaCommandLog({
    kafka: createKafka({ brokers, clientId: `test-${nodeId}` }),
    topic, groupId: `${topic}.group`, shards, nodeId, sessionTimeoutMs: 6_000, heartbeatIntervalMs: 500,
    offsets: new MemoryShardOffsets({ table: offsetsOf(topic) }),
  });
  // Stopped even when an assertion fails, so no consumer keeps the worker alive.
  t.teardown(() => log.stop());
  return log;
}

function collector(log: KafkaCommandLog) {
  const seen: LogRecord[] = [];
  const assignments: ShardAssignment[] = [];
  const handlers: CommandLogHandlers = {
    async onRecords(shard, records) {
      seen.push(...records);
      await log.commit(shard, records.at(-1)!.offset);
      return true;
    },
    async onAssignment(assignment) {
      assignments.push(assignment);
    },
  };
  return { seen, assignments, handlers };
}

const command = (i: number, entity: string) => ({ id: `c${i}`, to: { kind: 'counter', id: entity }, message: { i }, at: Date.now() });

test('commands appended to shards are consumed once, in order per shard, and stay committed', async (t) => {
  const topic = `test.${randomUUID().slice(0, 8)}.commands`;
  const log = await logFor(t, topic, 4);
  const c = collector(log);
  await log.start(c.handlers);
  t.deepEqual([...c.assignments.at(-1)!.owned].sort(), [0, 1, 2, 3], 'a lone member owns every shard');
  t.is(c.assignments.at(-1)!.placement.get(2), 'n1', 'the shard map came back in the assignment');

  const sent = Array.from({ length: 200 }, (_, i) => ({ shard: i % 4, command: command(i, `e${i % 10}`) }));
  await log.appendMany(sent.slice(0, 100));
  for (const entry of sent.slice(100)) await log.append(entry.shard, entry.command);
  t.true(await eventually(async () => c.seen.length >= 200, 60_000), `received ${c.seen.length}`);
  t.is(new Set(c.seen.map((r) => r.command.id)).size, 200, 'every command once');
  for (let shard = 0; shard < 4; shard++) {
    const ids = c.seen.filter((r) => r.shard === shard).map((r) => Number(r.command.id.slice(1)));
    t.deepEqual(ids, [...ids].sort((a, b) => a - b), `shard ${shard} in append order`);
  }
  await log.stop();

  // A new member of the same group resumes after the commits: nothing is redelivered.
  const again = await logFor(t, topic, 4);
  const c2 = collector(again);
  await again.start(c2.handlers);
  await again.append(1, command(999, 'late'));
  t.true(await eventually(async () => c2.seen.length >= 1, 60_000));
  await new Promise((r) => setTimeout(r, 500));
  t.deepEqual(c2.seen.map((r) => r.command.id), ['c999']);
  await again.stop();
});

test('a topic with another partition count is refused with a clear message', async (t) => {
  const topic = `test.${randomUUID().slice(0, 8)}.commands`;
  const first = await logFor(t, topic, 3);
  await first.ensureTopic();
  await first.stop();
  const second = await logFor(t, topic, 5);
  const error = await t.throwsAsync(second.ensureTopic(), { instanceOf: TopicMismatchError });
  t.regex(error!.message, /3 partitions but SHARDS is 5/);
  await second.stop();
});

test('a failed rebalance step is retried while the gained shards wait, and start() resolves after the first attempt', async (t) => {
  t.timeout(180_000);
  const topic = `test.${randomUUID().slice(0, 8)}.commands`;
  const brokers = (await kafkaBrokers()).split(',');
  const errors: string[] = [];
  const log = new KafkaCommandLog({
    kafka: createKafka({ brokers, clientId: 'test-flaky' }), topic, groupId: `${topic}.group`, shards: 2, nodeId: 'n1',
    sessionTimeoutMs: 6_000, heartbeatIntervalMs: 500, retryMinMs: 100, retryMaxMs: 500, offsets: new MemoryShardOffsets(),
    onError: (_e, context) => errors.push(context),
  });
  t.teardown(() => log.stop());
  const seen: LogRecord[] = [];
  let broken = true;
  let attempts = 0;
  const handlers: CommandLogHandlers = {
    async onRecords(shard, records) {
      seen.push(...records);
      await log.commit(shard, records.at(-1)!.offset);
      return true;
    },
    async onAssignment(_assignment, _revoked, gained) {
      attempts++;
      if (broken) throw new Error(`reminders of ${gained.join(', ')} unreadable (test)`);
    },
  };
  await log.start(handlers);
  t.true(attempts >= 1, 'start() resolved after the first attempt');
  await log.appendMany([0, 1].map((shard) => ({ shard, command: command(shard, `e${shard}`) })));
  t.true(await eventually(async () => attempts >= 4, 60_000), 'the step is tried again');
  t.is(seen.length, 0, 'nothing is delivered on shards not set up');
  broken = false;
  t.true(await eventually(async () => seen.length === 2, 60_000), `both records delivered once the step succeeded (${seen.length})`);
  const settled = attempts;
  await new Promise((r) => setTimeout(r, 1_500));
  t.is(attempts, settled, 'and not tried again after it succeeded');
  t.true(errors.filter((e) => e.startsWith('rebalance: setting up shards 0, 1 failed')).length >= 3, errors.join('\n'));
});

test('stats() says how many records each owned shard has not committed, from what Kafka fetched', async (t) => {
  const topic = `test.${randomUUID().slice(0, 8)}.commands`;
  const log = await logFor(t, topic, 2);
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => { release = resolve; });
  await log.start({
    async onRecords(shard, records) {
      // Shard 1's records are held unhandled until the test lets them go.
      if (shard === 1) await held;
      await log.commit(shard, records.at(-1)!.offset);
      return true;
    },
    async onAssignment() { /* a lone member */ },
  });
  t.deepEqual(log.stats().map((s) => s.lag), [0, 0], 'nothing fetched yet: nothing behind');
  await log.appendMany(Array.from({ length: 10 }, (_, i) => ({ shard: i % 2, command: command(i, `e${i}`) })));
  const lagOf = (shard: number) => log.stats().find((s) => s.shard === shard)?.lag;
  t.true(await eventually(async () => (lagOf(1) ?? 0) > 0, 60_000), `shard 1 is behind while its records are held (${lagOf(1)})`);
  t.true((lagOf(1) ?? 0) <= 5);
  t.true(await eventually(async () => lagOf(0) === 0, 60_000), 'shard 0, handled, is not');
  release();
  t.true(await eventually(async () => lagOf(1) === 0, 60_000), `shard 1 caught up (${lagOf(1)})`);
});

// The command log's producer under pressure: a bounded send queue that refuses at
// once when full, requests kept under the size limit, and no acknowledged command
// lost or doubled when the broker stalls (on the real broker, through kafkajs).

import test, { type ExecutionContext } from 'ava';
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import Router from '@koa/router';
import { Kafka, logLevel, type ISocketFactory } from 'kafkajs';
import { pino } from 'pino';
import { KafkaCommandLog } from '../adapters/kafka/command-log.ts';
import { SendQueue } from '../adapters/kafka/send-queue.ts';
import { createApp } from '../http/app.ts';
import { createAuthenticator } from '../http/auth.ts';
import { CommandLogFullError } from '../runtime/errors.ts';
import type { CommandEnvelope } from '../runtime/ports.ts';
import { eventually } from './helpers/node-process.ts';
import { kafkaBrokers } from './helpers/services.ts';
import { stallableSockets } from './helpers/stallable-sockets.ts';
import { MemoryShardOffsets } from '../adapters/memory/shard-offsets.ts';

const PAD = 'x'.repeat(500);
const command = (id: string, entity = 'e1'): CommandEnvelope => ({ id, to: { kind: 'counter', id: entity }, message: { pad: PAD }, at: Date.now() });
const newTopic = () => `test.producer.${randomUUID().slice(0, 8)}.commands`;

interface LogSetup {
  readonly topic: string;
  readonly shards?: number;
  readonly maxQueuedRecords?: number;
  readonly maxRequestBytes?: number;
  readonly socketFactory?: ISocketFactory;
  readonly requestTimeout?: number;
  readonly retries?: number;
}

/** A started command log on its own topic and client (its sockets from `socketFactory`). */
async function startedLog(t: ExecutionContext, s: LogSetup): Promise<KafkaCommandLog> {
  const kafka = new Kafka({
    clientId: `producer-test-${s.topic}`, brokers: (await kafkaBrokers()).split(','), socketFactory: s.socketFactory,
    connectionTimeout: 3_000, requestTimeout: s.requestTimeout ?? 30_000,
    retry: { initialRetryTime: 100, retries: s.retries ?? 8, maxRetryTime: 1_000 }, logLevel: logLevel.NOTHING,
  });
  const log = new KafkaCommandLog({
    kafka, topic: s.topic, groupId: `${s.topic}.group`, shards: s.shards ?? 2, nodeId: 'n1',
    sessionTimeoutMs: 6_000, heartbeatIntervalMs: 500, maxQueuedRecords: s.maxQueuedRecords, maxRequestBytes: s.maxRequestBytes,
    offsets: new MemoryShardOffsets(),
  });
  t.teardown(() => log.stop());
  await log.start({
    async onRecords(shard, records) { await log.commit(shard, records.at(-1)!.offset); return true; },
    async onAssignment() {},
  });
  return log;
}

/** Every command id in the topic, read by a client of its own up to the end of each partition. */
async function idsInTopic(topic: string): Promise<string[]> {
  const kafka = new Kafka({ clientId: 'producer-test-reader', brokers: (await kafkaBrokers()).split(','), logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const remaining = new Map(ends.map((p) => [p.partition, Number(p.high)]));
  const ids: string[] = [];
  const consumer = kafka.consumer({ groupId: `${topic}.reader.${randomUUID().slice(0, 8)}` });
  try {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        ids.push((JSON.parse(message.value!.toString()) as CommandEnvelope).id);
        if (Number(message.offset) + 1 >= (remaining.get(partition) ?? 0)) remaining.delete(partition);
      },
    });
    for (const [partition, high] of remaining) if (high === 0) remaining.delete(partition);
    if (!(await eventually(async () => remaining.size === 0, 60_000))) throw new Error(`topic ${topic} not read to its end`);
  } finally {
    await consumer.disconnect();
  }
  return ids;
}

const count = (ids: readonly string[], id: string) => ids.filter((x) => x === id).length;
const settled = <T>(p: Promise<T>) => p.then(() => 'resolved' as const, (e: unknown) => e);

test('the send queue cuts requests under the size budget and settles each caller by its own request', async (t) => {
  const chunks: number[][] = [];
  const replies: { resolve(): void; reject(e: unknown): void }[] = [];
  const queue = new SendQueue<number>({
    maxRecords: 100, maxChunkBytes: 1_000, sizeOf: () => 100,
    send: (records) => new Promise((resolve, reject) => { chunks.push([...records]); replies.push({ resolve, reject }); }),
  });
  /** Answers the n-th request once it is sent. */
  const answer = async (n: number, error?: Error) => {
    await eventually(async () => replies.length > n);
    if (error) replies[n]!.reject(error);
    else replies[n]!.resolve();
  };
  const first = settled(queue.push([0]));
  await eventually(async () => replies.length === 1);
  // While the first request is out, four callers of 6 records each (600 bytes) queue up.
  const callers = [1, 2, 3, 4].map((c) => settled(queue.push(Array.from({ length: 6 }, (_, i) => c * 10 + i))));
  t.is(queue.pending, 25);
  await answer(0);
  await answer(1, new Error('broker said no'));
  for (const n of [2, 3, 4]) await answer(n);
  const outcomes = await Promise.all([first, ...callers]);
  t.deepEqual(chunks[1], [10, 11, 12, 13, 14, 15], 'a caller is not split when it fits whole');
  t.is(outcomes[0], 'resolved');
  t.is((outcomes[1] as Error).message, 'broker said no', 'the failed request\'s caller is rejected');
  t.deepEqual(outcomes.slice(2), ['resolved', 'resolved', 'resolved'], 'the other callers are settled by their own requests');
  t.true(chunks.every((c) => c.length * 100 <= 1_000), `every request under the budget: ${chunks.map((c) => c.length)}`);
  t.is(queue.pending, 0);

  // One caller larger than a request goes out in several, and is resolved after the last.
  const big = settled(queue.push(Array.from({ length: 25 }, (_, i) => 100 + i)));
  for (const n of [5, 6, 7]) await answer(n);
  t.is(await big, 'resolved');
  t.deepEqual(chunks.slice(5).map((c) => c.length), [10, 10, 5]);
});

test('the appends of one tick go out in one request, the first of them not alone', async (t) => {
  const chunks: number[][] = [];
  const replies: (() => void)[] = [];
  const queue = new SendQueue<number>({
    maxRecords: 100, maxChunkBytes: 1_000, sizeOf: () => 10,
    send: (records) => new Promise<void>((resolve) => { chunks.push([...records]); replies.push(resolve); }),
  });
  const tick = [queue.push([1]), queue.push([2, 3]), queue.push([4])];
  await eventually(async () => chunks.length === 1);
  t.deepEqual(chunks, [[1, 2, 3, 4]], 'one request for the whole tick');
  replies[0]!();
  await Promise.all(tick);
  const next = queue.push([5]);
  await eventually(async () => chunks.length === 2);
  replies[1]!();
  await next;
  t.deepEqual(chunks[1], [5], 'a later tick has a request of its own');
});

test('the send queue refuses at once when full, and takes appends again once the broker answers', async (t) => {
  const replies: (() => void)[] = [];
  const queue = new SendQueue<number>({
    maxRecords: 5, maxChunkBytes: 1_000, sizeOf: () => 1,
    send: () => new Promise<void>((resolve) => replies.push(resolve)),
  });
  const accepted = [queue.push([1, 2]), queue.push([3, 4, 5])];
  const refused = await t.throwsAsync(queue.push([6]), { instanceOf: CommandLogFullError });
  t.true(refused!.retriable);
  t.true(refused!.retryAfterSeconds >= 1);
  // Both went in one request (one tick's): answered, the queue takes appends again.
  await eventually(async () => replies.length === 1);
  replies[0]!();
  await Promise.all(accepted);
  const again = queue.push([6]);
  await eventually(async () => replies.length === 2);
  replies[1]!();
  await t.notThrowsAsync(again);
});

test('on the broker, every produce request stays under KAFKA_MAX_REQUEST_BYTES and every command lands once', async (t) => {
  const topic = newTopic();
  const wire = stallableSockets();
  const maxRequestBytes = 16_384;
  const log = await startedLog(t, { topic, shards: 4, maxRequestBytes, socketFactory: wire.socketFactory });
  const ids = Array.from({ length: 200 }, (_, i) => `c${i}`);
  // Half as one caller (about 110 kB, several requests), half as callers of one command each.
  await Promise.all([
    log.appendMany(ids.slice(0, 100).map((id, i) => ({ shard: i % 4, command: command(id, `e${i % 7}`) }))),
    ...ids.slice(100).map((id, i) => log.append(i % 4, command(id, `e${i % 7}`))),
  ]);
  const sizes = wire.produceRequestBytes;
  t.true(sizes.length >= 7, `the ~110 kB went out in several requests: ${sizes.join(', ')}`);
  t.true(sizes.every((n) => n <= maxRequestBytes), `every request under ${maxRequestBytes} bytes: ${sizes.join(', ')}`);
  const inTopic = await idsInTopic(topic);
  t.deepEqual(ids.filter((id) => count(inTopic, id) !== 1), [], 'every command exactly once');
  t.is(inTopic.length, 200);
});

test('a stalled broker fills the queue: appends are refused at once (503 at the edge), none acknowledged is lost or doubled', async (t) => {
  const topic = newTopic();
  const wire = stallableSockets();
  const log = await startedLog(t, { topic, maxQueuedRecords: 20, socketFactory: wire.socketFactory });
  await log.append(0, command('warm-up')); // the producer's connection is known from here on

  wire.stall();
  const accepted = new Map<string, Promise<unknown>>();
  const refused: string[] = [];
  for (let i = 0; i < 40; i++) {
    const id = `s${i}`;
    const outcome = settled(log.append(i % 2, command(id)));
    // A refusal comes back at once; an accepted append waits for the broker.
    const first = await Promise.race([outcome, new Promise((r) => setImmediate(() => r('waiting')))]);
    if (first === 'waiting') accepted.set(id, outcome);
    else {
      t.true(first instanceof CommandLogFullError, `refused with the retriable error: ${String(first)}`);
      t.true((first as CommandLogFullError).retriable);
      refused.push(id);
    }
  }
  t.is(accepted.size, 20, 'the queue took up to its bound');
  t.is(refused.length, 20, 'and refused the rest');

  // The edge answers the refusal as overloaded, with a time to come back.
  const router = new Router();
  router.post('/v1/probe', async (ctx) => { await log.append(0, command('from-edge')); ctx.body = { ok: true }; });
  const app = createApp({
    logger: pino({ level: 'silent' }), maxBodyBytes: 1024, routers: [router],
    auth: await createAuthenticator({ secret: 'x'.repeat(32), issuer: 'dispatch', tokenTtlSeconds: 60 }),
    health: { live: () => true, ready: async () => ({ ok: true }) },
  });
  const server = createServer(app.callback()).listen(0, '127.0.0.1');
  t.teardown(() => server.close());
  await new Promise((r) => server.once('listening', r));
  const res = await fetch(`http://127.0.0.1:${(server.address() as { port: number }).port}/v1/probe`, { method: 'POST' });
  t.is(res.status, 503);
  t.true(Number(res.headers.get('retry-after')) >= 1, `Retry-After: ${res.headers.get('retry-after')}`);
  t.is(((await res.json()) as { error: { code: string } }).error.code, 'overloaded');

  wire.resume();
  const outcomes = await Promise.all(accepted.values());
  t.deepEqual(outcomes.filter((o) => o !== 'resolved'), [], 'every accepted append is acknowledged once the broker answers');
  await t.notThrowsAsync(log.append(1, command('after')), 'appends are taken again');

  const inTopic = await idsInTopic(topic);
  t.deepEqual([...accepted.keys(), 'after'].filter((id) => count(inTopic, id) !== 1), [], 'every acknowledged command exactly once');
  t.deepEqual([...refused, 'from-edge'].filter((id) => inTopic.includes(id)), [], 'nothing refused was written');
});

test('after a send that failed in a stall, the next acknowledged batch is in the topic (not taken for a duplicate)', async (t) => {
  const topic = newTopic();
  const wire = stallableSockets();
  // Short timeouts, so the stalled request fails while the broker may still get it later.
  const log = await startedLog(t, { topic, socketFactory: wire.socketFactory, requestTimeout: 1_500, retries: 1 });
  await log.append(0, command('warm-up'));

  wire.stall();
  const lost = Array.from({ length: 5 }, (_, i) => ({ shard: 0, command: command(`a${i}`) }));
  const failed = await settled(log.appendMany(lost));
  t.not(failed, 'resolved', 'the stalled send failed');
  // The held request now reaches the broker, which writes it: the send that failed did land.
  wire.resume();
  await eventually(async () => wire.held() === 0);

  // Same partition, same number of records: under the rolled-back sequence numbers
  // of the old producer this batch would be acknowledged as a duplicate and dropped.
  const next = Array.from({ length: 5 }, (_, i) => ({ shard: 0, command: command(`b${i}`) }));
  await log.appendMany(next);
  const inTopic = await idsInTopic(topic);
  t.log(`the failed batch is in the topic ${count(inTopic, 'a0')} time(s)`);
  t.deepEqual(next.map((e) => count(inTopic, e.command.id)), [1, 1, 1, 1, 1], 'the acknowledged batch exactly once');
  t.is(count(inTopic, 'warm-up'), 1);
});

test('the topic is created with KAFKA_REPLICATION_FACTOR copies and KAFKA_MIN_INSYNC_REPLICAS', async (t) => {
  const brokers = (await kafkaBrokers()).split(',');
  const kafka = new Kafka({ clientId: 'producer-test-topics', brokers, logLevel: logLevel.NOTHING });
  const open = (topic: string, replicationFactor: number, minInsyncReplicas: number) => {
    const log = new KafkaCommandLog({
      kafka, topic, groupId: `${topic}.group`, shards: 2, nodeId: 'n1', replicationFactor, minInsyncReplicas, offsets: new MemoryShardOffsets(),
    });
    t.teardown(() => log.stop());
    return log;
  };
  // The test broker is alone: three copies cannot be placed, and the broker says so.
  await t.throwsAsync(open(newTopic(), 3, 2).ensureTopic(), { message: /could not create topic .* KAFKA_REPLICATION_FACTOR 3 .*Replication-factor is invalid/ });

  const topic = newTopic();
  await open(topic, 1, 1).ensureTopic();
  const admin = kafka.admin();
  await admin.connect();
  t.teardown(() => admin.disconnect());
  const described = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2 /* TOPIC */, name: topic, configNames: ['min.insync.replicas'] }] });
  t.is(described.resources[0]!.configEntries[0]!.configValue, '1');
  const meta = await admin.fetchTopicMetadata({ topics: [topic] });
  t.deepEqual(meta.topics[0]!.partitions.map((p) => p.replicas.length), [1, 1]);
});

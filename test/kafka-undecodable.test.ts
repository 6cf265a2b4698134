// A record on the command topic that is not a command envelope (garbage, JSON of another
// shape, a record cut short) is dead-lettered with its raw bytes on a real broker: the
// shard goes on past it, the letter is listed like any other, and nothing is skipped silently.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { createKafka } from '../adapters/kafka/client.ts';
import { KafkaCommandLog } from '../adapters/kafka/command-log.ts';
import { MemoryJournal } from '../adapters/memory/journal.ts';
import { MemoryReminderStore } from '../adapters/memory/reminders.ts';
import { MemoryDeadLetterStore } from '../adapters/memory/dead-letters.ts';
import { InProcessNotifier } from '../adapters/memory/notifier.ts';
import { ShardRegion } from '../runtime/region.ts';
import { ShardHost } from '../runtime/shard-host.ts';
import { shardOf } from '../runtime/entity.ts';
import { isUndecodable, type UndecodableMessage } from '../runtime/undecodable.ts';
import { counter, type CounterState } from './fixtures/counter.ts';
import { kafkaBrokers } from './helpers/services.ts';
import { eventually } from './helpers/node-process.ts';
import { MemoryShardOffsets } from '../adapters/memory/shard-offsets.ts';

test('records that are not commands are dead-lettered with their bytes, and the shard goes on past them', async (t) => {
  t.timeout(180_000);
  const topic = `test.${randomUUID().slice(0, 8)}.undecodable`;
  const kafka = createKafka({ brokers: (await kafkaBrokers()).split(','), clientId: 'test-undecodable' });
  const shards = 2;
  const placement = { shards, placementRes: 4 };
  const log = new KafkaCommandLog({
    kafka, topic, groupId: `${topic}.group`, shards, nodeId: 'n1', sessionTimeoutMs: 6_000, offsets: new MemoryShardOffsets(),
  });
  const deadLetters = new MemoryDeadLetterStore();
  const host = new ShardHost({
    journal: new MemoryJournal(), behaviors: [counter as never], passivateAfterMs: 60_000, maxActiveEntities: 1_000,
    maxConcurrentRecoveries: 4, snapshotEvery: 0,
  });
  const region = new ShardRegion({
    nodeId: 'n1', placement, log, host, reminders: new MemoryReminderStore(), notifier: new InProcessNotifier(),
    askTimeoutMs: 3_000, deadLetters,
  });
  t.teardown(() => region.stop());
  await region.start();

  const x = { kind: 'counter', id: 'x' };
  const shard = shardOf(x, placement);
  const garbage = [Buffer.from([0xff, 0x00, 0x7b, 0x22]), Buffer.from('{"hello":"world"}'), Buffer.from('42')];
  const producer = kafka.producer();
  await producer.connect();
  t.teardown(() => producer.disconnect());
  await producer.send({
    topic,
    messages: [
      ...garbage.map((value) => ({ partition: shard, key: 'junk', value })),
      { partition: shard, key: 'counter:x', value: JSON.stringify({ id: 'after-junk', to: x, message: { type: 'add', n: 5 }, at: Date.now() }) },
    ],
  });

  t.true(await eventually(async () => (await region.ask<CounterState>(x, { type: 'get' })).total === 5), 'the command after the junk is applied');
  const letters = await deadLetters.list(10);
  t.is(letters.length, 3, 'one letter per record that is not a command');
  const raw = letters.map((l) => Buffer.from((l.command.message as UndecodableMessage).raw, 'base64').toString('hex')).sort();
  t.deepEqual(raw, garbage.map((g) => g.toString('hex')).sort(), 'each letter keeps its record\'s bytes');
  for (const letter of letters) {
    t.true(isUndecodable(letter.command));
    t.is(letter.shard, shard);
    t.is(letter.failure.kind, 'undecodable');
    t.regex(letter.failure.message, new RegExp(`offset ${letter.offset} of shard ${shard} is not a command: (not JSON|not a JSON object|no command id)`));
  }
  t.is(region.stats().commandsDeadLettered, 3);
});

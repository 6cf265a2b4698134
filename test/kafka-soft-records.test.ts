// Soft records on a real broker in both forms: the compact one (soft-codec.ts) that a node
// writes by default, and the JSON one that a node older than it writes, and that
// WIRE_FORMS=previous keeps writing while such nodes remain. Every node must read both
// (a rolling upgrade has old and new nodes forwarding fixes to each other), and the cluster
// key's MAC must cover the compact bytes as it covers JSON: one changed byte and the record is
// dead-lettered, never applied.

import test from 'ava';
import { randomBytes, randomUUID } from 'node:crypto';
import { createKafka } from '../adapters/kafka/client.ts';
import { KafkaCommandLog } from '../adapters/kafka/command-log.ts';
import { sign, signBytes } from '../adapters/kafka/envelope-signature.ts';
import { isCompact } from '../adapters/kafka/soft-codec.ts';
import { MemoryShardOffsets } from '../adapters/memory/shard-offsets.ts';
import type { CommandLogHandlers, LogRecord, SoftMessage } from '../runtime/ports.ts';
import { isUndecodable } from '../runtime/undecodable.ts';
import { eventually } from './helpers/node-process.ts';
import { kafkaBrokers } from './helpers/services.ts';

const fix = (id: string, n: number): SoftMessage => ({
  to: { kind: 'driver', id }, message: { type: 'location', fix: { lat: 40.1 + n / 7, lng: -74.3 - n / 9, at: 1_796_000_000_000 + n } }, at: 1_796_000_000_000 + n,
});

interface Seen { soft: SoftMessage[][]; letters: LogRecord[] }

function handlers(log: KafkaCommandLog, seen: Seen): CommandLogHandlers {
  return {
    async onRecords(shard, batch) {
      seen.letters.push(...batch.filter((r) => isUndecodable(r.command)));
      await log.commit(shard, batch.at(-1)!.offset);
      return true;
    },
    async onAssignment() { /* a lone member of its group: every shard */ },
    async onSoft(_shard, messages) { seen.soft.push([...messages]); },
  };
}

test('every node reads soft records in both forms, each form as it was written, and the MAC covers the compact bytes; a damaged one is dead-lettered', async (t) => {
  t.timeout(180_000);
  const topic = `test.${randomUUID().slice(0, 8)}.soft-forms`;
  const brokers = (await kafkaBrokers()).split(',');
  const keys = [randomBytes(32)];
  const shards = 2;
  // Two nodes, each in a group of its own so both read every shard: one writing compact
  // records (the default), one writing JSON (WIRE_FORMS=previous).
  const open = (name: string, softRecords?: 'json') => new KafkaCommandLog({
    kafka: createKafka({ brokers, clientId: name }), topic, groupId: `${topic}.${name}`, shards, nodeId: name,
    sessionTimeoutMs: 6_000, offsets: new MemoryShardOffsets(), signingKeys: keys, softRecords,
  });
  const compactNode = open('compact');
  const jsonNode = open('json', 'json');
  const seen = { compact: { soft: [], letters: [] } as Seen, json: { soft: [], letters: [] } as Seen };
  t.teardown(async () => { await compactNode.stop(); await jsonNode.stop(); });
  await compactNode.start(handlers(compactNode, seen.compact));
  await jsonNode.start(handlers(jsonNode, seen.json));

  const fromCompact = [fix('a', 1), fix('b', 2)];
  const fromJson = [fix('c', 3), fix('d', 4)];
  // What a node from before the compact form wrote, byte for byte.
  const fromOld = [fix('e', 5)];
  await compactNode.appendSoft(1, fromCompact);
  await jsonNode.appendSoft(1, fromJson);
  const kafka = createKafka({ brokers, clientId: 'old-node' });
  const producer = kafka.producer();
  await producer.connect();
  t.teardown(() => producer.disconnect());
  const place = { topic, partition: 1 };
  await producer.send({ topic, acks: -1, messages: [{ partition: 1, key: '$soft', value: sign(JSON.stringify({ soft: fromOld }), place, keys) }] });

  // A compact record with one byte changed after signing: dead-lettered, not applied.
  const raw = kafka.consumer({ groupId: `${topic}.raw` });
  await raw.connect();
  t.teardown(() => raw.disconnect());
  await raw.subscribe({ topic, fromBeginning: true });
  const values: Buffer[] = [];
  await raw.run({ eachMessage: async ({ message }) => { values.push(message.value!); } });
  t.true(await eventually(async () => values.length >= 3, 60_000), 'the three records are on the topic');
  const payloads = values.map((v) => v.subarray(44));
  t.deepEqual(payloads.map((p) => isCompact(p)), [true, false, false], 'the default writes compact records, WIRE_FORMS=previous and the old node JSON');
  t.true(payloads[1]!.toString().startsWith('{"soft":'));
  const tampered = Buffer.from(values[0]!);
  tampered.writeUInt8(tampered.readUInt8(tampered.length - 1) ^ 0x01, tampered.length - 1);
  // And one signed, but cut short: dead-lettered as a record that cannot be read.
  const cut = signBytes(values[0]!.subarray(44, values[0]!.length - 3), place, keys);
  await producer.send({
    topic, acks: -1,
    messages: [tampered, cut, sign(JSON.stringify({ soft: [fix('z', 9)] }), place, keys)].map((value) => ({ partition: 1, key: '$soft', value })),
  });

  for (const [name, s] of Object.entries(seen)) {
    t.true(await eventually(async () => s.soft.flat().some((m) => m.to.id === 'z'), 60_000), `${name} node reads up to the last record`);
    t.deepEqual(s.soft.flat(), [...fromCompact, ...fromJson, ...fromOld, fix('z', 9)], `${name} node: every message of both forms, in order, as sent`);
    t.is(s.letters.length, 2, `${name} node: the tampered and the cut compact records are dead-lettered`);
    t.regex(JSON.stringify(s.letters[0]!.command.message), /signature does not verify/);
    t.regex(JSON.stringify(s.letters[1]!.command.message), /not a compact soft record: record cut short/);
  }
});

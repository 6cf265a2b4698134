// Whoever reaches Kafka must not be able to forge a command: a cluster node on real Kafka,
// PostgreSQL and Redis skips a record written straight to its topic without the cluster key's
// signature (an admin's `approve` never takes effect), and applies one signed with it.

import test from 'ava';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Kafka, logLevel } from 'kafkajs';
import { pino } from 'pino';
import { dispatchBehaviors, dispatchServices } from '../actors/index.ts';
import { sign } from '../adapters/kafka/envelope-signature.ts';
import { loadConfig } from '../config/index.ts';
import { startNode } from '../node.ts';
import { entityKey } from '../runtime/entity.ts';
import { eventually } from './helpers/node-process.ts';
import { TEST_CLUSTER_KEY, TEST_DATA_KEYS, freshDatabase, kafkaBrokers, redisUrl } from './helpers/services.ts';

interface LogLine { msg?: string; err?: { type?: string; message?: string } }

test('a forged approve written straight to Kafka is dead-lettered, never applied; one signed with a cluster key is applied', async (t) => {
  const db = await freshDatabase();
  t.teardown(() => db.drop());
  const prefix = `sig${randomUUID().slice(0, 8)}`;
  const brokers = await kafkaBrokers();
  // Two keys, as during a rotation: the node signs with the first and accepts either.
  const older = randomBytes(32).toString('base64');
  const config = loadConfig({
    MODE: 'cluster', KAFKA_BROKERS: brokers, DATABASE_URL: db.url, REDIS_URL: await redisUrl(), NODE_ID: `${prefix}-n1`,
    JWT_SECRET: randomBytes(32).toString('base64'), QUOTE_SECRET: randomBytes(32).toString('base64'), ...TEST_DATA_KEYS,
    CLUSTER_KEY: `${TEST_CLUSTER_KEY.CLUSTER_KEY},${older}`, KAFKA_TOPIC_PREFIX: prefix, SHARDS: '4', KAFKA_SESSION_TIMEOUT_MS: '6000',
    PORT: '0', HOST: '127.0.0.1', DATA_DIR: mkdtempSync(join(tmpdir(), 'signing-')), LOG_LEVEL: 'warn',
  });
  const lines: LogLine[] = [];
  const sink = new Writable({ write(chunk, _enc, done) { for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l)); done(); } });
  const node = await startNode({ config, behaviors: dispatchBehaviors(config), services: dispatchServices(config), logger: pino({ level: 'warn' }, sink) });
  t.teardown(() => node.stop());

  // A self-registered driver waits for an admin's approval (this command goes through the node: signed).
  const driver = { kind: 'driver', id: `d-${prefix}` };
  t.like(await node.region.request(driver, { type: 'profile.set', profile: { active: true, approval: 'pending' } }), { status: 'applied' });
  const approval = async () => (await node.region.ask<{ profile: { approval?: string } }>(driver, { type: 'get' })).profile.approval;
  t.is(await approval(), 'pending');

  // Anyone who reaches the broker: a bare producer writing well-formed approve commands to the driver's partition.
  const kafka = new Kafka({ brokers: brokers.split(','), clientId: 'forger', logLevel: logLevel.NOTHING });
  const producer = kafka.producer();
  await producer.connect();
  t.teardown(() => producer.disconnect());
  const topic = `${prefix}.commands`;
  const partition = node.region.shardOf(driver);
  const write = async (value: string) => {
    const [meta] = await producer.send({ topic, acks: -1, messages: [{ partition, key: entityKey(driver), value }] });
    return Number(meta!.baseOffset);
  };
  const approve = () => JSON.stringify({ id: randomUUID(), to: driver, message: { type: 'approve' }, at: Date.now() });
  // A record that does not verify reaches no entity: it is dead-lettered with its bytes, like any record that is not a command.
  const skipped = async (offset: number) => {
    const letter = await node.edge.deadLetters.get(`$undecodable:${partition}:${offset}`);
    return letter && { failure: letter.failure, raw: Buffer.from((letter.command.message as { raw: string }).raw, 'base64').toString() };
  };

  const unsigned = await write(approve());
  const wrongKey = await write(sign(approve(), { topic, partition }, [randomBytes(32)]));
  const otherPartition = await write(sign(approve(), { topic, partition: (partition + 1) % 4 }, [Buffer.from(TEST_CLUSTER_KEY.CLUSTER_KEY)]));
  t.true(await eventually(async () => (await Promise.all([unsigned, wrongKey, otherPartition].map(skipped))).every(Boolean), 60_000),
    JSON.stringify(lines.slice(-5)));
  t.regex((await skipped(unsigned))!.failure.message, /record carries no signature: not from a node holding CLUSTER_KEY/);
  t.regex((await skipped(wrongKey))!.failure.message, /record signature does not verify with any CLUSTER_KEY key/);
  t.regex((await skipped(otherPartition))!.failure.message, /does not verify/, 'a signature for another partition');
  t.regex((await skipped(unsigned))!.raw, /"type":"approve"/, 'the letter keeps the record as it was written');
  t.is(await approval(), 'pending', 'no forged approve took effect');

  // The same command signed with a key of the cluster (the second one, from before a rotation) is applied.
  const signed = await write(sign(approve(), { topic, partition }, [Buffer.from(older)]));
  t.true(await eventually(async () => (await approval()) === 'approved', 60_000));
  t.is(await skipped(signed), undefined);
});

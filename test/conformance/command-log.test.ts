// The CommandLog conformance suite (command-log.ts) against the embedded node's log (file
// segments in a directory) and Kafka (a topic and consumer group of its own per case).

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InProcessCommandLog } from '../../adapters/file/command-log.ts';
import { KafkaCommandLog } from '../../adapters/kafka/command-log.ts';
import { createKafka } from '../../adapters/kafka/client.ts';
import { kafkaBrokers } from '../helpers/services.ts';
import { commandLogConformance } from './command-log.ts';
import { MemoryShardOffsets } from '../../adapters/memory/shard-offsets.ts';

commandLogConformance('file log', async (shards) => {
  const dir = mkdtempSync(join(tmpdir(), 'dispatch-log-conformance-'));
  return {
    // Small segments and batches, so rolling segments and several batches per shard are exercised too.
    open: () => new InProcessCommandLog({ shards, nodeId: 'conf-node', dir, segmentRecords: 4, batchSize: 3 }),
    async remove() {
      // A commit's offsets file is written on the next turn (setImmediate), even after stop():
      // removing the directory before that write would fail it, uncaught.
      await new Promise((r) => setImmediate(r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}, { soft: false });

commandLogConformance('Kafka', async (shards) => {
  const brokers = (await kafkaBrokers()).split(',');
  const topic = `conf.${randomUUID().slice(0, 8)}.commands`;
  // One table for every log opened in the case: a restart resumes where the last one stored.
  const table = new Map<number, number>();
  return {
    open: () => new KafkaCommandLog({
      kafka: createKafka({ brokers, clientId: 'conf-node' }),
      topic, groupId: `${topic}.group`, shards, nodeId: 'conf-node', brokers, sessionTimeoutMs: 6_000, heartbeatIntervalMs: 500,
      offsets: new MemoryShardOffsets({ table }),
    }),
    async remove() {
      const admin = createKafka({ brokers, clientId: 'conf-cleanup' }).admin();
      await admin.connect();
      await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
      await admin.disconnect();
    },
  };
}, { soft: true });

// The command log for a node: Kafka in cluster mode, the in-process log otherwise.

import { join } from 'node:path';
import type { Config } from '../config/index.ts';
import type { Logger } from '../runtime/logger.ts';
import type { CommandLog } from '../runtime/ports.ts';
import { createKafka } from './kafka/client.ts';
import { KafkaCommandLog } from './kafka/command-log.ts';
import { CommandLogGapError, InProcessCommandLog } from './file/command-log.ts';

/** `quiet`: while it answers true, the Kafka client's own log lines are dropped (start-up says it waits instead). */
export function openCommandLog(config: Config, logger: Logger, options: { quiet?: () => boolean } = {}): CommandLog {
  const onError = (error: unknown, context: string) => logger.warn({ err: error }, context);
  if (config.mode === 'embedded') {
    return new InProcessCommandLog({
      shards: config.cluster.shards, nodeId: config.node.id, dir: join(config.storage.dataDir, 'log'),
      // Records missing on disk stop a shard until an operator repairs it: an error, not a warning.
      onError: (error, context) => (error instanceof CommandLogGapError ? logger.error({ err: error }, context) : onError(error, context)),
    });
  }
  const prefix = config.cluster.topicPrefix;
  return new KafkaCommandLog({
    kafka: createKafka({ brokers: config.cluster.kafkaBrokers, clientId: `${prefix}-${config.node.id}`, logger, quiet: options.quiet,
      ...config.cluster.kafkaSecurity,
    }),
    topic: `${prefix}.commands`,
    groupId: `${prefix}.nodes`,
    shards: config.cluster.shards,
    nodeId: config.node.id,
    brokers: config.cluster.kafkaBrokers,
    sessionTimeoutMs: config.cluster.sessionTimeoutMs,
    replicationFactor: config.cluster.replicationFactor,
    minInsyncReplicas: config.cluster.minInsyncReplicas,
    maxQueuedRecords: config.cluster.sendQueueMax,
    maxRequestBytes: config.cluster.maxRequestBytes,
    onError,
  });
}

// The command log for a node: Kafka in cluster mode, the in-process log otherwise. The Kafka
// client (kafkajs) is loaded only in cluster mode: an embedded node never holds it.

import { join } from 'node:path';
import type { Config } from '../config/index.ts';
import type { Logger } from '../runtime/logger.ts';
import type { CommandLog, ShardOffsets } from '../runtime/ports.ts';
import { CommandLogGapError, InProcessCommandLog } from './file/command-log.ts';

/**
 * `offsets`: where a cluster's shards resume reading (offsetsFor: the node's storage, fenced).
 * `quiet`: while it answers true, the Kafka client's own log lines are dropped (start-up says it waits instead).
 */
export async function openCommandLog(
  config: Config, logger: Logger,
  options: { quiet?: () => boolean; offsets?: (topic: string) => ShardOffsets; onPhase?: (phase: string, seconds: number) => void } = {},
): Promise<CommandLog> {
  const onError = (error: unknown, context: string) => logger.warn({ err: error }, context);
  if (config.mode === 'embedded') {
    return new InProcessCommandLog({
      shards: config.cluster.shards, nodeId: config.node.id, dir: join(config.storage.dataDir, 'log'),
      // Records missing on disk stop a shard until an operator repairs it: an error, not a warning.
      onError: (error, context) => (error instanceof CommandLogGapError ? logger.error({ err: error }, context) : onError(error, context)),
    });
  }
  const prefix = config.cluster.topicPrefix;
  // Said once at start: what an operator must know about who can write commands.
  if (!config.cluster.kafkaSecurity.sasl) logger.warn('no KAFKA_SASL_MECHANISM: the brokers do not know this node from anyone else who reaches them');
  if (!config.cluster.signingKeys) logger.warn('COMMAND_SIGNING=false: commands in Kafka are not signed, so whoever can write to it can forge them');
  if (!options.offsets) throw new Error('a cluster command log needs where its shards resume (offsets)');
  const topic = `${prefix}.commands`;
  const [{ createKafka }, { KafkaCommandLog }] = await Promise.all([import('./kafka/client.ts'), import('./kafka/command-log.ts')]);
  return new KafkaCommandLog({
    offsets: options.offsets(topic),
    kafka: createKafka({ brokers: config.cluster.kafkaBrokers, clientId: `${prefix}-${config.node.id}`, logger, quiet: options.quiet,
      ...config.cluster.kafkaSecurity,
    }),
    topic,
    groupId: `${prefix}.nodes`,
    shards: config.cluster.shards,
    nodeId: config.node.id,
    brokers: config.cluster.kafkaBrokers,
    sessionTimeoutMs: config.cluster.sessionTimeoutMs,
    replicationFactor: config.cluster.replicationFactor,
    minInsyncReplicas: config.cluster.minInsyncReplicas,
    maxQueuedRecords: config.cluster.sendQueueMax,
    maxRequestBytes: config.cluster.maxRequestBytes,
    softRecords: config.cluster.wireForms === 'previous' ? 'json' : 'compact',
    signingKeys: config.cluster.signingKeys,
    onPhase: options.onPhase,
    onJoinDone: (summary) => logger.info(summary),
    onError,
  });
}

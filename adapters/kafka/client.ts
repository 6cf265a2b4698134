// A kafkajs client whose logs go to the node's structured logger instead of the console.

import { Kafka, logLevel, type KafkaConfig, type LogEntry } from 'kafkajs';
import type { Logger } from '../../runtime/logger.ts';

export interface KafkaClientOptions {
  readonly brokers: readonly string[];
  readonly clientId: string;
  readonly logger?: Logger;
  /** While true, kafkajs' lines are dropped: it logs every failed connect, and start-up already says it waits for Kafka. */
  readonly quiet?: () => boolean;
  /** TLS to the brokers (system CAs, plus NODE_EXTRA_CA_CERTS), and SASL over it. */
  readonly ssl?: boolean;
  readonly sasl?: { readonly mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; readonly username: string; readonly password: string };
}

/** kafkajs' connection security from ours: unset stays plaintext, as a local broker is. */
export function kafkaSecurity(options: Pick<KafkaClientOptions, 'ssl' | 'sasl'>): Pick<KafkaConfig, 'ssl' | 'sasl'> {
  return {
    ...(options.ssl ? { ssl: true } : {}),
    ...(options.sasl ? { sasl: { ...options.sasl } as KafkaConfig['sasl'] } : {}),
  };
}

const LEVELS: Record<number, 'error' | 'warn' | 'info' | 'debug'> = {
  [logLevel.ERROR]: 'error', [logLevel.WARN]: 'warn', [logLevel.INFO]: 'info', [logLevel.DEBUG]: 'debug',
};

export function createKafka(options: KafkaClientOptions): Kafka {
  const logger = options.logger;
  return new Kafka({
    clientId: options.clientId,
    brokers: [...options.brokers],
    ...kafkaSecurity(options),
    connectionTimeout: 3_000,
    requestTimeout: 30_000,
    retry: { initialRetryTime: 100, retries: 8, maxRetryTime: 5_000 },
    logLevel: logLevel.WARN,
    logCreator: () => ({ namespace, level, log }: LogEntry) => {
      if (!logger || options.quiet?.()) return;
      const { message, ...extra } = log;
      logger[LEVELS[level] ?? 'info']({ kafka: namespace, ...extra }, message);
    },
  });
}

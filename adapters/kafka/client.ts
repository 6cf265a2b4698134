// A kafkajs client whose logs go to the node's structured logger instead of the console.

import { Kafka, logLevel, type LogEntry } from 'kafkajs';
import type { Logger } from '../../runtime/logger.ts';

export interface KafkaClientOptions {
  readonly brokers: readonly string[];
  readonly clientId: string;
  readonly logger?: Logger;
  /** While true, kafkajs' lines are dropped: it logs every failed connect, and start-up already says it waits for Kafka. */
  readonly quiet?: () => boolean;
}

const LEVELS: Record<number, 'error' | 'warn' | 'info' | 'debug'> = {
  [logLevel.ERROR]: 'error', [logLevel.WARN]: 'warn', [logLevel.INFO]: 'info', [logLevel.DEBUG]: 'debug',
};

export function createKafka(options: KafkaClientOptions): Kafka {
  const logger = options.logger;
  return new Kafka({
    clientId: options.clientId,
    brokers: [...options.brokers],
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

// Structured JSON logs (pino): one line per event, machine-readable, cheap when disabled.

import { pino, type Logger } from 'pino';
import type { NodeId } from './entity.ts';

export type { Logger };

export function createLogger(options: { level: string; nodeId: NodeId }): Logger {
  return pino({
    level: options.level,
    base: { node: options.nodeId, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}

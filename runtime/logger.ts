// Structured JSON logs (pino): one line per event, machine-readable, cheap when disabled.

import { pino, type DestinationStream, type Logger } from 'pino';
import type { NodeId } from './entity.ts';

export type { Logger };

export function createLogger(options: { level: string; nodeId: NodeId; destination?: DestinationStream }): Logger {
  return pino({
    level: options.level,
    base: { node: options.nodeId, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    serializers: { err: serializeError },
  }, options.destination);
}

/**
 * An error as pino writes it, less what a client library attached that can hold a secret:
 * ioredis puts the failed command on its errors, and when Redis refuses a password that
 * command is AUTH (or HELLO ... AUTH) with the password among its arguments.
 */
export function serializeError(error: unknown): unknown {
  return scrub(pino.stdSerializers.err(error as Error));
}

function scrub(serialized: unknown, depth = 0): unknown {
  if (!serialized || typeof serialized !== 'object' || depth > 5) return serialized;
  const e = serialized as Record<string, unknown> & { command?: { name?: unknown; args?: unknown } };
  if (e.command && typeof e.command === 'object' && 'args' in e.command) e.command = { name: e.command.name };
  if (e.cause) e.cause = scrub(e.cause, depth + 1);
  if (Array.isArray(e.aggregateErrors)) e.aggregateErrors = e.aggregateErrors.map((c) => scrub(c, depth + 1));
  return e;
}

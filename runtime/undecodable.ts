// A log record that is not a command envelope (garbage written to the topic, a record cut
// short, a signature that does not verify) cannot reach an entity, and must not be skipped
// silently either: the log hands it on as a stand-in envelope carrying the record's bytes,
// and the region dead-letters it (failure kind `undecodable`), where an admin lists and
// discards it like any other dead letter. It is never sent again: there is nothing to send.

import type { CommandEnvelope, LogRecord, ShardId } from './ports.ts';

/** The entity kind no behaviour has: the stand-in's address. */
export const UNDECODABLE_KIND = '$undecodable';

export interface UndecodableMessage {
  /** The record's bytes, base64. */
  readonly raw: string;
  /** Why it is not a command. */
  readonly reason: string;
}

/** The stand-in for the record at `offset` of `shard`: one id per record, so a redelivery is the same letter. */
export function undecodableRecord(shard: ShardId, offset: number, bytes: Buffer | null, reason: string): LogRecord {
  const message: UndecodableMessage = { raw: (bytes ?? Buffer.alloc(0)).toString('base64'), reason };
  const command: CommandEnvelope = {
    id: `${UNDECODABLE_KIND}:${shard}:${offset}`, to: { kind: UNDECODABLE_KIND, id: `${shard}:${offset}` }, message, at: Date.now(),
  };
  return { shard, offset, command };
}

export function isUndecodable(command: Pick<CommandEnvelope, 'to'>): boolean {
  return command.to.kind === UNDECODABLE_KIND;
}

/** Why a decoded value is not a command envelope, or undefined when it is one. */
export function notAnEnvelope(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'not a JSON object';
  const v = value as Partial<Record<keyof CommandEnvelope, unknown>>;
  if (typeof v.id !== 'string' || v.id === '') return 'no command id';
  const to = v.to as { kind?: unknown; id?: unknown } | undefined;
  if (typeof to !== 'object' || to === null || typeof to.kind !== 'string' || typeof to.id !== 'string') return 'no entity address';
  if (to.kind === UNDECODABLE_KIND) return 'addressed to the undecodable kind';
  if (typeof v.at !== 'number' || !Number.isFinite(v.at)) return 'no time';
  return undefined;
}

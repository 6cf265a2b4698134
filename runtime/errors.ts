// Every failure while handling a command, by class. `retriable` alone decides what
// the runtime does with it: a retriable failure is tried again with capped backoff
// (the shard waits, its offset stays uncommitted); anything else is permanent and
// the command goes to the dead-letter store so the shard goes on. Adapters turn
// their own errors into these (the PostgreSQL journal maps SQLSTATEs); nothing in
// the runtime inspects messages or error codes.

import type { ShardId } from './entity.ts';

export abstract class RuntimeError extends Error {
  abstract readonly retriable: boolean;
  /** A stable name for logs, metrics and the dead-letter table. */
  abstract readonly kind: FailureKind;
}

export type FailureKind =
  | 'storage_unavailable' | 'journal_conflict' | 'storage_rejected' | 'reducer_failed' | 'undecodable' | 'log_unavailable'
  | 'log_full' | 'entity_stopped' | 'dependency_unreachable' | 'rebalance_failed' | 'shard_handoff' | 'shard_fenced' | 'unknown';

/** Storage cannot be reached or answer now (connection refused or reset, timeout). */
export class StorageUnavailableError extends RuntimeError {
  override readonly name = 'StorageUnavailableError';
  readonly retriable = true;
  readonly kind = 'storage_unavailable' as const;
}

/** Another writer got to the entity's next journal position first: recover and try again. */
export class JournalConflictError extends RuntimeError {
  override readonly name = 'JournalConflictError';
  readonly retriable = true;
  readonly kind = 'journal_conflict' as const;
  readonly persistenceKey: string;
  readonly sequenceNr: number;
  constructor(persistenceKey: string, sequenceNr: number) {
    super(`journal already has ${persistenceKey}#${sequenceNr}: another writer owns this entity`);
    this.persistenceKey = persistenceKey;
    this.sequenceNr = sequenceNr;
  }
}

/**
 * The entity journaled this command already (an append made `unlessCommand`, ports.ts): nothing
 * was written. Not a failure of the command: the runtime answers it as it answered it then.
 */
export class DuplicateCommandError extends RuntimeError {
  override readonly name = 'DuplicateCommandError';
  readonly retriable = true;
  readonly kind = 'journal_conflict' as const;
  readonly persistenceKey: string;
  readonly commandId: string;
  constructor(persistenceKey: string, commandId: string) {
    super(`${persistenceKey} has journaled command ${commandId} already`);
    this.persistenceKey = persistenceKey;
    this.commandId = commandId;
  }
}

/** Storage is up but refuses this data (bad bytes, a value out of range): retrying changes nothing. */
export class StorageRejectedError extends RuntimeError {
  override readonly name = 'StorageRejectedError';
  readonly retriable = false;
  readonly kind = 'storage_rejected' as const;
}

/** The entity's reducer threw: a bug, or a message it cannot take. */
export class ReducerError extends RuntimeError {
  override readonly name = 'ReducerError';
  readonly retriable = false;
  readonly kind = 'reducer_failed' as const;
}

/** The command cannot be read (not an envelope, no such entity kind). */
export class UndecodableCommandError extends RuntimeError {
  override readonly name = 'UndecodableCommandError';
  readonly retriable = false;
  readonly kind = 'undecodable' as const;
}

/** A retriable refusal that says how long to wait: the edge sends it as `Retry-After`. */
export abstract class RetryLaterError extends RuntimeError {
  readonly retriable = true;
  readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterSeconds = 1) {
    super(message);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** The command log (Kafka) could not take the command's tells. */
export class LogUnavailableError extends RuntimeError {
  override readonly name = 'LogUnavailableError';
  readonly retriable = true;
  readonly kind = 'log_unavailable' as const;
}

/**
 * The command log's send queue is full (the broker is slow or away): the append is
 * refused at once instead of waiting in an unbounded queue. Nothing was written;
 * the caller may try the same command again after `retryAfterSeconds`.
 */
export class CommandLogFullError extends RetryLaterError {
  override readonly name = 'CommandLogFullError';
  readonly kind = 'log_full' as const;
}

/** The entity was stopped (passivated, shard moved, node stopping) before it handled the message. */
export class EntityStoppedError extends RuntimeError {
  override readonly name = 'EntityStoppedError';
  readonly retriable = true;
  readonly kind = 'entity_stopped' as const;
}

/**
 * A dependency (PostgreSQL, Kafka, Redis) cannot be reached at all: connection refused or
 * closed, no broker, DNS. Adapters throw it from their start-up steps so a node started
 * before its dependencies waits for them instead of exiting; anything else they throw at
 * start (bad credentials, a topic with the wrong partition count) is left as it is and fails.
 */
export class DependencyUnreachableError extends RuntimeError {
  override readonly name = 'DependencyUnreachableError';
  readonly retriable = true;
  readonly kind = 'dependency_unreachable' as const;
  /** "PostgreSQL", "Kafka", "Redis". */
  readonly dependency: string;
  /** host:port, never credentials. */
  readonly address: string;
  readonly reason: string;
  constructor(dependency: string, address: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`${dependency} at ${address} is not reachable: ${reason}`, { cause });
    this.dependency = dependency;
    this.address = address;
    this.reason = reason;
  }
}

/** Setting up a gained shard failed (its reminders could not be read): the log tries the step again. */
export class RebalanceStepError extends RuntimeError {
  override readonly name = 'RebalanceStepError';
  readonly retriable = true;
  readonly kind = 'rebalance_failed' as const;
}

/**
 * The entity's shard is being handed from one node to another (a rebalance, or its owner
 * stopping): its old owner no longer answers for it and its new owner has not taken it
 * yet, or is not known here yet. Nothing was read or changed; asking again after
 * `retryAfterSeconds` reaches the new owner.
 */
export class ShardHandoffError extends RetryLaterError {
  override readonly name = 'ShardHandoffError';
  readonly kind = 'shard_handoff' as const;
}

/**
 * A write of a shard was refused because this node's epoch for it is no longer the
 * current one: another node took the shard (ports.ts ShardEpochs). Nothing was written.
 * Not retriable: retrying with the same epoch is refused the same way, and the node
 * stops the shard instead (region.ts).
 */
export class ShardFencedError extends RuntimeError {
  override readonly name = 'ShardFencedError';
  readonly retriable = false;
  readonly kind = 'shard_fenced' as const;
  readonly shard: ShardId;
  /** The epoch the write carried (undefined: this node held none for the shard). */
  readonly epoch: number | undefined;
  constructor(shard: ShardId, epoch: number | undefined, what: string) {
    super(
      `${what} refused: shard ${shard} ` +
      `${epoch === undefined ? 'is not held by this node' : `epoch ${epoch} is stale (another node took the shard)`}`,
    );
    this.shard = shard;
    this.epoch = epoch;
  }
}

/** An error no adapter classified: treated as transient until attempts run out. */
export class UnclassifiedError extends RuntimeError {
  override readonly name = 'UnclassifiedError';
  readonly retriable = true;
  readonly kind = 'unknown' as const;
}

/** The runtime's view of any thrown value. */
export function classify(error: unknown): RuntimeError {
  if (error instanceof RuntimeError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new UnclassifiedError(message, { cause: error });
}

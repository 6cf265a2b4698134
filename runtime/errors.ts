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
  constructor(message?: string, options?: ErrorOptions) {
    super(message, options);
    // Logs and stack traces show the class (StorageUnavailableError), not "Error".
    this.name = new.target.name;
  }
}

export type FailureKind =
  | 'storage_unavailable' | 'journal_conflict' | 'storage_rejected' | 'reducer_failed' | 'undecodable' | 'log_unavailable'
  | 'log_full' | 'entity_stopped' | 'dependency_unreachable' | 'rebalance_failed' | 'shard_handoff' | 'shard_fenced' | 'unknown';

/** A class of failure is two facts: its kind and whether it is retried. Each class below says them once. */
function failure<const K extends FailureKind, const R extends boolean>(kind: K, retriable: R) {
  abstract class Failure extends RuntimeError {
    readonly kind = kind;
    readonly retriable = retriable;
  }
  return Failure;
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

/** Storage cannot be reached or answer now (connection refused or reset, timeout). */
export class StorageUnavailableError extends failure('storage_unavailable', true) {}

/** Another writer got to the entity's next journal position first: recover and try again. */
export class JournalConflictError extends failure('journal_conflict', true) {
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
export class DuplicateCommandError extends failure('journal_conflict', true) {
  readonly persistenceKey: string;
  readonly commandId: string;
  constructor(persistenceKey: string, commandId: string) {
    super(`${persistenceKey} has journaled command ${commandId} already`);
    this.persistenceKey = persistenceKey;
    this.commandId = commandId;
  }
}

/** Storage is up but refuses this data (bad bytes, a value out of range): retrying changes nothing. */
export class StorageRejectedError extends failure('storage_rejected', false) {}

/** The entity's reducer threw: a bug, or a message it cannot take. */
export class ReducerError extends failure('reducer_failed', false) {}

/** The command cannot be read (not an envelope, no such entity kind). */
export class UndecodableCommandError extends failure('undecodable', false) {}

/** The command log (Kafka) could not take the command's tells. */
export class LogUnavailableError extends failure('log_unavailable', true) {}

/**
 * The command log's send queue is full (the broker is slow or away): the append is
 * refused at once instead of waiting in an unbounded queue. Nothing was written;
 * the caller may try the same command again after `retryAfterSeconds`.
 */
export class CommandLogFullError extends RetryLaterError {
  readonly kind = 'log_full' as const;
}

/** The entity was stopped (passivated, shard moved, node stopping) before it handled the message. */
export class EntityStoppedError extends failure('entity_stopped', true) {}

/**
 * A dependency (PostgreSQL, Kafka, Redis) cannot be reached at all: connection refused or
 * closed, no broker, DNS. Adapters throw it from their start-up steps so a node started
 * before its dependencies waits for them instead of exiting; anything else they throw at
 * start (bad credentials, a topic with the wrong partition count) is left as it is and fails.
 */
export class DependencyUnreachableError extends failure('dependency_unreachable', true) {
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
export class RebalanceStepError extends failure('rebalance_failed', true) {}

/**
 * The entity's shard is being handed from one node to another (a rebalance, or its owner
 * stopping): its old owner no longer answers for it and its new owner has not taken it
 * yet, or is not known here yet. Nothing was read or changed; asking again after
 * `retryAfterSeconds` reaches the new owner.
 */
export class ShardHandoffError extends RetryLaterError {
  readonly kind = 'shard_handoff' as const;
}

/**
 * The node is stopping and takes no new commands: the request is for another node (the
 * client, or its load balancer, sends it there). Nothing was written.
 */
export class NodeStoppingError extends RetryLaterError {
  readonly kind = 'shard_handoff' as const;
}

/**
 * A write of a shard was refused because this node's epoch for it is no longer the
 * current one: another node took the shard (ports.ts ShardEpochs). Nothing was written.
 * Not retriable: retrying with the same epoch is refused the same way, and the node
 * stops the shard instead (region.ts).
 */
export class ShardFencedError extends failure('shard_fenced', false) {
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
export class UnclassifiedError extends failure('unknown', true) {}

/** The runtime's view of any thrown value. */
export function classify(error: unknown): RuntimeError {
  if (error instanceof RuntimeError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new UnclassifiedError(message, { cause: error });
}

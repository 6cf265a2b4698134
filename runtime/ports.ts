// Ports: what the runtime needs from the outside world. Adapters implement them
// (adapters/memory for the embedded node, adapters/kafka, adapters/postgres,
// adapters/redis for a cluster); the runtime depends on nothing else.

import type { EntityRef } from '../actors/behavior.ts';
import type { Origin, Refusal } from './dedupe.ts';
import type { FailureKind, ShardFencedError } from './errors.ts';
import type { EntityKey, NodeId, ShardId } from './entity.ts';

export type { EntityKey, NodeId, ShardId };

/** A shard's ownership generation: each node that gains the shard takes a larger one. */
export type Epoch = number;

/** One command as it travels through the log. Plain JSON. */
export interface CommandEnvelope {
  /** Unique per logical command; redeliveries keep it, so receivers drop duplicates. */
  readonly id: string;
  readonly to: EntityRef;
  readonly message: unknown;
  /** Milliseconds since the epoch when the command was accepted. */
  readonly at: number;
  /** Node that wants to hear the outcome (for request/response over the log). */
  readonly replyTo?: string;
  /** For a durable tell from an entity: its sender and place in the sender's history (dedupe.ts). */
  readonly origin?: Origin;
  /**
   * W3C traceparent of the span that appended the command, so its handling on the owning
   * node continues the same trace (runtime/tracing.ts). Absent when tracing is off or the
   * command belongs to no traced request: records do not grow, and older records read as
   * untraced.
   */
  readonly trace?: string;
}

/**
 * A soft message: soft state (a GPS fix, a driver's copy in its cell) that is never
 * journaled and has no command id. It carries no dedupe and may be lost (a rebalance, a
 * crash): the next one repairs it, and receivers keep the newest by its own timestamp.
 */
export interface SoftMessage {
  readonly to: EntityRef;
  readonly message: unknown;
  /** Milliseconds since the epoch when the message was accepted. */
  readonly at: number;
}

export interface LogRecord {
  readonly shard: ShardId;
  readonly offset: number;
  readonly command: CommandEnvelope;
}

export interface ShardAssignment {
  /** Shards this node owns after the change. */
  readonly owned: readonly ShardId[];
  /** Shard -> node id, as far as this node knows (whole cluster). */
  readonly placement: ReadonlyMap<ShardId, NodeId>;
  readonly nodes: readonly NodeId[];
}

export interface CommandLogHandlers {
  /**
   * Called once per record, in offset order per shard; the log commits nothing by itself.
   * `heartbeat` tells the log the consumer is alive while a record takes long (a retry
   * waiting for storage), so the group does not evict a node that is only waiting.
   * Resolves true when every record was handled; false when the runtime left some unhandled
   * (it does not serve the shard now): the log must not move past them (resolve, commit, or
   * commit a later record), but deliver them again, from the first one, to whoever serves
   * the shard next, this node included.
   */
  onRecords(shard: ShardId, records: readonly LogRecord[], heartbeat?: () => Promise<void>): Promise<boolean>;
  /**
   * Ownership changed. Called before records of newly gained shards are delivered.
   * `revoked` must be fully drained (handled and committed) when the promise settles.
   * A rejection is retried by the log, with backoff, with the same assignment, no shards to
   * drain and the same gained shards (so setting up a shard must be repeatable), until it
   * succeeds or a newer assignment replaces it; records of the gained shards wait meanwhile.
   */
  onAssignment(assignment: ShardAssignment, revoked: readonly ShardId[], gained: readonly ShardId[]): Promise<void>;
  /**
   * For a log whose new owners may take a shard as soon as the group has synced (no release
   * handshake): a rebalance has begun and this node may lose any shard it owns. Called
   * synchronously before the node rejoins the group; the runtime stops firing timers,
   * answering asks and activating entities on every shard it owns until onJoined says which
   * it kept. The Kafka log does not call it: a gained shard waits for its last owner's
   * release (shard-handoff.ts), so shards that stay need not stop.
   */
  onRebalancing?(): void;
  /**
   * The group assigned this node `owned` (synchronously, as the assignment arrives, before
   * onAssignment): shards lost stop at once and stay stopped until drained; kept ones go on.
   */
  onJoined?(owned: readonly ShardId[]): void;
  /**
   * The group confirmed this node's membership (a join, a heartbeat answered): its latest
   * assignment stands until `until` (ms since the epoch) unless a rebalance says otherwise.
   * A log with a group calls it on every confirmation; past `until` without a new one, the
   * node may have been evicted (paused, cut off) and its shards given to others, so the
   * runtime serves none of them until the group answers again. A log without a group (the
   * in-process one) never calls it: its assignment needs no confirming.
   */
  onLease?(until: number): void;
  /** The whole shard map became known after onAssignment was given a provisional one (the group was still settling). */
  onPlacement?(map: Pick<ShardAssignment, 'placement' | 'nodes'>): void;
  /**
   * Soft messages of one record written by `appendSoft`, in their order, for a shard this
   * node serves. Handled before the batch's commands (soft messages are last-write-wins by
   * their own timestamp, so their order against commands does not matter); the log commits
   * a soft record itself once the commands before it are committed.
   */
  onSoft?(shard: ShardId, messages: readonly SoftMessage[]): Promise<void>;
}

/**
 * A partitioned, ordered, durable command log with Kafka's semantics:
 * one partition per shard, records ordered per partition, consumers resume
 * from the last committed offset, commit is explicit (at-least-once).
 */
export interface CommandLog {
  readonly shards: number;
  append(shard: ShardId, command: CommandEnvelope): Promise<void>;
  appendMany(entries: readonly { shard: ShardId; command: CommandEnvelope }[]): Promise<void>;
  /**
   * Appends soft messages of one shard as one record (many fixes, one record), for a shard
   * another node owns; its consumer hands them to onSoft. Absent from a log whose node owns
   * every shard (the in-process one): soft messages never need to travel there.
   */
  appendSoft?(shard: ShardId, messages: readonly SoftMessage[]): Promise<void>;
  /** Starts consuming. Resolves once the first assignment is known. */
  start(handlers: CommandLogHandlers): Promise<void>;
  /** Marks everything up to and including `offset` of `shard` as handled. */
  commit(shard: ShardId, offset: number): Promise<void>;
  /**
   * Stops taking records while staying a member of the group (owning its shards): resolves
   * once the handlers in flight have finished and what they handled is committed. A graceful
   * stop calls it, stops the shards, then stop(), so no other node owns a shard before its
   * entities are stopped and its offsets committed.
   */
  drain?(): Promise<void>;
  /** Stops consuming (draining first if drain() was not called), commits what was handled, leaves the group. */
  stop(): Promise<void>;
  /** Records appended but not yet committed, per shard this node consumes (for /metrics). */
  stats?(): readonly { readonly shard: number; readonly lag: number }[];
  /** A fault an operator must repair (a shard stopped at a gap in its records), in words for /ready; undefined: none. */
  problem?(): string | undefined;
}

/** A journal entry as the persistence engine stores it. */
export interface JournalEntry {
  readonly persistenceKey: string;
  readonly sequenceNr: number;
  readonly data: unknown;
  readonly createdAt: number;
  readonly tags: readonly string[];
}

export interface SnapshotEntry {
  readonly persistenceKey: string;
  readonly sequenceNr: number;
  readonly data: unknown;
  readonly createdAt: number;
}

export interface AppendOptions {
  /** Write nothing, and fail with DuplicateCommandError, if the entity journaled this command id already. */
  readonly unlessCommand?: string;
}

/**
 * Event journal and snapshot store. `(persistenceKey, sequenceNr)` is unique: a
 * second writer at the same position fails with JournalConflictError instead of
 * forking the history.
 */
export interface Journal {
  /**
   * With `options.unlessCommand`, the append is also conditional on the entity having
   * journaled no entry for that command id (`data.cmd`): if it has, nothing is written and
   * the append fails with DuplicateCommandError. This is how a command memory cannot place
   * is recognised without a lookup before every write (entity-actor.ts runCommand).
   */
  append(entry: JournalEntry, options?: AppendOptions): Promise<void>;
  /** Entries with sequenceNr > afterSequenceNr, ascending, at most `limit`. */
  read(persistenceKey: string, afterSequenceNr: number, limit: number): Promise<JournalEntry[]>;
  /** The entry an entity journaled for a command (by the command id in its data, `cmd`), if any. */
  findCommand(persistenceKey: string, commandId: string): Promise<JournalEntry | undefined>;
  latestSnapshot(persistenceKey: string): Promise<SnapshotEntry | undefined>;
  /**
   * Recovery's two reads in one: the latest snapshot and the first `limit` entries after it
   * (ascending). Optional: without it, recovery asks latestSnapshot, then read.
   */
  recover?(persistenceKey: string, limit: number): Promise<{ snapshot: SnapshotEntry | undefined; entries: JournalEntry[] }>;
  saveSnapshot(entry: SnapshotEntry): Promise<void>;
  /** Answers when storage is reachable (for /ready). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export { DuplicateCommandError, JournalConflictError, ShardFencedError } from './errors.ts';

/** User-facing notifications routed to whichever node holds the user's socket. */
export interface Notifier {
  /** `trace`: the traceparent of the handling that sent it, so the push to sockets joins its trace. */
  publish(userId: string, message: unknown, trace?: string): Promise<void>;
  subscribe(listener: (userId: string, message: unknown, trace?: string) => void): () => void;
  /**
   * One more socket of `userId` on this node, and one fewer: a notifier that routes by user
   * (Redis) delivers here only what is published for users watched here. Settles once
   * notifications for the user reach this node, or once that failed (it is tried again).
   * An in-process notifier delivers everything and needs neither.
   */
  watch?(userId: string): Promise<void>;
  unwatch?(userId: string): void;
  /** Releases connections (an in-process notifier has none). */
  close?(): Promise<void>;
}

/** A durable note that an entity has a timer due, so its shard's new owner activates it. */
export interface Reminder {
  readonly shard: ShardId;
  readonly entityKey: EntityKey;
  readonly name: string;
  readonly dueAt: number;
}

/**
 * Reminders are written before the timer itself is persisted in the entity's
 * journal, so a crash between the two leaves an extra reminder (harmless: the
 * activated entity finds no such timer), never a missing one.
 */
export interface ReminderStore {
  set(reminder: Reminder): Promise<void>;
  /** With `shard`, the delete is fenced like `set` (a node that lost the shard deletes nothing). */
  clear(entityKey: EntityKey, name: string, shard?: ShardId): Promise<void>;
  forShards(shards: readonly ShardId[]): Promise<Reminder[]>;
}

/**
 * Cells that have held at least one driver, readable by every node: searches skip
 * the others without waking their cell actors. The set only grows. `filter` may
 * answer from a cache, but a marked cell must show within seconds on every node,
 * and when unsure (storage down) it answers every cell given (fail open).
 */
export interface OccupiedCells {
  /** Records that a cell holds a driver (from its `cell.occupied` event); never throws. */
  mark(cell: string): void;
  /** The subset of `cells` that ever held a driver. */
  filter(cells: readonly string[]): Promise<readonly string[]> | readonly string[];
  /** Writes what is still pending and stops background work. */
  close(): Promise<void>;
}

/** A command that could not be handled, set aside so its shard goes on. */
export interface DeadLetter {
  /** The command's id (a retry re-sends it under the same id). */
  readonly id: string;
  readonly shard: ShardId;
  readonly offset: number;
  readonly command: CommandEnvelope;
  readonly failure: { readonly kind: string; readonly message: string };
  readonly attempts: number;
  readonly at: number;
}

/** Where permanently failed commands wait for an operator: list, retry, discard. */
export interface DeadLetterStore {
  add(letter: DeadLetter): Promise<void>;
  list(limit: number): Promise<DeadLetter[]>;
  get(id: string): Promise<DeadLetter | undefined>;
  remove(id: string): Promise<boolean>;
}

/**
 * Shard ownership generations, durable and shared by every node. A node that gains a
 * shard takes the next epoch for it (compare-and-set); every later write of that shard
 * carries it, and storage refuses a write whose epoch is no longer the current one, so a
 * node that lost the shard without noticing (paused, evicted from the group) writes nothing.
 */
export interface ShardEpochs {
  /** Takes a new epoch for each shard, owned by `nodeId`, not released; returns them. */
  acquire(shards: readonly ShardId[], nodeId: NodeId): Promise<ReadonlyMap<ShardId, Epoch>>;
  /** The current epoch of each shard that has one (shards never taken are absent). */
  currentEpochs(shards: readonly ShardId[]): Promise<ReadonlyMap<ShardId, EpochRecord>>;
  /**
   * Marks each shard's epoch released by its owner (drained: its last commit made, its
   * entities stopped), where that epoch is still the current one: the next owner need not
   * wait for it. An epoch taken meanwhile is left as it is.
   */
  release(epochs: ReadonlyMap<ShardId, Epoch>): Promise<void>;
}

export interface EpochRecord {
  readonly epoch: Epoch;
  readonly owner: NodeId;
  /** Its owner let the shard go (graceful hand-off); false while it holds it, or died holding it. */
  readonly released: boolean;
}

/**
 * Where each shard's consumption of the command log resumes, kept by the shards' owners in
 * storage (beside their epochs) rather than by the log: a node that lost a shard without
 * noticing cannot move it, and a new owner starts where the last one stopped.
 */
export interface ShardOffsets {
  /** The next offset to deliver, per shard that has one (absent: from the log's start). */
  next(shards: readonly ShardId[]): Promise<ReadonlyMap<ShardId, number>>;
  /** Everything before `next` of `shard` is handled; refused (ShardFencedError) unless this node holds the shard's epoch. */
  commit(shard: ShardId, next: number): Promise<void>;
}

/**
 * What a storage adapter needs to make a shard's write conditional on this node's epoch
 * (runtime/fencing.ts fills it as shards are gained and lost).
 */
export interface WriteFence {
  /** The epoch this node holds for the shard; undefined when it holds none (the write is refused). */
  epochOf(shard: ShardId): Epoch | undefined;
  /** Storage refused a write of `shard` made with `epoch`: records it and returns the error to throw. */
  refused(shard: ShardId, epoch: Epoch | undefined, what: string): ShardFencedError;
}

// What a command came to, as it travels back to its sender (across nodes, over the
// RemoteChannel): part of the ports' vocabulary, not of the actor that produces it.

export type CommandStatus = 'applied' | 'duplicate' | 'rejected' | 'failed';

export interface CommandResult {
  readonly status: CommandStatus;
  readonly rejection?: Refusal;
  readonly reply?: unknown;
  /** Why a `failed` command failed, and whether trying again can help. */
  readonly failure?: Failure;
  /** Set when a permanently failed command was set aside in the dead-letter store. */
  readonly deadLetter?: string;
}

export interface Failure {
  readonly kind: FailureKind;
  readonly retriable: boolean;
  readonly message: string;
}

/** Carries asks and command outcomes between nodes (Redis in a cluster). Absent in embedded mode. */
export interface RemoteChannel {
  /** `trace`: the asker's traceparent, when the ask is part of a traced request. */
  ask(node: NodeId, to: EntityRef, query: unknown, timeoutMs: number, trace?: string): Promise<unknown>;
  reply(node: NodeId, commandId: string, result: CommandResult): Promise<void>;
  /** Registers this node's handlers for asks from and replies to other nodes. */
  serve(handlers: {
    ask(to: EntityRef, query: unknown, trace?: string): Promise<unknown>;
    reply(commandId: string, result: CommandResult): void;
  }): Promise<void>;
}

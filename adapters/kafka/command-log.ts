// The command log on Kafka: one topic, one partition per shard. Appends go to the shard's
// partition through a bounded send queue (send-queue.ts), one request at a time,
// acknowledged by all in-sync replicas (the topic's min.insync.replicas decides how many that
// must be). Soft messages (GPS fixes for a shard another node owns) travel many to a record,
// in the compact form of soft-codec.ts (or as JSON, `{ "soft": [...] }`, which every node reads
// too), through the same queue; the reader hands them to the runtime before the batch's
// commands. Records are signed with the cluster key (envelope-signature.ts).
//
// Who reads which partition is split in two, so that a change of membership stops only the
// shards that move. The cluster's consumer group (membership.ts) decides which node owns which
// shard, through the sticky rendezvous assigner, and reads nothing; kafkajs rebalances it
// eagerly, which no longer matters. The node's own reader (partition-reader.ts), in a group
// of its own, reads the partitions of the shards this node serves, each from the offset kept
// with the shard's epoch in storage (ports.ts ShardOffsets): a shard the node keeps is read on
// through every rebalance; a shard it gains is read once its last owner let it go (the
// runtime's hand-off, shard-handoff.ts) from where that owner stopped; a shard it loses stops
// being read at once, and the batch being handled finishes before the runtime drains it.

import type { Admin, EachBatchPayload, Kafka, Message, Producer } from 'kafkajs';
import { entityKey } from '../../runtime/entity.ts';
import type {
  CommandEnvelope, CommandLog, CommandLogHandlers, LogRecord, ShardAssignment, ShardOffsets, SoftMessage,
} from '../../runtime/ports.ts';
import { backoff, sleep } from '../../runtime/backoff.ts';
import { DependencyUnreachableError } from '../../runtime/errors.ts';
import { notAnEnvelope, undecodableRecord } from '../../runtime/undecodable.ts';
import { isNetworkError } from '../resilience.ts';
import { decodeJson } from './assigner.ts';
import { GroupMembership } from './membership.ts';
import { PartitionReader } from './partition-reader.ts';
import { SendQueue, recordBytes } from './send-queue.ts';
import { openRecord, sign, signBytes, UnverifiedRecordError } from './envelope-signature.ts';
import { decodeCompact, encodeCompact, isCompact } from './soft-codec.ts';
import type { NodeId, ShardId } from '../../runtime/entity.ts';

export interface KafkaCommandLogOptions {
  readonly kafka: Kafka;
  readonly topic: string;
  readonly groupId: string;
  readonly shards: number;
  readonly nodeId: NodeId;
  /** Where each shard's reading resumes (PostgreSQL in a node, fenced by the shard's epoch). */
  readonly offsets: ShardOffsets;
  readonly replicationFactor?: number;
  /** The topic's min.insync.replicas: with acks from all, a write needs this many copies or fails. */
  readonly minInsyncReplicas?: number;
  /** Most records waiting for the broker before appends are refused (CommandLogFullError). */
  readonly maxQueuedRecords?: number;
  /** Largest request the producer sends; under the broker's message.max.bytes (1 MB by default). */
  readonly maxRequestBytes?: number;
  readonly sessionTimeoutMs?: number;
  readonly heartbeatIntervalMs?: number;
  /** For the "waiting for Kafka at ..." line only. */
  readonly brokers?: readonly string[];
  /** Backoff bounds of a failed rebalance step (default 200 ms to 5 s). */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  readonly onError?: (error: unknown, context: string) => void;
  /** CLUSTER_KEY's keys: records are signed with the first and must verify with one (undefined: signing off). */
  readonly signingKeys?: readonly Buffer[];
  /**
   * How soft records are written (default compact). Every node reads both forms; a node older
   * than the compact form reads only JSON, so a cluster upgraded from one writes JSON
   * (WIRE_FORMS=previous) until every node reads compact ones.
   */
  readonly softRecords?: 'compact' | 'json';
  /** How long each phase of a join took (for /metrics), and the join's summary line (for the log). */
  readonly onPhase?: (phase: HandoffPhase, seconds: number) => void;
  readonly onJoinDone?: (summary: string) => void;
}

/**
 * The phases of taking a join's assignment: `join` from this member's rejoin to its assignment
 * (the group waits for every member), `drain` the batches of lost shards finishing, `map` the
 * group describing its new map, `set_up` the runtime's step (lost shards snapshotted and
 * released, gained ones waited for, taken and set up), `read` gained shards read from their
 * stored offsets.
 */
export type HandoffPhase = 'join' | 'drain' | 'map' | 'set_up' | 'read';

export class TopicMismatchError extends Error {
  override readonly name = 'TopicMismatchError';
}

/** How long a join's step waits for the group to describe its new map before going on with what it knows. */
const MAP_WAIT_MS = 5_000;

export class KafkaCommandLog implements CommandLog {
  readonly shards: number;
  readonly #o: KafkaCommandLogOptions;
  #producer: Producer;
  #producerUsable = true;
  readonly #admin: Admin;
  readonly #membership: GroupMembership;
  readonly #reader: PartitionReader;
  /** Shards the group assigned this node at the last join (what the assigner is told for stickiness). */
  #owned = new Set<number>();
  /** Owned shards whose set-up (onAssignment) has not succeeded yet. */
  #gaining = new Set<number>();
  /** The last whole shard map read from the group. */
  #map: Pick<ShardAssignment, 'placement' | 'nodes'> = { placement: new Map(), nodes: [] };
  #handlers: CommandLogHandlers | undefined;
  #reassigning: Promise<void> = Promise.resolve();
  #firstAssignment: (() => void) | undefined;
  #running = false;
  #stopped = false;
  /** Set by drain(): fetched batches are no longer handed to the runtime. */
  #closing = false;
  #drained: Promise<void> | undefined;
  /** Per shard: the last offset the runtime said was handled, and the last one storage took. */
  readonly #handledUpTo = new Map<number, number>();
  readonly #committedUpTo = new Map<number, number>();
  /** Per shard: Kafka's high watermark as of the last batch fetched, and that batch's first offset (for stats()). */
  readonly #fetched = new Map<number, { highWatermark: number; firstOffset: number }>();
  readonly #queue: SendQueue<Message & { partition: number }>;
  /**
   * Per shard read: the offset of the next record to hand to the runtime, every record before
   * it handled. Set where reading starts (the stored offset); a batch starting past it would
   * skip records: refused, and the reader sent back for them.
   */
  readonly #position = new Map<number, number>();
  /** When this member began its latest rejoin (for the `join` phase). */
  #joiningAt: number | undefined;

  constructor(options: KafkaCommandLogOptions) {
    this.#o = options;
    this.shards = options.shards;
    this.#producer = this.#newProducer();
    this.#queue = new SendQueue({
      maxRecords: options.maxQueuedRecords ?? 10_000,
      maxChunkBytes: chunkBudget(options),
      sizeOf: (m) => recordBytes(m.key as string, m.value as string | Buffer),
      send: (messages) => this.#send(messages),
    });
    this.#admin = options.kafka.admin();
    this.#reader = new PartitionReader({
      kafka: options.kafka, topic: options.topic, groupId: options.groupId, nodeId: options.nodeId, shards: options.shards,
      onBatch: (payload) => this.#handleBatch(payload), onError: options.onError,
    });
    this.#membership = new GroupMembership({
      kafka: options.kafka, topic: options.topic, groupId: options.groupId, nodeId: options.nodeId, shards: options.shards,
      // Heartbeats are the member's only work, and how soon it hears of a join or a leave (a
      // rebalance is answered at the next one): frequent and tiny.
      sessionTimeoutMs: options.sessionTimeoutMs ?? 10_000, heartbeatIntervalMs: options.heartbeatIntervalMs ?? 300,
      owned: () => [...this.#owned], retryMinMs: options.retryMinMs, retryMaxMs: options.retryMaxMs, onError: options.onError,
    }, {
      joining: () => { this.#joiningAt ??= Date.now(); },
      // At once, not behind an earlier step: lost shards are no longer read or served.
      joined: (owned, join) => {
        if (this.#joiningAt !== undefined) options.onPhase?.('join', (Date.now() - this.#joiningAt) / 1000);
        this.#joiningAt = undefined;
        const now = new Set(owned);
        const lost = [...this.#owned].filter((s) => !now.has(s));
        void this.#reader.unserve(lost, 0);
        this.#handlers?.onJoined?.(owned);
        this.#reassigning = this.#reassigning.then(() => this.#reassign(owned, join)).catch((e) => options.onError?.(e, 'rebalance'));
      },
      lease: (until) => this.#handlers?.onLease?.(until),
      crashed: () => this.#handlers?.onLease?.(0),
    });
  }

  /** Creates the topic with one partition per shard, or checks that the existing one has that many. */
  async ensureTopic(): Promise<void> {
    await this.#admin.connect();
    const { topic, shards } = this.#o;
    const existing = await this.#admin.listTopics();
    if (!existing.includes(topic)) {
      await this.#admin.createTopics({
        waitForLeaders: false,
        topics: [{
          topic, numPartitions: shards, replicationFactor: this.#o.replicationFactor ?? 1,
          configEntries: [{ name: 'min.insync.replicas', value: String(this.#o.minInsyncReplicas ?? 1) }],
        }],
      }).catch((error: unknown) => this.#topicNotCreated(error));
    }
    const layout = await this.#partitionsWithLeaders(topic);
    const partitions = layout.length;
    if (partitions !== shards) {
      throw new TopicMismatchError(
        `Kafka topic "${topic}" has ${partitions} partitions but SHARDS is ${shards}; shards are partitions, so they must match ` +
        '(use the SHARDS the cluster was created with, or a new KAFKA_TOPIC_PREFIX)',
      );
    }
    this.#checkReplication(layout);
  }

  /** kafkajs reports per-topic failures inside an aggregate whose own message says only "Topic creation errors". */
  #topicNotCreated(error: unknown): void {
    const causes = (error as { errors?: { type?: string; message?: string }[] }).errors ?? [error as { type?: string; message?: string }];
    // Another node may have created it at the same moment.
    if (causes.every((c) => c.type === 'TOPIC_ALREADY_EXISTS' || /already exists/i.test(String(c.message)))) return;
    const why = causes.map((c) => c.message).join('; ');
    throw new Error(
      `Kafka could not create topic "${this.#o.topic}" with ${this.#o.shards} partitions, ` +
      `KAFKA_REPLICATION_FACTOR ${this.#o.replicationFactor ?? 1} and KAFKA_MIN_INSYNC_REPLICAS ${this.#o.minInsyncReplicas ?? 1}: ` +
      `${why} (a replication factor above the number of brokers is refused)`,
      { cause: error },
    );
  }

  /** An existing topic keeps its replication: not fatal, but the operator asked for more copies than it has. */
  #checkReplication(layout: readonly { replicas: readonly number[] }[]): void {
    const copies = Math.min(...layout.map((p) => p.replicas.length));
    const wanted = this.#o.replicationFactor ?? 1;
    if (copies >= wanted) return;
    this.#o.onError?.(
      new Error(`Kafka topic "${this.#o.topic}" has ${copies} replica(s) per partition, KAFKA_REPLICATION_FACTOR is ${wanted}`),
      'an existing topic keeps its replication; raise it with kafka-reassign-partitions',
    );
  }

  /** A topic just created is unknown to the broker's metadata for a moment: poll until every partition has a leader. */
  async #partitionsWithLeaders(topic: string): Promise<readonly { replicas: readonly number[] }[]> {
    const until = Date.now() + 30_000;
    for (;;) {
      try {
        const meta = await this.#admin.fetchTopicMetadata({ topics: [topic] });
        const partitions = meta.topics[0]?.partitions ?? [];
        if (partitions.length > 0 && partitions.every((p) => p.leader >= 0)) return partitions;
      } catch (error) {
        if (!(error as { retriable?: boolean }).retriable || Date.now() > until) throw error;
      }
      if (Date.now() > until) throw new Error(`Kafka topic "${topic}" has no leaders after 30 s`);
      await sleep(200);
    }
  }

  async append(shard: ShardId, command: CommandEnvelope): Promise<void> {
    await this.appendMany([{ shard, command }]);
  }

  /**
   * Appends are batched: everything appended while a request is in flight goes out
   * in the next requests, each under maxRequestBytes. The idempotent producer allows
   * one request in flight (that is what keeps per-partition order across retries),
   * so without batching one node would produce one command per round trip.
   */
  appendMany(entries: readonly { shard: ShardId; command: CommandEnvelope }[]): Promise<void> {
    return this.#queue.push(entries.map(({ shard, command }) => ({
      partition: shard, key: entityKey(command.to), value: sign(JSON.stringify(command), { topic: this.#o.topic, partition: shard }, this.#o.signingKeys),
    })));
  }

  /** Many soft messages of one shard as one record (its key names no entity: it holds many). */
  appendSoft(shard: ShardId, messages: readonly SoftMessage[]): Promise<void> {
    if (messages.length === 0) return Promise.resolve();
    const place = { topic: this.#o.topic, partition: shard };
    const compact = this.#o.softRecords === 'json' ? undefined : encodeCompact(messages);
    const value = compact
      ? signBytes(compact, place, this.#o.signingKeys)
      : sign(JSON.stringify({ soft: messages } satisfies SoftRecord), place, this.#o.signingKeys);
    return this.#queue.push([{ partition: shard, key: SOFT_KEY, value }]);
  }

  async #send(messages: readonly (Message & { partition: number })[]): Promise<void> {
    if (!this.#producerUsable) await this.#replaceProducer();
    try {
      await this.#producer.send({ topic: this.#o.topic, acks: -1, messages: [...messages] });
    } catch (error) {
      this.#producerUsable = false;
      throw error;
    }
  }

  /**
   * After a failed send the producer's sequence numbers are not to be trusted: kafkajs
   * rolls them back even when the broker did write the request (a timeout), and the
   * next request under those numbers would be acknowledged as a duplicate and dropped.
   * A new producer gets a new producer id, so its records cannot be taken for old ones.
   * A caller told of the failure appends again; a copy that did land is dropped by the
   * entity, by command id.
   */
  async #replaceProducer(): Promise<void> {
    const old = this.#producer;
    this.#producer = this.#newProducer();
    void old.disconnect().catch((e) => this.#o.onError?.(e, 'disconnecting a failed producer'));
    await this.#producer.connect();
    this.#producerUsable = true;
  }

  #newProducer(): Producer {
    return this.#o.kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  }

  /**
   * May be called again after it failed with DependencyUnreachableError (no broker yet);
   * resolves once the first assignment has been handed to the runtime (set up or not:
   * a gained shard whose set-up fails is retried in the background, see #setUp).
   */
  async start(handlers: CommandLogHandlers): Promise<void> {
    this.#handlers = handlers;
    const assigned = new Promise<void>((resolve) => { this.#firstAssignment = resolve; });
    await this.#connect();
    if (!this.#running) {
      this.#running = true;
      await this.#reader.start();
      await this.#membership.start();
    }
    await assigned;
  }

  /** Connects the admin, producer and both consumers; a broker that cannot be reached is DependencyUnreachableError. */
  async #connect(): Promise<void> {
    try {
      await this.ensureTopic();
      await this.#producer.connect();
      await this.#reader.connect();
      await this.#membership.connect();
    } catch (error) {
      if (unreachable(error)) {
        throw new DependencyUnreachableError('Kafka', this.#o.brokers?.join(',') ?? 'KAFKA_BROKERS', rootCause(error));
      }
      throw error;
    }
  }

  async commit(shard: ShardId, offset: number): Promise<void> {
    if ((this.#handledUpTo.get(shard) ?? -1) < offset) this.#handledUpTo.set(shard, offset);
    try {
      await this.#o.offsets.commit(shard, offset + 1);
      if ((this.#committedUpTo.get(shard) ?? -1) < offset) this.#committedUpTo.set(shard, offset);
    } catch (error) {
      // Refused (another node took the shard: the runtime drops it) or storage down: the next
      // owner, or this node's next commit, goes on from the last offset stored; entities drop
      // what they already applied, by command id.
      this.#o.onError?.(error, `commit of shard ${shard} at ${offset} refused`);
    }
  }

  /**
   * Stops handing records to the runtime and waits for the batches being handled, which
   * commit as they finish, while this node is still a member of the group (owning its
   * shards); then commits what was handled but not stored yet. A graceful stop calls it,
   * stops the shards (the runtime lets their epochs go), then stop(), which leaves the group.
   */
  drain(): Promise<void> {
    this.#drained ??= this.#drain();
    return this.#drained;
  }

  async #drain(): Promise<void> {
    this.#closing = true;
    await this.#reader.unserve(this.#reader.served, 15_000);
    if (this.#reader.busy().length > 0) {
      this.#o.onError?.(new Error('drain timed out'), `${this.#reader.busy().length} batch(es) still being handled at stop; delivered again`);
    }
    await this.#commitHandled();
  }

  /** Commits what the runtime handled and storage has not taken yet (a commit refused during an outage, say). */
  async #commitHandled(): Promise<void> {
    if (!this.#running) return;
    const behind = [...this.#handledUpTo]
      .filter(([shard, offset]) => this.#owned.has(shard) && (this.#committedUpTo.get(shard) ?? -1) < offset);
    await Promise.all(behind.map(([shard, offset]) => this.commit(shard, offset)));
  }

  #stopping: Promise<void> | undefined;

  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    await this.drain();
    this.#stopped = true;
    await this.#reader.stop();
    await this.#membership.stop();
    await this.#reassigning;
    await this.#producer.disconnect().catch((e) => this.#o.onError?.(e, 'producer disconnect'));
    await this.#admin.disconnect().catch(() => undefined);
  }

  /**
   * Records behind per owned shard, without asking Kafka: its high watermark as of the last
   * batch fetched, less what is committed (or, at least, what came before that batch: the
   * reader fetches a shard's next batch only once the last one was handled). As fresh as the
   * last fetch, so a shard stuck on one batch shows the lag it had then; 0 before any fetch.
   */
  stats(): { shard: ShardId; lag: number }[] {
    return [...this.#owned].map((shard) => {
      const fetched = this.#fetched.get(shard);
      if (!fetched) return { shard, lag: 0 };
      const done = Math.max(this.#committedUpTo.get(shard) ?? -1, fetched.firstOffset - 1);
      return { shard, lag: Math.max(0, fetched.highWatermark - 1 - done) };
    });
  }

  async #handleBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    const shard = batch.partition;
    const first = Number(batch.firstOffset() ?? batch.lastOffset());
    this.#fetched.set(shard, { highWatermark: Number(batch.highWatermark), firstOffset: first });
    if (this.#closing || !isRunning() || isStale() || !this.#reader.serves(shard)) return;
    const beat = () => heartbeat().catch(() => undefined);
    const position = this.#position.get(shard);
    if (position !== undefined && first > position) {
      // Records [position, first) were never handed to the runtime: go back for them.
      this.#o.onError?.(new Error(`records ${position}..${first - 1} of shard ${shard} skipped`), 'fetching them again');
      this.#reader.serve(shard, position);
      return;
    }
    const { records, soft } = this.#decode(shard, batch.messages);
    // Soft messages first: they are last-write-wins by their own timestamps, and waiting
    // behind commands (storage) would only make them staler.
    if (soft.length > 0) await this.#handlers!.onSoft?.(shard, soft).catch((e) => this.#o.onError?.(e, `soft messages of shard ${shard}`));
    const last = Number(batch.lastOffset());
    if (records.length > 0 && !(await this.#handlers!.onRecords(shard, records, beat))) {
      // Left unhandled (the shard is not served here now): nothing is resolved or committed,
      // so the same records come again, from the first, to whoever serves the shard next.
      // Still read here (the runtime dropped it, say), a pause keeps it from being fetched again
      // in a hot loop; no longer read (lost), it is not held up: its drain waits for this batch.
      if (this.#reader.serves(shard) && !this.#closing) await sleep(1_000);
      return;
    }
    // Soft records after the batch's last command (or a batch of soft records only) are
    // committed here. Every record before them is handled: the batch's commands just were,
    // and every record before the batch was (the position check above), so this never
    // commits past a command left unhandled.
    if (last > (records.at(-1)?.offset ?? -1)) await this.commit(shard, last);
    this.#position.set(shard, last + 1);
    this.#reader.moved(shard, last + 1);
    resolveOffset(batch.lastOffset());
  }

  /** Commands and soft messages of a batch, in order; a record that is neither becomes an undecodable stand-in (runtime/undecodable.ts). */
  #decode(shard: ShardId, messages: EachBatchPayload['batch']['messages']): { records: LogRecord[]; soft: SoftMessage[] } {
    const records: LogRecord[] = [];
    const soft: SoftMessage[] = [];
    for (const message of messages) {
      const offset = Number(message.offset);
      // A record whose signature does not verify is forged or foreign: dead-lettered like an undecodable one.
      const opened = openRecord(message.value, { topic: this.#o.topic, partition: shard }, this.#o.signingKeys);
      if (opened.ok && isCompact(opened.payload)) {
        const compact = decodeCompactRecord(opened.payload);
        if (Array.isArray(compact)) { for (const m of compact) soft.push(m); continue; }
        records.push(undecodableRecord(shard, offset, message.value, compact));
        continue;
      }
      const value = opened.ok ? decodeJson<CommandEnvelope | SoftRecord>(opened.payload) : undefined;
      if (value && isSoftRecord(value)) { soft.push(...value.soft); continue; }
      const wrong = !opened.ok ? new UnverifiedRecordError(opened.reason).message : value === undefined ? 'not JSON' : notAnEnvelope(value);
      // Not a command: handed on as a stand-in that the region dead-letters with the record's bytes.
      records.push(wrong === undefined ? { shard, offset, command: value as CommandEnvelope } : undecodableRecord(shard, offset, message.value, wrong));
    }
    return { records, soft };
  }

  /**
   * A join's assignment, in order behind earlier ones. Lost shards stopped being read when the
   * join arrived; their last batch finishes here before the runtime drains them. The step
   * waits (briefly) for the group to describe its whole map, so the runtime knows which nodes
   * are members (a gained shard whose last owner is one waits for its release). Gained shards
   * are read once the runtime has set them up, from where their last owner stopped.
   */
  async #reassign(owned: readonly number[], join: number): Promise<void> {
    const now = new Set(owned);
    const revoked = [...this.#owned].filter((s) => !now.has(s));
    // A shard whose set-up failed under an earlier join is still to be set up if it stayed.
    const gained = owned.filter((s) => !this.#owned.has(s) || this.#gaining.has(s));
    this.#owned = now;
    this.#gaining = new Set(gained);
    const phases = this.#phases();
    await this.#reader.unserve(revoked);
    phases.end('drain');
    const current = () => join === this.#membership.joins;
    const map = await this.#membership.wholeMap(owned, current, MAP_WAIT_MS);
    phases.end('map');
    if (map) this.#map = map;
    const assignment: ShardAssignment = { owned, ...(map ?? this.#provisionalMap(owned)) };
    await this.#setUp(assignment, revoked, gained, join, phases);
    if (!map) void this.#refreshMap(owned, join);
    if (revoked.length + gained.length > 0) {
      this.#o.onJoinDone?.(`join ${join}: ${owned.length} shard(s), ${gained.length} gained, ${revoked.length} lost; ${phases.summary()}`);
    }
  }

  /** Times the phases of one join's step, one after the other. */
  #phases(): { end(phase: HandoffPhase): void; summary(): string } {
    let since = performance.now();
    const took: string[] = [];
    return {
      end: (phase) => {
        const now = performance.now();
        this.#o.onPhase?.(phase, (now - since) / 1000);
        took.push(`${phase} ${Math.round(now - since)} ms`);
        since = now;
      },
      summary: () => took.join(', '),
    };
  }

  /**
   * Hands the assignment to the runtime; a failure (reminders unreadable during a database
   * blip, say) is reported and the step tried again with backoff, for the shards still to
   * gain, until it succeeds, a newer join replaces it or the log stops. The first attempt
   * lets start() resolve either way: the runtime reports a shard not yet set up as not ready.
   * Shards set up are read from their stored offsets.
   */
  async #setUp(
    assignment: ShardAssignment, revoked: readonly number[], gained: readonly number[], join: number,
    phases: { end(phase: HandoffPhase): void },
  ): Promise<void> {
    const delays = backoff(this.#o.retryMinMs ?? 200, this.#o.retryMaxMs ?? 5_000);
    for (let attempt = 1, drain = revoked; ; attempt++, drain = []) {
      try {
        await this.#handlers!.onAssignment(assignment, drain, gained);
        phases.end('set_up');
        this.#gaining.clear();
        await this.#read(assignment.owned, join);
        phases.end('read');
        return;
      } catch (error) {
        const delay = delays.next().value;
        this.#o.onError?.(error, `rebalance: setting up shards ${gained.join(', ')} failed (attempt ${attempt}); retrying in ${delay} ms`);
        // Shards that stayed keep being read while the gained ones wait.
        await this.#read(assignment.owned.filter((s) => !this.#gaining.has(s)), join).catch(() => undefined);
        await sleep(delay);
      } finally {
        this.#firstAssignment?.();
        this.#firstAssignment = undefined;
      }
      if (this.#stopped || this.#closing || join !== this.#membership.joins) return;
    }
  }

  /** Starts reading the shards not read yet, each from its stored offset. */
  async #read(shards: readonly number[], join: number): Promise<void> {
    const unread = shards.filter((s) => !this.#reader.serves(s));
    if (unread.length === 0 || this.#closing) return;
    const next = await this.#o.offsets.next(unread);
    // A newer join may have taken some away meanwhile.
    if (join !== this.#membership.joins && !this.#stopped) return;
    for (const shard of unread) {
      if (!this.#owned.has(shard)) continue;
      const from = next.get(shard) ?? 0;
      this.#position.set(shard, from);
      this.#reader.serve(shard, from);
    }
  }

  /** Until the group describes the new map: the last one, with this node's own shards as assigned now. */
  #provisionalMap(owned: readonly number[]): Pick<ShardAssignment, 'placement' | 'nodes'> {
    const me = this.#o.nodeId;
    const placement = new Map([...this.#map.placement].filter(([, node]) => node !== me));
    for (const s of owned) placement.set(s, me);
    return { placement, nodes: [...new Set([...this.#map.nodes, me])].sort() };
  }

  /** Keeps reading the map in the background until the group is stable, then tells the runtime. */
  async #refreshMap(owned: readonly number[], join: number): Promise<void> {
    const map = await this.#membership.wholeMap(owned, () => join === this.#membership.joins, Number.POSITIVE_INFINITY);
    if (!map || join !== this.#membership.joins || this.#stopped) return;
    this.#map = map;
    this.#handlers?.onPlacement?.(map);
  }
}

/** The key of a soft record (Kafka needs none to place it: the partition is given). */
const SOFT_KEY = '$soft';

/** A record of soft messages for one shard. */
interface SoftRecord {
  readonly soft: readonly SoftMessage[];
}

/** The messages of a compact soft record, or why it could not be read (the record is then dead-lettered). */
function decodeCompactRecord(payload: Buffer): SoftMessage[] | string {
  try {
    return decodeCompact(payload);
  } catch (error) {
    // A malformed record (or one nested past the stack): a stand-in, as JSON that does not parse is.
    return `not a compact soft record: ${(error as Error)?.message ?? error}`;
  }
}

function isSoftRecord(value: unknown): value is SoftRecord {
  return Array.isArray((value as { soft?: unknown }).soft);
}

/**
 * What a produce request holds besides its records: the request and topic headers,
 * and per partition its header and its record batch's header (61 bytes), generously.
 */
function requestOverhead(topic: string, partitions: number): number {
  return 256 + Buffer.byteLength(topic) + partitions * 96;
}

/** Bytes of records one request may carry; refused when the overheads of many shards leave too little. */
function chunkBudget(o: KafkaCommandLogOptions): number {
  const max = o.maxRequestBytes ?? 900_000;
  const budget = max - requestOverhead(o.topic, o.shards);
  if (budget < 4_096) {
    throw new RangeError(
      `KAFKA_MAX_REQUEST_BYTES (${max}) leaves under 4 kB for commands after the overheads of ${o.shards} shards; raise it`,
    );
  }
  return budget;
}

/** kafkajs errors that say no broker could be reached (as opposed to one that answered with a refusal). */
function unreachable(error: unknown): boolean {
  if (isNetworkError(error)) return true;
  for (let e = error as { name?: string; cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (/^KafkaJS(Connection|ConnectionClosed|BrokerNotFound|RequestTimeout)Error$|^KafkaJSBrokerNotFound$/.test(e.name ?? '')) return true;
  }
  return false;
}

/** The innermost error, whose message says what actually happened ("Connection error: connect ECONNREFUSED ..."). */
function rootCause(error: unknown): unknown {
  let e = error as { cause?: unknown };
  for (let depth = 0; e?.cause && depth < 5; depth++) e = e.cause as { cause?: unknown };
  return e;
}

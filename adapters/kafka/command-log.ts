// The command log on Kafka: one topic, one partition per shard. Appends go to
// the shard's partition through a bounded send queue (send-queue.ts), one request
// at a time, acknowledged by all in-sync replicas (the topic's min.insync.replicas
// decides how many that must be). The node's consumer group decides which node
// consumes which partitions, through the sticky rendezvous assigner. Offsets are
// committed only when the runtime says a batch is handled.

import type { Admin, Consumer, EachBatchPayload, Kafka, Message, Producer } from 'kafkajs';
import { AssignerProtocol } from 'kafkajs';
import { entityKey } from '../../runtime/entity.ts';
import type { CommandEnvelope, CommandLog, CommandLogHandlers, LogRecord, ShardAssignment } from '../../runtime/ports.ts';
import { decodeJson, stickyRendezvousAssigner, type PlacementData } from './assigner.ts';
import { SendQueue, recordBytes } from './send-queue.ts';

export interface KafkaCommandLogOptions {
  readonly kafka: Kafka;
  readonly topic: string;
  readonly groupId: string;
  readonly shards: number;
  readonly nodeId: string;
  readonly replicationFactor?: number;
  /** The topic's min.insync.replicas: with acks from all, a write needs this many copies or fails. */
  readonly minInsyncReplicas?: number;
  /** Most records waiting for the broker before appends are refused (CommandLogFullError). */
  readonly maxQueuedRecords?: number;
  /** Largest request the producer sends; under the broker's message.max.bytes (1 MB by default). */
  readonly maxRequestBytes?: number;
  readonly sessionTimeoutMs?: number;
  readonly heartbeatIntervalMs?: number;
  readonly onError?: (error: unknown, context: string) => void;
}

export class TopicMismatchError extends Error {
  override readonly name = 'TopicMismatchError';
}

export class KafkaCommandLog implements CommandLog {
  readonly shards: number;
  readonly #o: KafkaCommandLogOptions;
  #producer: Producer;
  #producerUsable = true;
  readonly #consumer: Consumer;
  readonly #admin: Admin;
  #owned = new Set<number>();
  #handlers: CommandLogHandlers | undefined;
  #reassigning: Promise<void> = Promise.resolve();
  #firstAssignment: (() => void) | undefined;
  #generation = 0;
  #stopped = false;
  readonly #queue: SendQueue<Message & { partition: number }>;

  constructor(options: KafkaCommandLogOptions) {
    this.#o = options;
    this.shards = options.shards;
    this.#producer = this.#newProducer();
    this.#queue = new SendQueue({
      maxRecords: options.maxQueuedRecords ?? 10_000,
      maxChunkBytes: chunkBudget(options),
      sizeOf: (m) => recordBytes(m.key as string, m.value as string),
      send: (messages) => this.#send(messages),
    });
    this.#consumer = options.kafka.consumer({
      groupId: options.groupId,
      sessionTimeout: options.sessionTimeoutMs ?? 10_000,
      heartbeatInterval: options.heartbeatIntervalMs ?? 1_000,
      rebalanceTimeout: 30_000,
      allowAutoTopicCreation: false,
      partitionAssigners: [stickyRendezvousAssigner({ nodeId: options.nodeId, topic: options.topic, owned: () => [...this.#owned] })],
    });
    this.#admin = options.kafka.admin();
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
      `Kafka could not create topic "${this.#o.topic}" with ${this.#o.shards} partitions, KAFKA_REPLICATION_FACTOR ${this.#o.replicationFactor ?? 1} ` +
      `and KAFKA_MIN_INSYNC_REPLICAS ${this.#o.minInsyncReplicas ?? 1}: ${why} (a replication factor above the number of brokers is refused)`,
      { cause: error },
    );
  }

  /** An existing topic keeps its replication: not fatal, but the operator asked for more copies than it has. */
  #checkReplication(layout: readonly { replicas: readonly number[] }[]): void {
    const copies = Math.min(...layout.map((p) => p.replicas.length));
    const wanted = this.#o.replicationFactor ?? 1;
    if (copies >= wanted) return;
    this.#o.onError?.(new Error(`Kafka topic "${this.#o.topic}" has ${copies} replica(s) per partition, KAFKA_REPLICATION_FACTOR is ${wanted}`),
      'an existing topic keeps its replication; raise it with kafka-reassign-partitions');
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
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async append(shard: number, command: CommandEnvelope): Promise<void> {
    await this.appendMany([{ shard, command }]);
  }

  /**
   * Appends are batched: everything appended while a request is in flight goes out
   * in the next requests, each under maxRequestBytes. The idempotent producer allows
   * one request in flight (that is what keeps per-partition order across retries),
   * so without batching one node would produce one command per round trip.
   */
  appendMany(entries: readonly { shard: number; command: CommandEnvelope }[]): Promise<void> {
    return this.#queue.push(entries.map(({ shard, command }) => ({
      partition: shard, key: entityKey(command.to), value: JSON.stringify(command),
    })));
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

  async start(handlers: CommandLogHandlers): Promise<void> {
    this.#handlers = handlers;
    await this.ensureTopic();
    await this.#producer.connect();
    await this.#consumer.connect();
    const assigned = new Promise<void>((resolve) => { this.#firstAssignment = resolve; });
    this.#consumer.on(this.#consumer.events.GROUP_JOIN, (event) => {
      const owned = (event.payload.memberAssignment[this.#o.topic] ?? []).slice().sort((a, b) => a - b);
      this.#reassigning = this.#reassigning.then(() => this.#reassign(owned)).catch((e) => this.#o.onError?.(e, 'rebalance'));
    });
    this.#consumer.on(this.#consumer.events.CRASH, (event) => this.#o.onError?.(event.payload.error, 'kafka consumer crashed'));
    await this.#consumer.subscribe({ topic: this.#o.topic, fromBeginning: true });
    await this.#consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.shards,
      eachBatch: (payload) => this.#eachBatch(payload),
    });
    await assigned;
  }

  async commit(shard: number, offset: number): Promise<void> {
    try {
      await this.#consumer.commitOffsets([{ topic: this.#o.topic, partition: shard, offset: String(offset + 1) }]);
    } catch (error) {
      // Lost the partition in a rebalance: its new owner resumes from the last
      // commit and entities drop what they already applied, by command id.
      this.#o.onError?.(error, `commit of shard ${shard} at ${offset} refused`);
    }
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.#consumer.disconnect().catch((e) => this.#o.onError?.(e, 'consumer disconnect'));
    await this.#reassigning;
    await this.#producer.disconnect().catch((e) => this.#o.onError?.(e, 'producer disconnect'));
    await this.#admin.disconnect().catch(() => undefined);
  }

  async #eachBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    const shard = batch.partition;
    await this.#reassigning;
    if (!this.#owned.has(shard) || !isRunning() || isStale()) return;
    const records: LogRecord[] = [];
    for (const message of batch.messages) {
      const command = decodeJson<CommandEnvelope>(message.value);
      if (command) records.push({ shard, offset: Number(message.offset), command });
      else this.#o.onError?.(new Error('undecodable record'), `shard ${shard} offset ${message.offset} skipped`);
    }
    // While a record waits for storage the region calls heartbeat: kafkajs only
    // heartbeats between batches, and a silent member is evicted from the group.
    if (records.length > 0) await this.#handlers!.onRecords(shard, records, () => heartbeat().catch(() => undefined));
    else if (batch.messages.length > 0) await this.commit(shard, Number(batch.lastOffset()));
    resolveOffset(batch.lastOffset());
    await heartbeat().catch(() => undefined);
  }

  async #reassign(owned: readonly number[]): Promise<void> {
    const before = this.#owned;
    const now = new Set(owned);
    const revoked = [...before].filter((s) => !now.has(s));
    const gained = owned.filter((s) => !before.has(s));
    const generation = ++this.#generation;
    const assignment: ShardAssignment = { owned, ...(await this.#placement(owned)) };
    if (generation !== this.#generation) return;
    // Stop handing out revoked shards before they are drained.
    this.#owned = new Set([...before].filter((s) => now.has(s)));
    await this.#handlers!.onAssignment(assignment, revoked, gained);
    this.#owned = now;
    this.#firstAssignment?.();
    this.#firstAssignment = undefined;
  }

  /** The whole shard -> node map rides in every member's assignment user data. */
  async #placement(owned: readonly number[]): Promise<Pick<ShardAssignment, 'placement' | 'nodes'>> {
    try {
      const group = await this.#consumer.describeGroup();
      for (const member of group.members) {
        const assignment = AssignerProtocol.MemberAssignment.decode(member.memberAssignment);
        const data = decodeJson<PlacementData>(assignment?.userData);
        if (data) return { nodes: data.nodes, placement: new Map(data.owners.map((node, shard) => [shard, node])) };
      }
    } catch (error) {
      this.#o.onError?.(error, 'reading the shard map from the group');
    }
    return { nodes: [this.#o.nodeId], placement: new Map(owned.map((s) => [s, this.#o.nodeId])) };
  }
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
    throw new RangeError(`KAFKA_MAX_REQUEST_BYTES (${max}) leaves under 4 kB for commands after the overheads of ${o.shards} shards; raise it`);
  }
  return budget;
}

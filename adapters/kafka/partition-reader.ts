// The node's reader of the command topic: a kafkajs consumer in a consumer group of its own
// (one member, so it is assigned every partition and no other node's join or leave ever
// rebalances it), reading only the partitions this node serves, each from the offset the
// shard's owners keep in storage (ports.ts ShardOffsets). Serving a shard is a seek and a
// resume; giving it up is a pause and a wait for the batch being handled. Which shards to
// serve is the group membership's to say (membership.ts); this only reads.

import type { Consumer, EachBatchPayload, Kafka } from 'kafkajs';
import { randomUUID } from 'node:crypto';
import type { NodeId, ShardId } from '../../runtime/ports.ts';
import { restartConsumer } from './restart.ts';

export interface PartitionReaderOptions {
  readonly kafka: Kafka;
  readonly topic: string;
  /** The cluster's group id: the reader's own group is named after it and this node (and a random part, per process). */
  readonly groupId: string;
  readonly nodeId: NodeId;
  readonly shards: number;
  /** A batch of a served shard. */
  readonly onBatch: (payload: EachBatchPayload) => Promise<void>;
  readonly onError?: (error: unknown, context: string) => void;
}

/** How long a fetch waits for records: also how soon a shard resumed while nothing else arrives is read. */
const FETCH_WAIT_MS = 100;

export class PartitionReader {
  readonly #o: PartitionReaderOptions;
  readonly #consumer: Consumer;
  /** Served shards, and the offset each is to be read from after a rejoin of the reader's own group. */
  readonly #served = new Map<ShardId, number>();
  /** Batches being handled, per shard. */
  readonly #inFlight = new Map<ShardId, Set<Promise<void>>>();
  #running = false;
  #stopped = false;

  constructor(options: PartitionReaderOptions) {
    this.#o = options;
    this.#consumer = options.kafka.consumer({
      // Its own group per process: nothing else joins it, and it commits nothing (offsets live in storage).
      groupId: `${options.groupId}.reader.${options.nodeId}.${randomUUID().slice(0, 8)}`,
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: FETCH_WAIT_MS,
      sessionTimeout: 30_000,
      heartbeatInterval: 3_000,
    });
    this.#consumer.on(this.#consumer.events.GROUP_JOIN, () => this.#afterJoin());
    this.#consumer.on(this.#consumer.events.CRASH, (event) => {
      options.onError?.(event.payload.error, `kafka partition reader crashed; ${event.payload.restart ? 'kafkajs restarts it' : 'restarting it'}`);
      if (!event.payload.restart && !this.#stopped) void this.#restart();
    });
  }

  async connect(): Promise<void> {
    await this.#consumer.connect();
  }

  /** Joins its own group (every partition, all paused); resolves once it can be told what to serve. */
  async start(): Promise<void> {
    await this.#consumer.subscribe({ topic: this.#o.topic, fromBeginning: true });
    await this.#run();
    this.#running = true;
  }

  #run(): Promise<void> {
    return this.#consumer.run({
      autoCommit: false, eachBatchAutoResolve: false, partitionsConsumedConcurrently: this.#o.shards,
      eachBatch: (payload) => this.#batch(payload),
    });
  }

  #restart(): Promise<void> {
    return restartConsumer({
      consumer: this.#consumer, run: () => this.#run(), stopped: () => this.#stopped, what: 'kafka partition reader', onError: this.#o.onError,
    });
  }

  /** Every partition was (re)assigned: only the served ones are read, each from where it is to go on. */
  #afterJoin(): void {
    const all = Array.from({ length: this.#o.shards }, (_, s) => s);
    this.#consumer.pause([{ topic: this.#o.topic, partitions: all.filter((s) => !this.#served.has(s)) }]);
    for (const [shard, from] of this.#served) this.#seek(shard, from);
  }

  #seek(shard: ShardId, from: number): void {
    this.#consumer.seek({ topic: this.#o.topic, partition: shard, offset: String(from) });
    this.#consumer.resume([{ topic: this.#o.topic, partitions: [shard] }]);
  }

  serves(shard: ShardId): boolean {
    return this.#served.has(shard);
  }

  get served(): ShardId[] {
    return [...this.#served.keys()];
  }

  /** Reads `shard` from offset `from` on. */
  serve(shard: ShardId, from: number): void {
    this.#served.set(shard, from);
    if (this.#running) this.#seek(shard, from);
  }

  /** Where a served shard's reading goes on (the log moves it as batches are handled). */
  moved(shard: ShardId, next: number): void {
    if (this.#served.has(shard)) this.#served.set(shard, next);
  }

  /** Stops reading the shards and waits (at most `withinMs`) for their batches being handled. */
  async unserve(shards: readonly ShardId[], withinMs = 15_000): Promise<void> {
    if (shards.length === 0) return;
    for (const shard of shards) this.#served.delete(shard);
    if (this.#running) this.#consumer.pause([{ topic: this.#o.topic, partitions: [...shards] }]);
    const busy = shards.flatMap((s) => [...(this.#inFlight.get(s) ?? [])]);
    if (busy.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled(busy), new Promise((r) => { timer = setTimeout(r, withinMs); })]);
    clearTimeout(timer);
  }

  /** Batches being handled now, for any shard. */
  busy(): Promise<void>[] {
    return [...this.#inFlight.values()].flatMap((s) => [...s]);
  }

  async #batch(payload: EachBatchPayload): Promise<void> {
    const shard = payload.batch.partition;
    // Fetched before its pause: left unread and unresolved.
    if (!this.#served.has(shard)) return;
    let set = this.#inFlight.get(shard);
    if (!set) this.#inFlight.set(shard, (set = new Set()));
    const work = this.#o.onBatch(payload);
    set.add(work);
    try { await work; } finally { set.delete(work); }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#consumer.disconnect().catch((e) => this.#o.onError?.(e, 'partition reader disconnect'));
  }
}

// The command log on Kafka: one topic, one partition per shard. Appends go to
// the shard's partition through a bounded send queue (send-queue.ts), one request
// at a time, acknowledged by all in-sync replicas (the topic's min.insync.replicas
// decides how many that must be). The node's consumer group decides which node
// consumes which partitions, through the sticky rendezvous assigner. Offsets are
// committed only when the runtime says a batch is handled. Soft messages (GPS fixes
// for a shard another node owns) travel many to a record, `{ "soft": [...] }`, through
// the same queue; a consumer hands them to the runtime before the batch's commands.

import type { Admin, Consumer, EachBatchPayload, Kafka, Message, Producer } from 'kafkajs';
import { AssignerProtocol } from 'kafkajs';
import { entityKey } from '../../runtime/entity.ts';
import type { CommandEnvelope, CommandLog, CommandLogHandlers, LogRecord, ShardAssignment, SoftMessage } from '../../runtime/ports.ts';
import { backoff, sleep } from '../../runtime/backoff.ts';
import { DependencyUnreachableError } from '../../runtime/errors.ts';
import { notAnEnvelope, undecodableRecord } from '../../runtime/undecodable.ts';
import { isNetworkError } from '../resilience.ts';
import { decodeJson, stickyRendezvousAssigner, type PlacementData } from './assigner.ts';
import { SendQueue, recordBytes } from './send-queue.ts';
import { openRecord, sign, UnverifiedRecordError } from './envelope-signature.ts';
import type { NodeId, ShardId } from '../../runtime/entity.ts';

export interface KafkaCommandLogOptions {
  readonly kafka: Kafka;
  readonly topic: string;
  readonly groupId: string;
  readonly shards: number;
  readonly nodeId: NodeId;
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
  /** Shards the group assigned this node at the last join (what the assigner is told for stickiness). */
  #owned = new Set<number>();
  /** Owned shards whose records are handed to the runtime: set up, not being drained. */
  #serving = new Set<number>();
  /** Owned shards whose set-up (onAssignment) has not succeeded yet. */
  #gaining = new Set<number>();
  /** The last whole shard map read from the group. */
  #map: Pick<ShardAssignment, 'placement' | 'nodes'> = { placement: new Map(), nodes: [] };
  #handlers: CommandLogHandlers | undefined;
  #reassigning: Promise<void> = Promise.resolve();
  #firstAssignment: (() => void) | undefined;
  /** Joins seen; a rebalance step stops retrying once a newer join is queued behind it. */
  #joins = 0;
  #running = false;
  #stopped = false;
  /** Set by drain(): fetched batches are no longer handed to the runtime. */
  #closing = false;
  #drained: Promise<void> | undefined;
  /** Lets the batches held while closing go, so kafkajs' runner can stop. */
  #release: () => void = () => undefined;
  readonly #released = new Promise<void>((resolve) => { this.#release = resolve; });
  /** Batches being handled by the runtime right now. */
  readonly #batches = new Set<Promise<void>>();
  /** Per shard: the last offset the runtime said was handled, and the last one Kafka took. */
  readonly #handledUpTo = new Map<number, number>();
  readonly #committedUpTo = new Map<number, number>();
  /** Per shard: Kafka's high watermark as of the last batch fetched, and that batch's first offset (for stats()). */
  readonly #fetched = new Map<number, { highWatermark: number; firstOffset: number }>();
  readonly #queue: SendQueue<Message & { partition: number }>;
  /**
   * Per shard served: the offset of the next record to hand to the runtime, every record
   * before it handled. Unknown right after a join (the first batch starts at the committed
   * offset, where Kafka resumes). A batch starting past it would skip records: refused.
   */
  readonly #position = new Map<number, number>();

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
      partitionAssigners: [stickyRendezvousAssigner({
        nodeId: options.nodeId, topic: options.topic, owned: () => [...this.#owned],
        // The hand-off fence. kafkajs has no revoke callback, and what it does offer comes too
        // late or not everywhere: GROUP_JOIN fires after SyncGroup, when the new owner may
        // already consume; REBALANCING fires only when a fetch meets a rebalance (not on an
        // UNKNOWN_MEMBER_ID rejoin); assign() runs on the leader only. protocol() is called on
        // every member at the start of every JoinGroup, and the broker completes no join (so
        // sends no member its new partitions) before every member has rejoined. So a member
        // stopping its timers, asks and activations here, synchronously, has stopped them
        // before anyone else can own its shards. It does not know yet which it will lose, so
        // it stops them all; GROUP_JOIN resumes the kept ones (the eager protocol stops
        // consuming every partition meanwhile anyway). kafkajs rejoins only after the batches
        // in flight are handled, so no command is being handled here either. A member that
        // misses the join (stuck beyond rebalanceTimeout, or evicted) is not fenced this way:
        // its commits are refused and it stops on its next join.
        onJoin: () => this.#handlers?.onRebalancing?.(),
      })],
    });
    this.#admin = options.kafka.admin();
    // Registered once here, not in start(), which may be called again while the broker is down.
    this.#consumer.on(this.#consumer.events.GROUP_JOIN, (event) => {
      const owned = (event.payload.memberAssignment[options.topic] ?? []).slice().sort((a, b) => a - b);
      const join = ++this.#joins;
      // At once, not behind an earlier step: kept shards resume, lost ones are no longer served.
      const now = new Set(owned);
      for (const s of this.#serving) if (!now.has(s)) this.#serving.delete(s);
      // After a join Kafka resumes every partition from its committed offset.
      this.#position.clear();
      this.#confirmed();
      this.#handlers?.onJoined?.(owned);
      this.#reassigning = this.#reassigning.then(() => this.#reassign(owned, join)).catch((e) => options.onError?.(e, 'rebalance'));
    });
    // A heartbeat answered: the broker counts this member as alive, in this generation, for a session from now.
    this.#consumer.on(this.#consumer.events.HEARTBEAT, () => this.#confirmed());
    this.#consumer.on(this.#consumer.events.CRASH, (event) => {
      // kafkajs has disconnected the consumer: it is out of the group and its shards go to
      // others. Nothing is served from them until the next assignment; kafkajs restarts a
      // consumer only after a retriable error, so after any other one this log does.
      options.onError?.(event.payload.error, `kafka consumer crashed; ${event.payload.restart ? 'kafkajs restarts it' : 'restarting it'}`);
      this.#serving.clear();
      this.#handlers?.onRebalancing?.();
      if (!event.payload.restart) void this.#restartConsumer();
    });
  }

  /**
   * The group vouches for this member for a session from now, less a margin for the
   * answer's own trip (the broker counts from when it received the heartbeat).
   */
  #confirmed(): void {
    const session = this.#o.sessionTimeoutMs ?? 10_000;
    const margin = Math.min(this.#o.heartbeatIntervalMs ?? 1_000, session / 4);
    this.#handlers?.onLease?.(Date.now() + session - margin);
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
    const value = sign(JSON.stringify({ soft: messages } satisfies SoftRecord), { topic: this.#o.topic, partition: shard }, this.#o.signingKeys);
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
   * a gained shard whose set-up fails is retried in the background, see #reassign).
   */
  async start(handlers: CommandLogHandlers): Promise<void> {
    this.#handlers = handlers;
    const assigned = new Promise<void>((resolve) => { this.#firstAssignment = resolve; });
    await this.#connect();
    if (!this.#running) {
      this.#running = true;
      await this.#consumer.subscribe({ topic: this.#o.topic, fromBeginning: true });
      await this.#run();
    }
    await assigned;
  }

  #run(): Promise<void> {
    return this.#consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.shards,
      eachBatch: (payload) => this.#eachBatch(payload),
    });
  }

  /** After a crash kafkajs gave up on: connects and runs the consumer again (it rejoins the group), with backoff. */
  async #restartConsumer(): Promise<void> {
    const delays = backoff(this.#o.retryMinMs ?? 200, this.#o.retryMaxMs ?? 5_000);
    for (let attempt = 1; !this.#stopped && !this.#closing; attempt++) {
      await sleep(delays.next().value);
      if (this.#stopped || this.#closing) return;
      try {
        await this.#consumer.connect();
        await this.#run();
        return;
      } catch (error) {
        this.#o.onError?.(error, `restarting the kafka consumer failed (attempt ${attempt}); trying again`);
      }
    }
  }

  /** Connects the admin, producer and consumer; a broker that cannot be reached is DependencyUnreachableError. */
  async #connect(): Promise<void> {
    try {
      await this.ensureTopic();
      await this.#producer.connect();
      await this.#consumer.connect();
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
      // Note: kafkajs' runner drops a commit silently (no error) once it is stopping; stop()
      // therefore commits before it lets the runner stop (see drain()).
      await this.#consumer.commitOffsets([{ topic: this.#o.topic, partition: shard, offset: String(offset + 1) }]);
      if ((this.#committedUpTo.get(shard) ?? -1) < offset) this.#committedUpTo.set(shard, offset);
    } catch (error) {
      // Lost the partition in a rebalance: its new owner resumes from the last
      // commit and entities drop what they already applied, by command id.
      this.#o.onError?.(error, `commit of shard ${shard} at ${offset} refused`);
    }
  }

  /**
   * Stops handing records to the runtime and waits for the batches being handled, then
   * commits what was handled, all while still a member of the group. kafkajs' own stop
   * (runner.stop(), from consumer.disconnect()) marks the runner stopped before it waits
   * for the batches in flight, and the runner drops every commit made after that without
   * an error: the last batches of every graceful stop would stay uncommitted and be
   * handled again by the next owner. Batches fetched meanwhile are held, unhandled and
   * unresolved, until stop() lets kafkajs stop.
   */
  drain(): Promise<void> {
    this.#drained ??= this.#drain();
    return this.#drained;
  }

  async #drain(): Promise<void> {
    this.#closing = true;
    const until = Date.now() + 15_000;
    while (this.#batches.size > 0 && Date.now() < until) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...this.#batches]), new Promise((r) => { timer = setTimeout(r, until - Date.now()); })]);
      clearTimeout(timer);
    }
    if (this.#batches.size > 0) {
      this.#o.onError?.(
        new Error('drain timed out'), `${this.#batches.size} batch(es) still being handled at stop; they will be delivered again`,
      );
    }
    await this.#commitHandled();
  }

  /** Commits what the runtime handled and Kafka has not taken yet (a commit refused during a rebalance, say). */
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

  /**
   * Records behind per owned shard, without asking Kafka: its high watermark as of the last
   * batch fetched, less what is committed (or, at least, what came before that batch: kafkajs
   * fetches a shard's next batch only once the last one was handled). As fresh as the last
   * fetch, so a shard stuck on one batch shows the lag it had then; 0 before any fetch.
   */
  stats(): { shard: ShardId; lag: number }[] {
    return [...this.#owned].map((shard) => {
      const fetched = this.#fetched.get(shard);
      if (!fetched) return { shard, lag: 0 };
      const done = Math.max(this.#committedUpTo.get(shard) ?? -1, fetched.firstOffset - 1);
      return { shard, lag: Math.max(0, fetched.highWatermark - 1 - done) };
    });
  }

  async #stop(): Promise<void> {
    await this.drain();
    this.#stopped = true;
    this.#release();
    await this.#consumer.disconnect().catch((e) => this.#o.onError?.(e, 'consumer disconnect'));
    await this.#reassigning;
    await this.#producer.disconnect().catch((e) => this.#o.onError?.(e, 'producer disconnect'));
    await this.#admin.disconnect().catch(() => undefined);
  }

  async #eachBatch(payload: EachBatchPayload): Promise<void> {
    if (this.#closing) { await this.#released; return; }
    const work = this.#handleBatch(payload);
    this.#batches.add(work);
    try { await work; } finally { this.#batches.delete(work); }
  }

  async #handleBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    const shard = batch.partition;
    const first = Number(batch.firstOffset() ?? batch.lastOffset());
    this.#fetched.set(shard, { highWatermark: Number(batch.highWatermark), firstOffset: first });
    await this.#reassigning;
    if (!(await this.#servable(shard, isRunning, isStale, heartbeat))) return;
    const beat = () => heartbeat().catch(() => undefined);
    const position = this.#position.get(shard);
    if (position !== undefined && first > position) {
      // Records [position, first) were never handed to the runtime: go back for them.
      this.#o.onError?.(new Error(`records ${position}..${first - 1} of shard ${shard} skipped`), 'fetching them again');
      this.#consumer.seek({ topic: this.#o.topic, partition: shard, offset: String(position) });
      return;
    }
    const { records, soft } = this.#decode(shard, batch.messages);
    // Soft messages first: they are last-write-wins by their own timestamps, and waiting
    // behind commands (storage) would only make them staler.
    if (soft.length > 0) await this.#handlers!.onSoft?.(shard, soft).catch((e) => this.#o.onError?.(e, `soft messages of shard ${shard}`));
    const last = Number(batch.lastOffset());
    // While a record waits for storage the region calls heartbeat: kafkajs only
    // heartbeats between batches, and a silent member is evicted from the group.
    if (records.length > 0 && !(await this.#handlers!.onRecords(shard, records, beat))) {
      // Left unhandled (the shard is not served here now): nothing is resolved or committed,
      // so the same records come again, from the first, to whoever serves the shard next.
      // A pause, heartbeating, so an unserved shard is not fetched again in a hot loop.
      await pause(1_000, beat);
      return;
    }
    // Soft records after the batch's last command (or a batch of soft records only) are
    // committed here. Every record before them is handled: the batch's commands just were,
    // and every record before the batch was (the position check above), so this never
    // commits past a command left unhandled.
    if (last > (records.at(-1)?.offset ?? -1)) await this.commit(shard, last);
    this.#position.set(shard, last + 1);
    resolveOffset(batch.lastOffset());
    await beat();
  }

  /** Commands and soft messages of a batch, in order; a record that is neither becomes an undecodable stand-in (runtime/undecodable.ts). */
  #decode(shard: ShardId, messages: EachBatchPayload['batch']['messages']): { records: LogRecord[]; soft: SoftMessage[] } {
    const records: LogRecord[] = [];
    const soft: SoftMessage[] = [];
    for (const message of messages) {
      const offset = Number(message.offset);
      // A record whose signature does not verify is forged or foreign: dead-lettered like an undecodable one.
      const opened = openRecord(message.value, { topic: this.#o.topic, partition: shard }, this.#o.signingKeys);
      const value = opened.ok ? decodeJson<CommandEnvelope | SoftRecord>(opened.payload) : undefined;
      if (value && isSoftRecord(value)) { soft.push(...value.soft); continue; }
      const wrong = !opened.ok ? new UnverifiedRecordError(opened.reason).message : value === undefined ? 'not JSON' : notAnEnvelope(value);
      // Not a command: handed on as a stand-in that the region dead-letters with the record's bytes.
      records.push(wrong === undefined ? { shard, offset, command: value as CommandEnvelope } : undecodableRecord(shard, offset, message.value, wrong));
    }
    return { records, soft };
  }

  /**
   * Whether a fetched batch may be handed to the runtime. A gained shard still being set up
   * holds its batch for a while (heartbeating) before kafkajs fetches it again: returning
   * at once would fetch and skip the same batch in a hot loop until the set-up succeeds.
   */
  async #servable(shard: ShardId, isRunning: () => boolean, isStale: () => boolean, heartbeat: () => Promise<void>): Promise<boolean> {
    for (let waited = 0; this.#gaining.has(shard) && waited < 5 && isRunning() && !isStale(); waited++) {
      await sleep(1_000);
      await heartbeat().catch(() => undefined);
    }
    return this.#serving.has(shard) && !this.#closing && isRunning() && !isStale();
  }

  async #reassign(owned: readonly number[], join: number): Promise<void> {
    const now = new Set(owned);
    const revoked = [...this.#owned].filter((s) => !now.has(s));
    // A shard whose set-up failed under an earlier join is still to be set up if it stayed.
    const gained = owned.filter((s) => !this.#owned.has(s) || this.#gaining.has(s));
    // Revoked shards are stopped now, not after reading the whole map from the group (a
    // describeGroup round trip, longer while the group settles): the runtime gets this
    // node's own part of the map at once, and the rest through onPlacement when it is read.
    for (const s of revoked) this.#serving.delete(s);
    this.#owned = now;
    this.#gaining = new Set(gained);
    const assignment: ShardAssignment = { owned, ...this.#provisionalMap(owned) };
    await this.#setUp(assignment, revoked, gained, join);
    void this.#refreshMap(owned, join);
  }

  /**
   * Hands the assignment to the runtime; a failure (reminders unreadable during a database
   * blip, say) is reported and the step tried again with backoff, for the shards still to
   * gain, until it succeeds, a newer join replaces it or the log stops. The first attempt
   * lets start() resolve either way: the runtime reports a shard not yet set up as not ready.
   */
  async #setUp(assignment: ShardAssignment, revoked: readonly number[], gained: readonly number[], join: number): Promise<void> {
    const delays = backoff(this.#o.retryMinMs ?? 200, this.#o.retryMaxMs ?? 5_000);
    let delay = 0;
    for (let attempt = 1, drain = revoked; ; attempt++, drain = []) {
      try {
        await this.#handlers!.onAssignment(assignment, drain, gained);
        this.#gaining.clear();
        for (const s of assignment.owned) this.#serving.add(s);
        return;
      } catch (error) {
        delay = delays.next().value;
        this.#o.onError?.(error, `rebalance: setting up shards ${gained.join(', ')} failed (attempt ${attempt}); retrying in ${delay} ms`);
        // Shards that stayed keep being served while the gained ones wait.
        for (const s of assignment.owned) if (!this.#gaining.has(s)) this.#serving.add(s);
      } finally {
        this.#firstAssignment?.();
        this.#firstAssignment = undefined;
      }
      await sleep(delay);
      if (this.#stopped || this.#closing || join !== this.#joins) return;
    }
  }

  /**
   * The whole shard -> node map rides in every member's assignment user data, which the
   * group describes only once it is stable. Read until it is, and until it agrees with
   * what this node was assigned (not a map of an earlier generation); undefined if that
   * takes longer than `withinMs` or a newer join arrives.
   */
  async #wholeMap(
    owned: readonly number[], current: () => boolean, withinMs: number,
  ): Promise<Pick<ShardAssignment, 'placement' | 'nodes'> | undefined> {
    const until = Date.now() + withinMs;
    const delays = backoff(50, 1_000);
    while (current() && !this.#stopped && !this.#closing) {
      const map = await this.#describeMap().catch((error: unknown) => { this.#o.onError?.(error, 'reading the shard map from the group'); });
      if (map && agrees(map.placement, owned, this.#o.nodeId, this.shards)) {
        this.#map = map;
        return map;
      }
      if (Date.now() >= until) return undefined;
      await sleep(delays.next().value);
    }
    return undefined;
  }

  async #describeMap(): Promise<Pick<ShardAssignment, 'placement' | 'nodes'> | undefined> {
    const group = await this.#consumer.describeGroup();
    if (group.state !== 'Stable') return undefined;
    for (const member of group.members) {
      const assignment = AssignerProtocol.MemberAssignment.decode(member.memberAssignment);
      const data = decodeJson<PlacementData>(assignment?.userData);
      if (data) return { nodes: data.nodes, placement: new Map(data.owners.map((node, shard) => [shard, node])) };
    }
    return undefined;
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
    const map = await this.#wholeMap(owned, () => join === this.#joins, Number.POSITIVE_INFINITY);
    if (map && join === this.#joins && !this.#stopped) this.#handlers?.onPlacement?.(map);
  }
}

/** Waits, heartbeating about once a second meanwhile. */
async function pause(ms: number, heartbeat: () => Promise<unknown>): Promise<void> {
  for (let left = ms; left > 0; left -= 1_000) {
    await sleep(Math.min(left, 1_000));
    await heartbeat();
  }
}

/** The key of a soft record (Kafka needs none to place it: the partition is given). */
const SOFT_KEY = '$soft';

/** A record of soft messages for one shard. */
interface SoftRecord {
  readonly soft: readonly SoftMessage[];
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

/** Whether a map gives this node exactly the shards it was assigned, and every shard an owner. */
function agrees(placement: ReadonlyMap<number, string>, owned: readonly number[], me: string, shards: number): boolean {
  if (placement.size !== shards) return false;
  const mine = new Set(owned);
  for (const [shard, node] of placement) if ((node === me) !== mine.has(shard)) return false;
  return true;
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

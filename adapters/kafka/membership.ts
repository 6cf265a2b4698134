// Membership: the node's place in the cluster's consumer group, and nothing else. The group,
// through the sticky rendezvous assigner, decides which node owns which shard (a partition
// of the command topic); this consumer never reads a record (every partition stays paused),
// so the group's rebalances, which kafkajs runs eagerly (every member gives up everything
// until the group has synced), stop no consumption: the records are read by the node's own
// PartitionReader (partition-reader.ts), which goes on serving every shard that does not move.
//
// What it tells the log: each join's assignment (synchronously, as it arrives), each
// confirmation of membership (a join, an answered heartbeat: the lease, ports.ts onLease),
// and a crash (the consumer is out of the group until it is restarted here).

import { AssignerProtocol, type Consumer, type Kafka } from 'kafkajs';
import { backoff, sleep } from '../../runtime/backoff.ts';
import type { NodeId, ShardAssignment } from '../../runtime/ports.ts';
import { decodeJson, stickyRendezvousAssigner, type PlacementData } from './assigner.ts';
import { restartConsumer } from './restart.ts';

export interface MembershipOptions {
  readonly kafka: Kafka;
  readonly topic: string;
  readonly groupId: string;
  readonly nodeId: NodeId;
  readonly shards: number;
  readonly sessionTimeoutMs: number;
  readonly heartbeatIntervalMs: number;
  /** The shards this node owns now (each join tells the leader, for stickiness). */
  readonly owned: () => readonly number[];
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  readonly onError?: (error: unknown, context: string) => void;
}

export interface MembershipEvents {
  /** A join's assignment, sorted; `join` counts joins. Called synchronously as it arrives. */
  joined(owned: readonly number[], join: number): void;
  /** The group vouches for this member until `until` (ms since the epoch). */
  lease(until: number): void;
  /** The consumer crashed: out of the group until it rejoins (restarted here when kafkajs does not). */
  crashed(): void;
  /** The member is (re)joining: for the log's phase timings. */
  joining?(): void;
}

export class GroupMembership {
  readonly #o: MembershipOptions;
  readonly #events: MembershipEvents;
  readonly #consumer: Consumer;
  #joins = 0;
  #stopped = false;

  constructor(options: MembershipOptions, events: MembershipEvents) {
    this.#o = options;
    this.#events = events;
    this.#consumer = options.kafka.consumer({
      groupId: options.groupId,
      sessionTimeout: options.sessionTimeoutMs,
      heartbeatInterval: options.heartbeatIntervalMs,
      rebalanceTimeout: 30_000,
      allowAutoTopicCreation: false,
      // Nothing is fetched (all paused): the fetch loop only sleeps this long between heartbeats, so a
      // rebalance someone else started is noticed within a heartbeat interval, not a five-second long poll.
      maxWaitTimeInMs: Math.min(250, options.heartbeatIntervalMs),
      partitionAssigners: [stickyRendezvousAssigner({
        nodeId: options.nodeId, topic: options.topic, owned: options.owned, onJoin: () => events.joining?.(),
      })],
    });
    this.#consumer.on(this.#consumer.events.GROUP_JOIN, (event) => {
      // Never read: every partition paused before the first fetch of this generation.
      this.#consumer.pause([{ topic: options.topic }]);
      const owned = (event.payload.memberAssignment[options.topic] ?? []).slice().sort((a, b) => a - b);
      this.#confirmed();
      events.joined(owned, ++this.#joins);
    });
    // A heartbeat answered: the broker counts this member alive, in this generation, for a session from now.
    this.#consumer.on(this.#consumer.events.HEARTBEAT, () => this.#confirmed());
    this.#consumer.on(this.#consumer.events.CRASH, (event) => {
      options.onError?.(event.payload.error, `kafka group member crashed; ${event.payload.restart ? 'kafkajs restarts it' : 'restarting it'}`);
      events.crashed();
      if (!event.payload.restart) void this.#restart();
    });
  }

  get joins(): number {
    return this.#joins;
  }

  async connect(): Promise<void> {
    await this.#consumer.connect();
  }

  /** Joins the group; resolves once the first join's assignment was handed over (`joined`). */
  async start(): Promise<void> {
    await this.#consumer.subscribe({ topic: this.#o.topic, fromBeginning: true });
    await this.#run();
  }

  #run(): Promise<void> {
    // A batch can only come in the moment between an assignment and its pause: left unread and unresolved.
    return this.#consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: async () => undefined });
  }

  /** The group vouches for this member for a session from now, less a margin for the answer's own trip. */
  #confirmed(): void {
    const margin = Math.min(this.#o.heartbeatIntervalMs, this.#o.sessionTimeoutMs / 4);
    this.#events.lease(Date.now() + this.#o.sessionTimeoutMs - margin);
  }

  #restart(): Promise<void> {
    return restartConsumer({
      consumer: this.#consumer, run: () => this.#run(), stopped: () => this.#stopped, what: 'kafka group member',
      retryMinMs: this.#o.retryMinMs, retryMaxMs: this.#o.retryMaxMs, onError: this.#o.onError,
    });
  }

  /**
   * The whole shard -> node map, from every member's assignment user data, which the group
   * describes only once it is stable: read until it is and gives this node exactly `owned`
   * (not an earlier generation's map); undefined past `withinMs` or once `current()` says a
   * newer join came.
   */
  async wholeMap(owned: readonly number[], current: () => boolean, withinMs: number): Promise<Pick<ShardAssignment, 'placement' | 'nodes'> | undefined> {
    const until = Date.now() + withinMs;
    const delays = backoff(20, 1_000);
    while (current() && !this.#stopped) {
      const map = await this.#describe().catch((error: unknown) => { this.#o.onError?.(error, 'reading the shard map from the group'); });
      if (map && agrees(map.placement, owned, this.#o.nodeId, this.#o.shards)) return map;
      if (Date.now() >= until) return undefined;
      await sleep(delays.next().value);
    }
    return undefined;
  }

  async #describe(): Promise<Pick<ShardAssignment, 'placement' | 'nodes'> | undefined> {
    const group = await this.#consumer.describeGroup();
    if (group.state !== 'Stable') return undefined;
    for (const member of group.members) {
      const assignment = AssignerProtocol.MemberAssignment.decode(member.memberAssignment);
      const data = decodeJson<PlacementData>(assignment?.userData);
      if (data) return { nodes: data.nodes, placement: new Map(data.owners.map((node, shard) => [shard, node])) };
    }
    return undefined;
  }

  /** Leaves the group: its shards go to the other members at their next join. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#consumer.disconnect().catch((e) => this.#o.onError?.(e, 'group member disconnect'));
  }
}

/** Whether a map gives this node exactly the shards it was assigned, and every shard an owner. */
function agrees(placement: ReadonlyMap<number, string>, owned: readonly number[], me: string, shards: number): boolean {
  if (placement.size !== shards) return false;
  const mine = new Set(owned);
  for (const [shard, node] of placement) if ((node === me) !== mine.has(shard)) return false;
  return true;
}

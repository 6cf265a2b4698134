// The hand-off: which shards this node serves right now, and the steps that change it.
//
// A shard is served (`holds`) only while every one of these is true: the log assigned it
// to this node; the latest join kept it; no rebalance is under way; the node is not
// stopping; its epoch was taken or checked against storage since that join (a node that
// was out of its group may get back shards another node held meanwhile: what it still
// has in memory is no longer true); and, with a log that has a group, the group confirmed
// this node's membership within its session (a node paused past it may have been evicted
// before it hears so). Everything the region does for a shard (commands, asks, timers,
// soft messages, activations) asks `holds` first; what waits for a shard that is only
// moving waits on `changed`.
//
// Shards a refused write dropped (another node took an epoch: fencing.ts) while the log
// still assigns them here are taken back once the group confirms this node again, since
// it may be the other node that is stale; a log without a group never takes them back
// (a second process writing the same storage is a misconfiguration, and stays loud).

import { RebalanceStepError, ShardFencedError, ShardHandoffError } from './errors.ts';
import type { ShardFences } from './fencing.ts';
import type { NodeId, ShardAssignment, ShardId } from './ports.ts';
import type { ShardHost } from './shard-host.ts';

export interface HandoffOptions {
  readonly nodeId: NodeId;
  readonly host: Pick<ShardHost, 'stopShards'>;
  readonly fences?: ShardFences;
  readonly now: () => number;
  /** Sets up shards this node begins to serve (their reminders activate their entities). */
  readonly setUp: (shards: readonly ShardId[]) => Promise<void>;
  readonly onError?: (error: unknown, context: string) => void;
}

/** How long without an assignment, or a confirmed membership, before /ready says so. */
export const REBALANCE_GRACE_MS = 20_000;

/** Why an assigned shard is not served, for /ready and /metrics. */
export type UnservedReason = 'setting_up' | 'set_up_failed' | 'epoch_unchecked' | 'fenced' | 'rebalancing' | 'membership_unconfirmed';

export interface UnservedShard {
  readonly shard: ShardId;
  readonly seconds: number;
  readonly reason: UnservedReason;
  readonly failure?: string;
}

/** Confirmations of membership after a drop before the shard is taken back (the first may have been sent before it). */
const CONFIRMATIONS_TO_RETAKE = 2;

export class ShardHandoff {
  readonly #o: HandoffOptions;
  #assignment: ShardAssignment = { owned: [], placement: new Map(), nodes: [] };
  /** Shards held under an epoch this node took or checked (without fences: assigned). */
  readonly #owned = new Set<ShardId>();
  readonly #draining = new Set<ShardId>();
  #rebalancing = false;
  #rebalancingSince: number | undefined;
  /** The shards the latest join assigned (undefined with a log that has no joins). */
  #joined: Set<ShardId> | undefined;
  /** Joins seen; a check made across a newer join does not vouch for it. */
  #joins = 0;
  /** Shards of the latest join whose epoch has not been taken or checked since it. */
  readonly #unchecked = new Set<ShardId>();
  #closed = false;
  /** Until when the group vouches for this node's assignment; undefined for a log without a group. */
  #leaseUntil: number | undefined;
  /** How long the group's vouching lasts (a session, less a margin), as the last lease said. */
  #leaseMs = 0;
  /** The membership ran out at some point since the last join (or no join was ever confirmed). */
  #lapsed = true;
  /** Shards assigned here that a refused write dropped: since when, and confirmations seen since. */
  readonly #dropped = new Map<ShardId, { since: number; confirmations: number }>();
  /** Shards being set up: since when, and why the last attempt failed. */
  readonly #gaining = new Map<ShardId, { since: number; failure?: string }>();
  /** Counts fences, so an answer computed across one is not given. */
  #fence = 0;
  #changed = deferred();
  #shardsFenced = 0;
  /** Take-backs run one at a time, and never beside a rebalance step. */
  #steps: Promise<void> = Promise.resolve();

  constructor(options: HandoffOptions) {
    this.#o = options;
    options.fences?.onFenced((shard) => this.#droppedByFence(shard));
  }

  get assignment(): ShardAssignment {
    return this.#assignment;
  }

  /** Shards this node holds an epoch for (or is assigned, without fences): what projections and metrics call owned. */
  get owned(): ShardId[] {
    return [...this.#owned];
  }

  owns(shard: ShardId): boolean {
    return this.#owned.has(shard);
  }

  get shardsFenced(): number {
    return this.#shardsFenced;
  }

  /** Changes with every fence: an answer computed while it changed is not given. */
  get fence(): number {
    return this.#fence;
  }

  /** Resolved at the next change of ownership or fence. */
  get changed(): Promise<void> {
    return this.#changed.promise;
  }

  /** Whether this node serves the shard now (see the file's head). */
  holds(shard: ShardId): boolean {
    return this.#owned.has(shard) && !this.#draining.has(shard) && !this.#rebalancing && !this.#closed
      && (this.#joined?.has(shard) ?? true) && !this.#unchecked.has(shard) && this.#confirmed();
  }

  /** Whether the shard is this node's but paused (a rebalance, a check, a lapsed membership, a take-back): worth waiting for. */
  paused(shard: ShardId): boolean {
    if (this.#closed) return false;
    const ours = this.#owned.has(shard) || this.#unchecked.has(shard) || this.#gaining.has(shard)
      || (this.#leaseUntil !== undefined && this.#dropped.has(shard));
    return (ours || this.#rebalancing) && !this.holds(shard);
  }

  /** Whether this node owned the shard and cannot serve it now because it is moving (or the node stopping). */
  handingOff(shard: ShardId): boolean {
    if (this.#closed) return this.#owned.has(shard);
    return this.paused(shard);
  }

  /** Waits for the hand-off to move on (until `until`, at most the deadline); past the deadline, ShardHandoffError. */
  async awaitChange(shard: ShardId, deadline: number, what: string, until = deadline): Promise<void> {
    const left = Math.min(until, deadline) - Date.now();
    if (this.#closed || left <= 0) {
      throw new ShardHandoffError(
        `shard ${shard} of ${what} is being handed to another node${this.#closed ? ' (this node is stopping)' : ''}; ask again`,
      );
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#changed.promise, new Promise((r) => { timer = setTimeout(r, left); })]);
    clearTimeout(timer);
  }

  /** A rebalance began: every shard is fenced until the join says which stay. */
  rebalancing(): void {
    this.#rebalancingSince ??= this.#o.now();
    this.#rebalancing = true;
    this.#bump();
  }

  /**
   * The join completed: lost shards stop at once. Kept ones go on, unless the node's membership
   * lapsed since its last join (it may have been out of the group while others held its
   * shards): then they resume once their epochs are checked (reassign).
   */
  joined(owned: readonly ShardId[]): void {
    this.#joins++;
    this.#joined = new Set(owned);
    this.#unchecked.clear();
    if (this.#lapsed || !this.#confirmed()) {
      if (this.#o.fences) for (const shard of owned) this.#unchecked.add(shard);
      this.#lapsed = false;
    }
    this.#rebalancing = false;
    this.#rebalancingSince = undefined;
    this.#bump();
  }

  /** The group vouches for this node until `until`; dropped shards it still assigns here are taken back. */
  leased(until: number): void {
    const now = this.#o.now();
    // Renewed after it ran out: the node may have been out of its group meanwhile.
    if (this.#leaseUntil !== undefined && now >= this.#leaseUntil) this.#lapsed = true;
    this.#leaseUntil = until;
    this.#leaseMs = Math.max(0, until - now);
    this.signal();
    const due: ShardId[] = [];
    for (const [shard, drop] of this.#dropped) {
      if (++drop.confirmations >= CONFIRMATIONS_TO_RETAKE && this.#assignedHere(shard)) due.push(shard);
    }
    if (due.length > 0) this.#queue(() => this.#retake(due));
  }

  /** The node is stopping: every shard is fenced for good. */
  close(): void {
    this.#closed = true;
    this.#bump();
  }

  /**
   * The log's new assignment. Revoked shards are drained (their entities snapshotted and
   * stopped); every assigned shard's epoch is checked against storage, and the shards whose
   * epoch is not current (gained, or taken by another node while this one was away) have their
   * entities stopped unsnapshotted and a new epoch taken before they are served. A failure
   * rejects (RebalanceStepError) and the log tries the step again.
   */
  reassign(assignment: ShardAssignment, revoked: readonly ShardId[], gained: readonly ShardId[]): Promise<void> {
    return this.#queue(() => this.#reassign(assignment, revoked, gained));
  }

  async #reassign(assignment: ShardAssignment, revoked: readonly ShardId[], gained: readonly ShardId[]): Promise<void> {
    const joins = this.#joins;
    await this.#drain(revoked);
    this.#assignment = assignment;
    for (const shard of this.#dropped.keys()) if (!assignment.owned.includes(shard)) this.#dropped.delete(shard);
    const fences = this.#o.fences;
    if (!fences) {
      for (const shard of assignment.owned) this.#owned.add(shard);
      this.signal();
      return this.#take([], gained, joins);
    }
    let stale: ShardId[];
    try {
      stale = await fences.stale(assignment.owned);
    } catch (error) {
      throw this.#stepFailed(assignment.owned, error);
    }
    const current = assignment.owned.filter((shard) => !stale.includes(shard));
    for (const shard of current) { this.#owned.add(shard); this.#dropped.delete(shard); }
    if (joins === this.#joins) for (const shard of current) this.#unchecked.delete(shard);
    this.signal();
    await this.#forget(stale.filter((shard) => this.#owned.has(shard)));
    // Shards whose set-up failed under an earlier step hold their epoch: they are only set up again.
    const retry = current.filter((shard) => this.#gaining.has(shard));
    await this.#take(stale, [...stale, ...retry], joins);
  }

  /** Revoked shards: fenced at once, then their entities snapshotted and stopped, then their epochs let go. */
  async #drain(revoked: readonly ShardId[]): Promise<void> {
    if (revoked.length === 0) return;
    for (const shard of revoked) this.#draining.add(shard);
    this.#bump();
    try {
      await this.#o.host.stopShards(revoked);
    } finally {
      for (const shard of revoked) { this.#owned.delete(shard); this.#draining.delete(shard); this.#gaining.delete(shard); }
      this.#bump();
      // Drained: the next owner may take them now.
      await this.#o.fences?.letGo(revoked).catch((e) => this.#o.onError?.(e, `releasing shard(s) ${revoked.join(', ')}`));
    }
  }

  /** The node stopped every entity: its shards go to their next owners at once. */
  async letGoAll(): Promise<void> {
    // Still "owned" here (closed: asks for them hear ShardHandoffError, not NotOwnerError); only their epochs go.
    await this.#o.fences?.letGo([...this.#owned]).catch((e) => this.#o.onError?.(e, 'releasing the shards at stop'));
  }

  /**
   * Shards still held by another member of the group (its epoch current, not released):
   * waited for until it lets them go (it drains them when it hears it lost them), at most a
   * session plus a second. By then a member that never lets go has been out of the group for
   * a session, and serves nothing (its lease ran out); its late writes are refused anyway.
   */
  async #awaitRelease(shards: readonly ShardId[]): Promise<void> {
    const fences = this.#o.fences;
    const members = new Set(this.#assignment.nodes);
    if (!fences || members.size <= 1 || shards.length === 0) return;
    const until = this.#o.now() + this.#leaseMs + 1_000;
    let waiting = [...shards];
    for (let round = 0; waiting.length > 0; round++) {
      const holders = await fences.holders(waiting);
      waiting = waiting.filter((shard) => {
        const h = holders.get(shard);
        return h !== undefined && !h.released && h.owner !== this.#o.nodeId && members.has(h.owner);
      });
      if (waiting.length === 0) return;
      if (this.#o.now() >= until) {
        this.#o.onError?.(new Error('not released'), `shard(s) ${waiting.join(', ')}: taken without their last owner's release`);
        return;
      }
      await new Promise((r) => setTimeout(r, Math.min(200, 20 * (round + 1))));
    }
  }

  /** Shards whose epoch another node took: what their entities hold may be stale; stopped unsnapshotted (it would be refused). */
  async #forget(shards: readonly ShardId[]): Promise<void> {
    if (shards.length === 0) return;
    for (const shard of shards) this.#owned.delete(shard);
    this.#o.fences?.release(shards);
    this.#bump();
    this.#o.onError?.(
      new ShardFencedError(shards[0]!, undefined, 'the rebalance check'),
      `shard(s) ${shards.join(', ')}: another node took them while this one was away; their entities are stopped and recovered again`,
    );
    await this.#o.host.stopShards(shards, { snapshot: false });
  }

  /** Takes new epochs for `acquire` and sets up `setUp`; they are served once both succeed. */
  async #take(acquire: readonly ShardId[], setUp: readonly ShardId[], joins: number): Promise<void> {
    for (const shard of this.#gaining.keys()) if (!this.#assignedHere(shard)) this.#gaining.delete(shard);
    for (const shard of setUp) if (!this.#gaining.has(shard)) this.#gaining.set(shard, { since: this.#o.now() });
    if (setUp.length === 0) return;
    try {
      if (this.#o.fences && acquire.length > 0) {
        await this.#awaitRelease(acquire);
        await this.#o.fences.acquire(acquire, this.#o.nodeId);
        for (const shard of acquire) if (this.#assignment.owned.includes(shard)) this.#owned.add(shard);
        if (joins === this.#joins) for (const shard of acquire) this.#unchecked.delete(shard);
        this.signal(); // asks waiting for these shards go on
      }
      await this.#o.setUp(setUp);
    } catch (error) {
      throw this.#stepFailed(setUp, error);
    }
    for (const shard of setUp) { this.#gaining.delete(shard); this.#dropped.delete(shard); }
  }

  #stepFailed(shards: readonly ShardId[], error: unknown): RebalanceStepError {
    // The log tries again (ports.ts); meanwhile /ready and the unserved-shard gauge say why.
    const failure = error instanceof Error ? error.message : String(error);
    for (const shard of shards) {
      const gaining = this.#gaining.get(shard);
      if (gaining) gaining.failure = failure;
      else this.#gaining.set(shard, { since: this.#o.now(), failure });
    }
    return new RebalanceStepError(`setting up shard(s) ${shards.join(', ')} failed: ${failure}`, { cause: error });
  }

  /**
   * Storage refused a write of this shard: another node took it (a newer epoch) while this
   * one still believed it owned it. Dropped now, before anything else runs; its entities are
   * stopped without a snapshot (it would be refused too).
   */
  #droppedByFence(shard: ShardId): void {
    if (!this.#owned.has(shard)) return;
    this.#owned.delete(shard);
    this.#shardsFenced++;
    if (this.#assignedHere(shard)) this.#dropped.set(shard, { since: this.#o.now(), confirmations: 0 });
    this.#bump();
    this.#o.onError?.(
      new ShardFencedError(shard, undefined, 'a write'),
      `shard ${shard} was taken by another node; stopping it here` +
      (this.#leaseUntil === undefined ? '' : ' (taken back if the group still assigns it here)'),
    );
    this.#o.host.stopShards([shard], { snapshot: false })
      .catch((e) => this.#o.onError?.(e, `stopping fenced shard ${shard}`));
  }

  async #retake(shards: readonly ShardId[]): Promise<void> {
    const due = shards.filter((shard) => this.#dropped.has(shard) && this.#assignedHere(shard) && !this.#rebalancing);
    if (due.length === 0) return;
    this.#o.onError?.(
      new ShardFencedError(due[0]!, undefined, 'a write'),
      `shard(s) ${due.join(', ')}: the group still assigns them here; taking them back (new epoch, entities recovered from the journal)`,
    );
    await this.#take(due, due, this.#joins).catch((e) => this.#o.onError?.(e, `taking back shard(s) ${due.join(', ')}; trying again`));
  }

  /** In the log's latest assignment and, with joins, its latest join. */
  #assignedHere(shard: ShardId): boolean {
    return this.#assignment.owned.includes(shard) && (this.#joined?.has(shard) ?? true);
  }

  #confirmed(): boolean {
    return this.#leaseUntil === undefined || this.#o.now() < this.#leaseUntil;
  }

  /** Assigned shards not served, and why; `unserved()` of a node serving all it is assigned is empty. */
  unserved(): UnservedShard[] {
    const now = this.#o.now();
    const out: UnservedShard[] = [];
    const assigned = this.#joined ? [...this.#joined] : this.#assignment.owned;
    for (const shard of assigned) {
      if (this.holds(shard) || this.#draining.has(shard)) continue;
      out.push({ shard, ...this.#whyUnserved(shard, now) });
    }
    return out.sort((a, b) => a.shard - b.shard);
  }

  #whyUnserved(shard: ShardId, now: number): Omit<UnservedShard, 'shard'> {
    const gaining = this.#gaining.get(shard);
    const dropped = this.#dropped.get(shard);
    const seconds = (since: number) => Math.max(0, (now - since) / 1000);
    if (gaining?.failure !== undefined) return { seconds: seconds(gaining.since), reason: 'set_up_failed', failure: gaining.failure };
    if (dropped) return { seconds: seconds(dropped.since), reason: 'fenced' };
    if (gaining) return { seconds: seconds(gaining.since), reason: 'setting_up' };
    if (this.#rebalancing) return { seconds: seconds(this.#rebalancingSince ?? now), reason: 'rebalancing' };
    if (!this.#confirmed()) return { seconds: seconds(this.#leaseUntil ?? now), reason: 'membership_unconfirmed' };
    return { seconds: 0, reason: 'epoch_unchecked' };
  }

  /** Why the node is not ready, in words for /ready; undefined when it is. */
  unready(): string | undefined {
    const now = this.#o.now();
    const since = this.#rebalancingSince;
    if (since !== undefined && now - since > REBALANCE_GRACE_MS) {
      return `no shard assignment for ${Math.round((now - since) / 1000)} s: rebalancing, or out of the consumer group`;
    }
    if (this.#leaseUntil !== undefined && now - this.#leaseUntil > REBALANCE_GRACE_MS) {
      return `the consumer group has not confirmed this node for ${Math.round((now - this.#leaseUntil) / 1000)} s past its session`;
    }
    const blocking = this.unserved().filter((u) => u.reason !== 'rebalancing' && u.reason !== 'membership_unconfirmed'
      && (u.reason !== 'epoch_unchecked' || u.seconds > REBALANCE_GRACE_MS / 1000));
    if (blocking.length === 0) return undefined;
    const shards = blocking.map((u) => u.shard).join(', ');
    const failure = blocking.find((u) => u.failure)?.failure;
    if (failure) return `shard(s) ${shards} assigned but not served: setting them up failed (${failure}); retrying`;
    if (blocking.some((u) => u.reason === 'fenced')) {
      return `shard(s) ${shards} assigned but not served: a write was refused (another node took them)` +
        (this.#leaseUntil === undefined ? '; another process writes this storage' : '; taking them back');
    }
    return `shard(s) ${shards} gained but not consumed yet`;
  }

  #queue(step: () => Promise<void>): Promise<void> {
    const run = this.#steps.then(step);
    this.#steps = run.catch(() => undefined);
    return run;
  }

  #bump(): void {
    this.#fence++;
    const changed = this.#changed;
    this.#changed = deferred();
    changed.resolve();
  }

  /** Tells waiters that something they wait for may have changed, without fencing (a placement map arrived). */
  signal(): void {
    const changed = this.#changed;
    this.#changed = deferred();
    changed.resolve();
  }

  setPlacement(map: Pick<ShardAssignment, 'placement' | 'nodes'>): void {
    this.#assignment = { ...this.#assignment, ...map };
    this.signal();
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => { resolve = r; });
  return { promise, resolve };
}

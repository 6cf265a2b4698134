// The shard region: a node's view of the whole entity space.
//
// `tell` appends a command to its shard's partition and returns once it is
// durable; whichever node owns the shard consumes it, hands it to the entity and
// commits the offset only after the entity has persisted what it changed and
// its outgoing tells are themselves durable (at-least-once end to end; entities
// drop duplicates by command id). `request` is a tell whose outcome is sent
// back to the asking node. `ask` is a read-only query answered by the owner
// directly, never through the log. `tellSoft` carries soft state (soft-path.ts).
//
// Which shards this node serves, and how they move, is the hand-off's (shard-handoff.ts);
// timers and reminders are shard-timers.ts'; this file handles commands and asks.

import type { EntityRef, Service } from '../actors/behavior.ts';
import { entityKey, shardOf, type EntityKey, type NodeId, type Placement, type ShardId } from './entity.ts';
import { failureOf, type OutboundTell } from './entity-actor.ts';
import { LogUnavailableError, NodeStoppingError, ShardFencedError } from './errors.ts';
import type { ShardFences } from './fencing.ts';
import type {
  CommandEnvelope, CommandLog, CommandResult, DeadLetter, DeadLetterStore, Failure, LogRecord, Notifier, ReminderStore,
  RemoteChannel, ShardAssignment,
} from './ports.ts';
import { NOT_NOW, type ShardHost } from './shard-host.ts';
import { ShardHandoff, type UnservedShard } from './shard-handoff.ts';
import { ShardTimers } from './shard-timers.ts';
import { randomId } from './random-id.ts';
import { SoftPath, type SoftDelivery, type SoftStats } from './soft-path.ts';
import { isUndecodable, type UndecodableMessage } from './undecodable.ts';
import { backoff, sleep } from './backoff.ts';
import { endSpan, endWith, SpanKind, startSpan, traceField, tracingEnabled, withSpan, type Span } from './tracing.ts';

export type { SoftDelivery } from './soft-path.ts';
export type { UnservedShard } from './shard-handoff.ts';

/** Cells whose shards a region keeps at most (ShardRegion.shardOf; a map of this many is a few MB). */
export const CELL_SHARDS_KEPT = 50_000;

export class AskTimeoutError extends Error {
  override readonly name = 'AskTimeoutError';
}

export class NotOwnerError extends Error {
  override readonly name = 'NotOwnerError';
}

export type DomainEventListener = (topic: string, event: unknown, from: EntityRef) => void;

export interface RegionOptions {
  readonly nodeId: NodeId;
  readonly placement: Placement;
  readonly log: CommandLog;
  readonly host: ShardHost;
  readonly reminders: ReminderStore;
  readonly notifier: Notifier;
  readonly askTimeoutMs: number;
  readonly remote?: RemoteChannel;
  readonly now?: () => number;
  readonly onError?: (error: unknown, context: string) => void;
  /** Backoff bounds when storage fails while handling a command. */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  /** Attempts at a command failing transiently before it is dead-lettered (default 20, about 70 s). */
  readonly maxAttempts?: number;
  /** Where commands that cannot be handled go; without one, they are retried forever. */
  readonly deadLetters?: DeadLetterStore;
  /** How often reminders of owned shards are re-scanned (default 30 s). */
  readonly reminderScanMs?: number;
  /** Node services entities may request (see Effect 'request'). */
  readonly services?: Readonly<Record<string, Service>>;
  /**
   * The epochs this node holds for its shards (fencing.ts), shared with the storage adapters.
   * With it, a shard is served only under an epoch taken or checked since its latest
   * assignment, and the first write of a shard that storage refuses (another node took it)
   * stops the shard here at once.
   */
  readonly fences?: ShardFences;
}

export interface RegionStats extends SoftStats {
  readonly commandsHandled: number;
  readonly commandsDuplicate: number;
  readonly commandsRetried: number;
  readonly commandsDeadLettered: number;
  /** Failed attempts at setting up gained shards (each is retried). */
  readonly rebalanceFailures: number;
  /** Writes storage refused because another node holds a newer epoch of their shard. */
  readonly fencedWrites: number;
  /** Shards stopped here because a write of theirs was refused. */
  readonly shardsFenced: number;
  readonly owned: readonly ShardId[];
}

/** A shard whose oldest unhandled command keeps failing. */
export interface StuckShard {
  readonly shard: ShardId;
  readonly seconds: number;
  readonly failure: string;
}

interface Pending {
  resolve(result: CommandResult): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

export class ShardRegion {
  readonly nodeId: NodeId;
  readonly #options: RegionOptions;
  readonly #now: () => number;
  readonly #pending = new Map<string, Pending>();
  readonly #listeners = new Set<DomainEventListener>();
  readonly #handoff: ShardHandoff;
  readonly #timers: ShardTimers;
  readonly #soft: SoftPath;
  #started = false;
  #stopping = false;
  #handled = 0;
  #duplicates = 0;
  #retried = 0;
  #deadLettered = 0;
  #rebalanceFailures = 0;
  /** Shard -> since when its current command has been failing, and why. */
  readonly #stuck = new Map<ShardId, { since: number; failure: string }>();

  constructor(options: RegionOptions) {
    this.#options = options;
    this.nodeId = options.nodeId;
    this.#now = options.now ?? Date.now;
    const holds = (shard: ShardId) => this.#handoff.holds(shard);
    const shardOfRef = (ref: EntityRef) => this.shardOf(ref);
    this.#timers = new ShardTimers({
      log: options.log, reminders: options.reminders, host: options.host, shardOf: shardOfRef, holds,
      paused: (shard) => this.#handoff.paused(shard), stopping: () => this.#stopping, now: this.#now,
      backoff: () => this.#backoff(), onError: options.onError,
    });
    this.#handoff = new ShardHandoff({
      nodeId: options.nodeId, host: options.host, fences: options.fences, now: this.#now, onError: options.onError,
      setUp: (shards) => this.#timers.setUp(shards),
    });
    this.#soft = new SoftPath({
      log: options.log, host: options.host, shardOf: shardOfRef, holds, closed: () => this.#closed, onError: options.onError,
    });
    options.host.attach({
      send: (_from, tells, trace) => this.#sendTells(tells, trace),
      sendSoft: (from, tells) => this.#soft.tellFrom(from, tells, this.#now()),
      notify: (userId, message, trace) => {
        options.notifier.publish(userId, message, trace).catch((e) => options.onError?.(e, `notify ${userId}`));
      },
      publish: (topic, event, from) => {
        for (const listener of this.#listeners) {
          try { listener(topic, event, from); } catch (e) { options.onError?.(e, `event listener for ${topic}`); }
        }
      },
      request: (self, service, payload, trace, at) => void this.#runService(self, service, payload, trace, at),
      remember: (self, name, dueAt) => this.#timers.remember(self, name, dueAt),
      forget: (self, name) => this.#timers.forget(self, name),
      onTimer: (self, name, at) => this.#timers.fire(self, name, at),
    });
  }

  /** True once stop() has fenced every shard. */
  #closed = false;

  shardOf(ref: EntityRef): number {
    return ref.kind === 'cell' ? this.#cellShard(ref) : shardOf(ref, this.#options.placement);
  }

  /**
   * Cells' shards, by cell id, kept: a cell's shard takes H3 (its parent at the placement
   * resolution) besides the hash, and a node routes copies to the same few thousand cells
   * again and again, most of them to another node's shard when a fix crosses (then the cell
   * is not active here to say its shard): 4% of a Kafka-mode node's CPU in the fix bench.
   * Bounded: past CELL_SHARDS_KEPT cells the table starts over.
   */
  readonly #cellShards = new Map<string, ShardId>();

  #cellShard(ref: EntityRef): ShardId {
    let shard = this.#cellShards.get(ref.id);
    if (shard === undefined) {
      if (this.#cellShards.size >= CELL_SHARDS_KEPT) this.#cellShards.clear();
      shard = shardOf(ref, this.#options.placement);
      this.#cellShards.set(ref.id, shard);
    }
    return shard;
  }

  /** Cells' shards kept now (for tests: the table is bounded). */
  get cellShardsKept(): number {
    return this.#cellShards.size;
  }

  get shards(): number {
    return this.#options.placement.shards;
  }

  /** Starts consuming the shards this node is assigned. */
  async start(): Promise<void> {
    const handoff = this.#handoff;
    await this.#options.remote?.serve({
      ask: (to, query, trace) => this.#askFromRemote(to, query, trace),
      reply: (commandId, result) => this.#resolvePending(commandId, result),
    });
    await this.#options.log.start({
      onRecords: (shard, records, heartbeat) => this.#handleRecords(shard, records, heartbeat),
      onAssignment: (assignment, revoked, gained) => this.#reassign(assignment, revoked, gained),
      onRebalancing: () => handoff.rebalancing(),
      onJoined: (owned) => { handoff.joined(owned); this.#timers.resume(); },
      onLease: (until) => { handoff.leased(until); this.#timers.resume(); },
      onPlacement: (map) => handoff.setPlacement(map),
      onSoft: (shard, messages) => this.#soft.received(shard, messages),
    });
    this.#started = true;
    const every = this.#options.reminderScanMs ?? 30_000;
    this.#timers.startScan(() => handoff.owned, every);
  }

  async #reassign(assignment: ShardAssignment, revoked: readonly ShardId[], gained: readonly ShardId[]): Promise<void> {
    for (const shard of revoked) this.#stuck.delete(shard);
    try {
      await this.#handoff.reassign(assignment, revoked, gained);
    } catch (error) {
      this.#rebalanceFailures++;
      throw error;
    } finally {
      this.#timers.resume();
    }
  }

  /** Shards whose current command keeps failing, or whose set-up after a rebalance does (for /metrics and /ready). */
  stuckShards(): StuckShard[] {
    const now = this.#now();
    const settingUp = this.#handoff.unserved().filter((u) => u.reason === 'set_up_failed')
      .map((u) => ({ shard: u.shard, seconds: u.seconds, failure: 'rebalance_failed' }));
    const stuck = [...this.#stuck].filter(([shard]) => this.#handoff.owns(shard))
      .map(([shard, s]) => ({ shard, seconds: (now - s.since) / 1000, failure: s.failure }));
    return [...stuck, ...settingUp];
  }

  /** Shards the log assigns this node that it does not serve now, and why (for /metrics). */
  unservedShards(): UnservedShard[] {
    return this.#started && !this.#stopping ? this.#handoff.unserved() : [];
  }

  /** Sends a dead-lettered command again, under its own id (the admin's retry). */
  async redeliver(letter: DeadLetter): Promise<void> {
    this.#checkAccepting();
    await this.#options.log.append(this.shardOf(letter.command.to), letter.command);
  }

  /** True once the node consumes every shard it owns (and has not begun to stop). */
  get ready(): boolean {
    return this.unready() === undefined;
  }

  /** Why the node is not ready, in words for /ready; undefined when it is. */
  unready(): string | undefined {
    if (this.#stopping) return 'node is shutting down';
    if (!this.#started) return 'node does not own its shards yet';
    return this.#handoff.unready();
  }

  get assignment(): ShardAssignment {
    return this.#handoff.assignment;
  }

  owns(shard: ShardId): boolean {
    return this.#handoff.owns(shard);
  }

  onDomainEvent(listener: DomainEventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Appends a command; resolves once it is durable in the log. */
  async tell(to: EntityRef, message: unknown, options: { id?: string } = {}): Promise<string> {
    this.#checkAccepting();
    const id = options.id ?? randomId();
    const shard = this.shardOf(to);
    const span = appendSpan(id, to, message, shard);
    const command: CommandEnvelope = { id, to, message, at: this.#now(), ...traceField(span) };
    await endWith(span, this.#options.log.append(shard, command));
    return command.id;
  }

  /**
   * Soft delivery, for soft state such as GPS fixes (soft-path.ts): straight to the entity
   * when this node serves its shard, resolving once it is handled; else forwarded in one log
   * record per shard per tick, resolving once the log has it. Never applied on a node that
   * does not serve the shard.
   */
  tellSoft(to: EntityRef, message: unknown): Promise<SoftDelivery> {
    const delivered = this.tellSoftSoon(to, message);
    return typeof delivered === 'string' ? Promise.resolve(delivered) : delivered;
  }

  /**
   * tellSoft answered at once when the entity took the message at once (as askSoon is for
   * asks), else a promise of the answer: a gateway acking a fix needs no promise of its own
   * per fix, which was garbage on the hottest path of a node.
   */
  tellSoftSoon(to: EntityRef, message: unknown): SoftDelivery | Promise<SoftDelivery> {
    this.#checkAccepting();
    return this.#soft.deliverTo(to, message, this.#now());
  }

  /** A tell whose outcome (applied, rejected with a reason, or the entity's reply) comes back here. */
  async request(to: EntityRef, message: unknown, options: { id?: string; timeoutMs?: number } = {}): Promise<CommandResult> {
    this.#checkAccepting();
    const id = options.id ?? randomId();
    const timeoutMs = options.timeoutMs ?? this.#options.askTimeoutMs;
    const result = new Promise<CommandResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new AskTimeoutError(`no outcome for command ${id} to ${entityKey(to)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
    });
    // The timeout may reject `result` while the append still waits (a slow broker, a
    // rebalance): nobody awaits it yet, and an unhandled rejection would end the process.
    result.catch(() => undefined);
    const shard = this.shardOf(to);
    const span = appendSpan(id, to, message, shard);
    const command: CommandEnvelope = { id, to, message, at: this.#now(), replyTo: this.nodeId, ...traceField(span) };
    try {
      await endWith(span, this.#options.log.append(shard, command));
    } catch (error) {
      const pending = this.#pending.get(id);
      if (pending) { clearTimeout(pending.timer); this.#pending.delete(id); }
      throw error;
    }
    return result;
  }

  /**
   * The answer of an ask when an entity active here can give it at once, with no await at
   * all; else undefined, and the caller uses `ask`. For loops of local asks: a nearest
   * search over tens of cells would otherwise pay a promise and a microtask turn per cell.
   */
  askNow<A = unknown>(to: EntityRef, query: unknown): { readonly value: A } | undefined {
    // The shard from the entity's activation, checked as served: one lookup where finding the
    // shard first was another (a cold map, or shardOf's hashing for an entity not asked
    // before: a 1M-driver region's searches meet thousands of cells for the first time).
    const value = this.#options.host.queryServed(to, this.#serves, query);
    return value === NOT_NOW ? undefined : { value: value as A };
  }

  readonly #serves = (shard: ShardId) => this.#handoff.holds(shard);

  /** An ask answered at once when it can be (askNow), else a promise of it. */
  askSoon<A = unknown>(to: EntityRef, query: unknown): A | Promise<A> {
    const now = this.askNow<A>(to, query);
    return now ? now.value : this.ask<A>(to, query);
  }

  /**
   * A read-only query answered by the entity's owner, in-process when local. Never answered
   * from an entity whose shard is being handed off: while its shard is fenced (a rebalance
   * under way, the shard lost and draining, the new owner not known here yet) the ask waits
   * for the hand-off to settle, within its timeout, then fails with ShardHandoffError
   * (retriable; the edge answers 503 with Retry-After). An entity active here answers at
   * once from its current state (ShardHost.queryNow): no timer, no mailbox, and no fence
   * can come between the check and the answer since nothing else runs in between.
   */
  async ask<A = unknown>(to: EntityRef, query: unknown, timeoutMs = this.#options.askTimeoutMs): Promise<A> {
    const now = this.askNow<A>(to, query);
    if (now) return now.value;
    const shard = this.#askShard(to);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#handoff.holds(shard)) {
        const answer = await this.#answerLocally(to, shard, query, deadline);
        if (answer.given) return answer.value as A;
        continue;
      }
      const owner = this.#handoff.assignment.placement.get(shard);
      const remote = this.#options.remote;
      if (this.#handoff.handingOff(shard) || !owner || owner === this.nodeId || !remote) {
        if (!remote && !this.#handoff.handingOff(shard)) {
          throw new NotOwnerError(`shard ${shard} of ${entityKey(to)} has no reachable owner right now`);
        }
        await this.#handoff.awaitChange(shard, deadline, entityKey(to));
        continue;
      }
      const span = tracingEnabled()
        ? startSpan(`ask ${to.kind}`, SpanKind.CLIENT, { 'dispatch.entity': entityKey(to), 'dispatch.node.to': owner })
        : undefined;
      try {
        return await endWith(span, remote.ask(owner, to, query, Math.max(1, deadline - Date.now()), traceField(span).trace)) as A;
      } catch (error) {
        // The node asked no longer answers for the shard (it lost it, or is handing it off):
        // wait for the map to name the new owner, within the ask's time.
        const remoteName = (error as { remoteName?: unknown }).remoteName;
        if (remoteName !== 'ShardHandoffError' && remoteName !== 'NotOwnerError') throw error;
        await this.#handoff.awaitChange(shard, deadline, entityKey(to), Math.min(deadline, Date.now() + 250));
      }
    }
  }

  /**
   * Shards of entities asked lately and not answered at once (askNow takes an active entity's
   * from its activation). shardOf hashes with BigInt (and H3 for cells); placement never
   * changes for a region, so an entry never goes stale. Bounded by starting over. Only shards
   * held elsewhere are kept: an entity of a shard held here is active once asked, and answered
   * at once from then on, so its entry (a key and a table slot, about 75 bytes per driver that
   * connected) was never read again.
   */
  readonly #askShards = new Map<EntityKey, ShardId>();

  #askShard(to: EntityRef, key: EntityKey = entityKey(to)): ShardId {
    let shard = this.#askShards.get(key);
    if (shard === undefined) {
      shard = this.shardOf(to);
      if (this.#handoff.holds(shard)) return shard;
      if (this.#askShards.size >= 50_000) this.#askShards.clear();
      this.#askShards.set(key, shard);
    }
    return shard;
  }

  /** Shards remembered for asks (see #askShards), for tests. */
  get askShardsKept(): number {
    return this.#askShards.size;
  }

  stats(): RegionStats {
    return {
      commandsHandled: this.#handled, commandsDuplicate: this.#duplicates, commandsRetried: this.#retried,
      commandsDeadLettered: this.#deadLettered, rebalanceFailures: this.#rebalanceFailures, owned: this.#handoff.owned,
      fencedWrites: this.#options.fences?.refusedWrites ?? 0, shardsFenced: this.#handoff.shardsFenced, ...this.#soft.stats(),
    };
  }

  /**
   * Graceful stop, in hand-off order: refuse new commands and stop firing timers; let the
   * log finish the batches in flight and commit them (still a member of the group, so still
   * the only owner); fence every shard (asks fail with ShardHandoffError, nothing is
   * activated); snapshot and stop the entities; only then leave the group, so the next
   * owner of a shard starts after this node has stopped serving it and from its last commit.
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#timers.stopScan();
    this.#handoff.signal();
    await this.#options.log.drain?.();
    this.#closed = true;
    this.#handoff.close();
    await this.#options.host.stopAll();
    await this.#handoff.letGoAll();
    await this.#options.log.stop();
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      pending.reject(new NodeStoppingError('node is shutting down; the command may still be applied by the shard\'s next owner'));
      this.#pending.delete(id);
    }
  }

  async #runService(requester: EntityRef, name: string, payload: unknown, trace?: string, at?: number): Promise<void> {
    const service = this.#options.services?.[name];
    if (!service) { this.#options.onError?.(new Error(`no service "${name}"`), `request from ${entityKey(requester)}`); return; }
    // A deferred request waits in memory (unref'd: it never keeps a stopping process alive);
    // a node that stops meanwhile drops it, and the requester's own retry covers that.
    // Even one due now waits a turn: it is asked for from inside the requester's step, and a
    // service that reads the requester (the batch reads its area's window) must see that step's state.
    // Node's timers run on their own clock and can fire a millisecond before `now` reaches
    // `at` (CI saw -1 ms): a wake-up that comes early waits again.
    if (at !== undefined) {
      do await new Promise<void>((resolve) => { setTimeout(resolve, Math.max(0, at - this.#now())).unref(); });
      while (this.#now() < at && !this.#closed);
    }
    if (this.#closed) return;
    // Active while the service runs, so its remote asks and its answer's tell continue the requester's trace.
    const span = trace === undefined
      ? undefined
      : startSpan(`service ${name}`, SpanKind.INTERNAL, { 'dispatch.entity': entityKey(requester) }, trace);
    try {
      await withSpan(span, async () => {
        const answer = await service(payload, {
          now: this.#now(), requester, ask: (to, query) => this.askSoon(to, query), askNow: (to, query) => this.askNow(to, query),
        });
        if (answer !== undefined) await this.tell(requester, answer);
      });
      endSpan(span);
    } catch (error) {
      endSpan(span, error);
      // The requester holds a timer to ask again; a failed search is not fatal.
      this.#options.onError?.(error, `service ${name} for ${entityKey(requester)}`);
    }
  }

  #checkAccepting(): void {
    if (this.#stopping) throw new NodeStoppingError('node is shutting down and accepts no commands; another node takes them');
  }

  /**
   * An ask from another node. A shard in hand-off here is waited for only half the ask
   * timeout, so the asker hears ShardHandoffError (and looks for the new owner) before its
   * own timeout.
   */
  #askFromRemote(to: EntityRef, query: unknown, trace?: string): Promise<unknown> {
    if (trace === undefined) return this.#answerRemote(to, query);
    const span = startSpan(`ask ${to.kind}`, SpanKind.SERVER, { 'dispatch.entity': entityKey(to) }, trace);
    return endWith(span, this.#answerRemote(to, query));
  }

  async #answerRemote(to: EntityRef, query: unknown): Promise<unknown> {
    // An entity active here, of a shard served here, answers at once with its shard read from
    // its activation, as askNow does locally: only the asks of other nodes hashed every key
    // (a cell's through H3) to find a shard the activation already knew.
    const now = this.#options.host.queryServed(to, this.#serves, query);
    if (now !== NOT_NOW) return now;
    const shard = this.shardOf(to);
    const deadline = Date.now() + this.#options.askTimeoutMs / 2;
    for (;;) {
      if (this.#handoff.holds(shard)) {
        const answer = await this.#answerLocally(to, shard, query, deadline + this.#options.askTimeoutMs / 2);
        if (answer.given) return answer.value;
        continue;
      }
      if (!this.#handoff.handingOff(shard)) throw new NotOwnerError(`this node does not own shard ${shard}`);
      await this.#handoff.awaitChange(shard, deadline, entityKey(to));
    }
  }

  /**
   * Asks the local entity; the answer is given only if the shard was not fenced while the
   * entity computed it (else it may be older than what a new owner has handled since).
   */
  async #answerLocally(to: EntityRef, shard: ShardId, query: unknown, deadline: number): Promise<{ given: boolean; value?: unknown }> {
    const now = this.#options.host.queryNow(to, shard, query);
    if (now !== NOT_NOW) return { given: true, value: now };
    const fence = this.#handoff.fence;
    const value = await withTimeout(
      this.#options.host.query(to, shard, query), Math.max(1, deadline - Date.now()), `ask to ${entityKey(to)}`,
    );
    if (fence !== this.#handoff.fence || !this.#handoff.holds(shard)) return { given: false };
    return { given: true, value };
  }

  async #sendTells(tells: readonly OutboundTell[], trace?: string): Promise<void> {
    const at = this.#now();
    // Traced: one producer span per tell, child of the handling that told it, named in the envelope.
    const traced = trace !== undefined && tracingEnabled();
    const spans: (Span | undefined)[] = [];
    const entries = tells.map((t) => {
      const shard = this.shardOf(t.to);
      const span = traced ? appendSpan(t.id, t.to, t.message, shard, trace) : undefined;
      if (span) spans.push(span);
      const command: CommandEnvelope = {
        id: t.id, to: t.to, message: t.message, at, ...(t.origin ? { origin: t.origin } : {}), ...traceField(span),
      };
      return { shard, command };
    });
    try {
      await this.#options.log.appendMany(entries);
    } catch (error) {
      for (const span of spans) endSpan(span, error);
      throw new LogUnavailableError(
        `the command log did not take ${tells.length} tell(s): ${(error as Error)?.message ?? error}`, { cause: error },
      );
    }
    for (const span of spans) endSpan(span);
  }

  /**
   * Entities of one shard run concurrently; each entity sees its own commands in log order.
   * True when every record was handled (and the batch committed); false when the shard
   * stopped being served here midway (revoked, fenced, paused): the rest is left to whoever
   * serves it next, from the last commit, and nothing is committed.
   */
  async #handleRecords(shard: ShardId, records: readonly LogRecord[], heartbeat?: () => Promise<void>): Promise<boolean> {
    const byEntity = new Map<EntityKey, LogRecord[]>();
    for (const record of records) {
      const key = entityKey(record.command.to);
      const list = byEntity.get(key);
      if (list) list.push(record); else byEntity.set(key, [record]);
    }
    let abandoned = false;
    // Settled, not raced: nothing of this batch may still run when the log delivers it again.
    const settled = await Promise.allSettled([...byEntity.values()].map(async (list) => {
      for (const record of list) {
        // A shard revoked mid-batch is left to its new owner, which resumes from the
        // last commit; handling more here would re-activate entities it now owns.
        if (!this.#handoff.holds(shard)) { abandoned = true; return; }
        await this.#handleOne(shard, record, heartbeat);
      }
    }));
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) {
      // A refused write (another node took the shard), or a retry cut short by a hand-off.
      if (failed.reason instanceof ShardFencedError || !this.#handoff.holds(shard)) return false;
      throw failed.reason;
    }
    if (abandoned) return false;
    const last = records.at(-1);
    if (last) await this.#options.log.commit(shard, last.offset);
    return true;
  }

  /**
   * Handles one command until it has an outcome. A retriable failure is tried again
   * with capped backoff while the shard waits (marked stuck meanwhile); a permanent
   * one, or a retriable one that outlasts `maxAttempts`, is dead-lettered and the
   * shard goes on. If the dead letter cannot be written either, the shard keeps
   * waiting: the command is never dropped.
   */
  async #handleOne(shard: ShardId, record: LogRecord, heartbeat?: () => Promise<void>): Promise<void> {
    if (record.command.trace === undefined) return this.#handleRecord(shard, record, heartbeat);
    // The consumer side of the envelope's trace: the entity is handed the handling span's
    // traceparent, so the tells, requests and notifications it causes are its children.
    const span = handleSpan(record, this.nodeId);
    if (!span) return this.#handleRecord(shard, record, heartbeat);
    const traced = { ...record, command: { ...record.command, ...traceField(span) } };
    return endWith(span, this.#handleRecord(shard, traced, heartbeat, span));
  }

  async #handleRecord(shard: ShardId, record: LogRecord, heartbeat?: () => Promise<void>, span?: Span): Promise<void> {
    const { command } = record;
    const to = command.to;
    if (!this.#options.host.knows(to.kind)) {
      const message = isUndecodable(command)
        ? `the record at offset ${record.offset} of shard ${shard} is not a command: ${(command.message as UndecodableMessage).reason}`
        : `no entity kind "${to.kind}"`;
      const failure: Failure = { kind: 'undecodable', retriable: false, message };
      const letter = await this.#deadLetter(shard, record, failure, 1, heartbeat);
      this.#settle(command.id, command.replyTo, { status: 'failed', failure, deadLetter: letter });
      return;
    }
    const delays = this.#backoff();
    const maxAttempts = this.#options.maxAttempts ?? 20;
    try {
      for (let attempt = 1; ; attempt++) {
        const result = await this.#options.host.command(to, shard, (done) => ({ t: 'command', command, done: done as never }))
          .catch((error: unknown): CommandResult => ({ status: 'failed', failure: failureOf(error) }));
        span?.setAttribute('dispatch.outcome', result.status);
        if (result.status !== 'failed') {
          if (result.status === 'duplicate') this.#duplicates++; else this.#handled++;
          this.#settle(command.id, command.replyTo, result);
          return;
        }
        const failure = result.failure ?? { kind: 'unknown', retriable: true, message: 'failed' };
        // Another node owns the shard now: the command is its to handle, not a dead letter.
        if (failure.kind === 'shard_fenced') {
          throw new ShardFencedError(shard, undefined, `command ${command.id} to ${entityKey(to)}: ${failure.message}`);
        }
        if (!failure.retriable || (attempt >= maxAttempts && this.#options.deadLetters)) {
          const letter = await this.#deadLetter(shard, record, failure, attempt, heartbeat);
          this.#settle(command.id, command.replyTo, { status: 'failed', failure, deadLetter: letter });
          return;
        }
        // Leave the offset uncommitted; the entity recovers from its journal on the
        // next attempt, so nothing is half-applied.
        if (!this.#handoff.holds(shard) || this.#stopping) {
          throw new Error(`command ${command.id} left unhandled (shard ${shard} moved or node stopping): ${failure.message}`);
        }
        this.#retried++;
        if (!this.#stuck.has(shard)) this.#stuck.set(shard, { since: this.#now(), failure: failure.kind });
        const delay = delays.next().value;
        this.#options.onError?.(
          new Error(failure.message),
          `command ${command.id} to ${entityKey(to)} failed (${failure.kind}, attempt ${attempt}); retrying in ${delay} ms`,
        );
        await pause(delay, heartbeat);
      }
    } finally {
      this.#stuck.delete(shard);
    }
  }

  /** Capped exponential backoff for everything the region retries: retryMinMs, doubling, up to retryMaxMs. */
  #backoff(): Generator<number, never> {
    return backoff(this.#options.retryMinMs ?? 50, this.#options.retryMaxMs ?? 5_000);
  }

  /** Sets a command aside; keeps trying while the store itself is down (the command is never dropped). */
  async #deadLetter(
    shard: ShardId, record: LogRecord, failure: Failure, attempts: number, heartbeat?: () => Promise<void>,
  ): Promise<string | undefined> {
    const store = this.#options.deadLetters;
    const letter: DeadLetter = {
      id: record.command.id, shard, offset: record.offset, command: record.command,
      failure: { kind: failure.kind, message: failure.message }, attempts, at: this.#now(),
    };
    this.#options.onError?.(
      new Error(failure.message),
      `command ${letter.id} to ${entityKey(record.command.to)} dead-lettered (${failure.kind} after ${attempts} attempt(s))`,
    );
    if (!store) return undefined;
    for (const delay of this.#backoff()) {
      try {
        await store.add(letter);
        this.#deadLettered++;
        return letter.id;
      } catch (error) {
        if (error instanceof ShardFencedError || !this.#handoff.holds(shard) || this.#stopping) {
          throw new Error(`dead letter ${letter.id} not written and shard ${shard} released`, { cause: error });
        }
        if (!this.#stuck.has(shard)) this.#stuck.set(shard, { since: this.#now(), failure: 'dead_letter_store_unavailable' });
        this.#options.onError?.(error, `dead letter ${letter.id} could not be written; retrying`);
        await pause(delay, heartbeat);
      }
    }
  }

  #settle(commandId: string, replyTo: string | undefined, result: CommandResult): void {
    if (!replyTo) return;
    if (replyTo === this.nodeId) { this.#resolvePending(commandId, result); return; }
    this.#options.remote?.reply(replyTo, commandId, result).catch((e) => this.#options.onError?.(e, `reply to ${replyTo}`));
  }

  #resolvePending(commandId: string, result: CommandResult): void {
    const pending = this.#pending.get(commandId);
    if (!pending) return;
    clearTimeout(pending.timer);
    this.#pending.delete(commandId);
    pending.resolve(result);
  }

}

/** The type a message names, for span attributes (domain messages are `{ type, ... }`). */
function messageType(message: unknown): string {
  const type = (message as { type?: unknown } | null)?.type;
  return typeof type === 'string' ? type : 'unknown';
}

/** A producer span for a command going into the log: child of `trace`, or of the span active here. */
function appendSpan(id: string, to: EntityRef, message: unknown, shard: ShardId, trace?: string): Span | undefined {
  if (!tracingEnabled()) return undefined; // before the attributes are built: free when off
  return startSpan('command.append', SpanKind.PRODUCER, {
    'messaging.operation.type': 'send', 'messaging.message.id': id, 'messaging.destination.partition.id': String(shard),
    'dispatch.entity': entityKey(to), 'dispatch.message.type': messageType(message),
  }, trace);
}

/** The consumer span of a traced command, on the node that owns its entity. */
function handleSpan(record: LogRecord, nodeId: NodeId): Span | undefined {
  if (!tracingEnabled()) return undefined;
  const { command } = record;
  return startSpan('command.handle', SpanKind.CONSUMER, {
    'messaging.operation.type': 'process', 'messaging.message.id': command.id,
    'messaging.destination.partition.id': String(record.shard), 'dispatch.entity': entityKey(command.to),
    'dispatch.message.type': messageType(command.message), 'dispatch.node.id': nodeId,
  }, command.trace);
}

/** Waits, telling the log the consumer is alive about once a second meanwhile. */
async function pause(ms: number, heartbeat?: () => Promise<void>): Promise<void> {
  for (let left = ms; left > 0; left -= 1_000) {
    await sleep(Math.min(left, 1_000));
    await heartbeat?.();
  }
}

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new AskTimeoutError(`${what} timed out after ${ms} ms`)), ms);
    promise.then(
      (v) => { clearTimeout(timer); resolve(v); },
      (e) => { clearTimeout(timer); reject(e); },
    );
  });
}

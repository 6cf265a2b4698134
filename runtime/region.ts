// The shard region: a node's view of the whole entity space.
//
// `tell` appends a command to its shard's partition and returns once it is
// durable; whichever node owns the shard consumes it, hands it to the entity and
// commits the offset only after the entity has persisted what it changed and
// its outgoing tells are themselves durable (at-least-once end to end; entities
// drop duplicates by command id). `request` is a tell whose outcome is sent
// back to the asking node. `ask` is a read-only query answered by the owner
// directly, never through the log. `tellSoft` carries soft state (GPS fixes, a
// driver's copy in its cell): no command id, no dedupe, no journal; straight to the
// entity when this node serves its shard, else batched per shard into one log record
// for the owner. A soft message may be lost (a rebalance, a crash): the next one
// repairs it.

import { randomUUID } from 'node:crypto';
import type { EntityRef, Service } from '../actors/behavior.ts';
import { entityKey, parseEntityKey, shardOf, type EntityKey, type NodeId, type Placement, type ShardId } from './entity.ts';
import { failureOf, type OutboundTell, type SoftOutcome } from './entity-actor.ts';
import { LogUnavailableError, RebalanceStepError, ShardFencedError, ShardHandoffError } from './errors.ts';
import type { ShardFences } from './fencing.ts';
import type {
  CommandEnvelope, CommandLog, CommandResult, DeadLetter, DeadLetterStore, Failure, LogRecord, Notifier, Reminder, ReminderStore,
  RemoteChannel, ShardAssignment, SoftMessage,
} from './ports.ts';
import { NOT_NOW, type ShardHost } from './shard-host.ts';
import { backoff, sleep } from './backoff.ts';
import { timerCommandId, type TimerFire } from './timers.ts';
import { endSpan, endWith, SpanKind, startSpan, traceField, tracingEnabled, withSpan, type Span } from './tracing.ts';

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
   * With it, a gained shard is consumed only once a new epoch is taken for it, and the first
   * write of a shard that storage refuses (another node took it) stops the shard here at once.
   */
  readonly fences?: ShardFences;
}

/**
 * What became of a soft message here: `applied` by its entity on this node; `durable` when
 * its outcome had to be journaled, so it was sent as a command instead (and applied as one);
 * `forwarded` in a soft record to the shard's owner; `dropped` when nobody could take it now
 * (the entity was failing or being stopped, the shard between owners on a node without a
 * log to forward it through).
 */
export type SoftDelivery = SoftOutcome | 'forwarded';

/** Soft messages per log record at most (a fix is ~150 bytes: well under a request's budget). */
const SOFT_RECORD_MAX = 1_000;
/** Entities' soft tells in flight on a node before senders wait (briefly) for room. */
const SOFT_IN_FLIGHT_MAX = 5_000;
const SOFT_WAIT_MS = 1_000;

export interface RegionStats {
  /** Soft messages applied here, sent as commands because their outcome was durable, forwarded to their owner, dropped. */
  readonly softApplied: number;
  readonly softDurable: number;
  readonly softForwarded: number;
  readonly softDropped: number;
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

/** How long without an assignment before /ready says so (a normal rebalance takes seconds). */
const REBALANCE_GRACE_MS = 20_000;

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
  #assignment: ShardAssignment = { owned: [], placement: new Map(), nodes: [] };
  #owned = new Set<ShardId>();
  #draining = new Set<ShardId>();
  /**
   * The hand-off fence (see #holds). `#rebalancing`: a rebalance has begun and any owned
   * shard may be lost. `#joined`: the shards the latest join assigned (undefined with a log
   * that has no joins, the in-process one). `#closed`: the node is stopping and its
   * entities are being stopped. `#epoch` counts fences, so an answer computed across one is
   * not given.
   */
  #rebalancing = false;
  /** Since when no assignment has come (a rebalance, or a consumer out of the group after a crash). */
  #rebalancingSince: number | undefined;
  #joined: Set<ShardId> | undefined;
  #closed = false;
  #epoch = 0;
  /** Timers that came due on shards fenced by a rebalance: fired if the shard is kept. */
  #deferredFires: { self: EntityRef; name: string; at: number }[] = [];
  /** Resolved on every change of ownership or fence (asks in a hand-off wait on it). */
  #changed = deferred();
  #started = false;
  #stopping = false;
  #handled = 0;
  #duplicates = 0;
  #retried = 0;
  #deadLettered = 0;
  #rebalanceFailures = 0;
  #shardsFenced = 0;
  #softApplied = 0;
  #softDurable = 0;
  #softForwarded = 0;
  #softDropped = 0;
  /** Soft messages for shards served elsewhere, per shard, until this tick ends (one record each). */
  readonly #softOut = new Map<ShardId, { messages: SoftMessage[]; done: Promise<void>; settle: (error?: unknown) => void }>();
  #softFlush: NodeJS.Immediate | undefined;
  /** Soft tells from entities not handled yet, and senders waiting for fewer (see #softRoom). */
  #softInFlight = 0;
  #softWaiting: (() => void)[] = [];
  /** Shard -> since when its current command has been failing, and why. */
  readonly #stuck = new Map<ShardId, { since: number; failure: string }>();
  #reminderScan: NodeJS.Timeout | undefined;
  /** Gained shards not set up yet (their reminders not read): since when, and why the last attempt failed. */
  readonly #gaining = new Map<ShardId, { since: number; failure?: string }>();

  constructor(options: RegionOptions) {
    this.#options = options;
    this.nodeId = options.nodeId;
    this.#now = options.now ?? Date.now;
    options.host.attach({
      send: (_from, tells, trace) => this.#sendTells(tells, trace),
      sendSoft: (from, tells) => {
        const at = this.#now();
        for (const t of tells) {
          this.#softInFlight++;
          this.#soft({ to: t.to, message: t.message, at })
            .catch((e) => options.onError?.(e, `soft tell from ${entityKey(from)} to ${entityKey(t.to)}`))
            .finally(() => this.#softSettled());
        }
        return this.#softRoom();
      },
      notify: (userId, message, trace) => {
        options.notifier.publish(userId, message, trace).catch((e) => options.onError?.(e, `notify ${userId}`));
      },
      publish: (topic, event, from) => {
        for (const listener of this.#listeners) {
          try { listener(topic, event, from); } catch (e) { options.onError?.(e, `event listener for ${topic}`); }
        }
      },
      request: (self, service, payload, trace) => void this.#runService(self, service, payload, trace),
      remember: (self, name, dueAt) =>
        options.reminders.set({ shard: this.shardOf(self), entityKey: entityKey(self), name, dueAt }),
      forget: (self, name) => {
        options.reminders.clear(entityKey(self), name, this.shardOf(self)).catch((e) => options.onError?.(e, `clear reminder ${name}`));
      },
      onTimer: (self, name, at) => void this.#fire(self, name, at),
    });
    options.fences?.onFenced((shard) => this.#fenced(shard));
  }

  /**
   * Storage refused a write of this shard: another node took it (a newer epoch) while this
   * one still believed it owned it. The shard is dropped now, before anything else runs:
   * records, timers, asks and reminder scans all check ownership; its entities are stopped
   * without a snapshot (it would be refused too) and its timers disarmed.
   */
  #fenced(shard: ShardId): void {
    if (!this.#owned.has(shard)) return;
    this.#owned.delete(shard);
    this.#stuck.delete(shard);
    this.#shardsFenced++;
    this.#options.onError?.(
      new ShardFencedError(shard, undefined, 'a write'), `shard ${shard} was taken by another node; stopping it here`,
    );
    this.#options.host.stopShards([shard], { snapshot: false })
      .catch((e) => this.#options.onError?.(e, `stopping fenced shard ${shard}`));
  }

  shardOf(ref: EntityRef): number {
    return shardOf(ref, this.#options.placement);
  }

  get shards(): number {
    return this.#options.placement.shards;
  }

  /** Starts consuming the shards this node is assigned. */
  async start(): Promise<void> {
    await this.#options.remote?.serve({
      ask: (to, query, trace) => this.#askFromRemote(to, query, trace),
      reply: (commandId, result) => this.#resolvePending(commandId, result),
    });
    await this.#options.log.start({
      onRecords: (shard, records, heartbeat) => this.#handleRecords(shard, records, heartbeat),
      onAssignment: (assignment, revoked, gained) => this.#reassign(assignment, revoked, gained),
      onRebalancing: () => this.#onRebalancing(),
      onJoined: (owned) => this.#onJoined(owned),
      onPlacement: (map) => { this.#assignment = { ...this.#assignment, ...map }; this.#signal(); },
      onSoft: (shard, messages) => this.#handleSoft(shard, messages),
    });
    this.#started = true;
    // Reminders are read when a shard is gained and again from time to time, so an
    // entity whose timer was missed (it failed, or was passivated poisoned) comes back.
    // Looking one interval ahead, so an entity passivated with a far-off timer is back before it is due.
    const every = this.#options.reminderScanMs ?? 30_000;
    this.#reminderScan = setInterval(() => void this.#activateReminded([...this.#owned], this.#now() + every), every);
    this.#reminderScan.unref();
  }

  /** Shards whose current command keeps failing, or whose set-up after a rebalance does (for /metrics and /ready). */
  stuckShards(): StuckShard[] {
    const now = this.#now();
    const gaining = [...this.#gaining].filter(([, g]) => g.failure !== undefined)
      .map(([shard, g]) => ({ shard, seconds: (now - g.since) / 1000, failure: 'rebalance_failed' }));
    return [...[...this.#stuck].map(([shard, s]) => ({ shard, seconds: (now - s.since) / 1000, failure: s.failure })), ...gaining];
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
    // A rebalance takes a few seconds; one that never ends (the consumer out of the group) is not ready.
    const since = this.#rebalancingSince;
    if (since !== undefined && this.#now() - since > REBALANCE_GRACE_MS) {
      return `no shard assignment for ${Math.round((this.#now() - since) / 1000)} s: rebalancing, or out of the consumer group`;
    }
    if (this.#gaining.size === 0) return undefined;
    const shards = [...this.#gaining.keys()].sort((a, b) => a - b).join(', ');
    const failure = [...this.#gaining.values()].find((g) => g.failure)?.failure;
    return `shard(s) ${shards} gained but not consumed yet${failure ? `: setting them up failed (${failure}); retrying` : ''}`;
  }

  get assignment(): ShardAssignment {
    return this.#assignment;
  }

  owns(shard: ShardId): boolean {
    return this.#owned.has(shard);
  }

  onDomainEvent(listener: DomainEventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Appends a command; resolves once it is durable in the log. */
  async tell(to: EntityRef, message: unknown, options: { id?: string } = {}): Promise<string> {
    this.#checkAccepting();
    const id = options.id ?? randomUUID();
    const shard = this.shardOf(to);
    const span = appendSpan(id, to, message, shard);
    const command: CommandEnvelope = { id, to, message, at: this.#now(), ...traceField(span) };
    await endWith(span, this.#options.log.append(shard, command));
    return command.id;
  }

  /**
   * Soft delivery, for soft state such as GPS fixes: no command id, no dedupe, no journal
   * row. When this node serves the entity's shard (embedded: always), the message goes
   * straight to the entity (no log record) and this resolves once it is handled; else it is
   * batched with the others of its shard into one log record per tick for the owner, and
   * this resolves once the log has it. Never applied on a node that does not serve the
   * shard. A message whose outcome would be journaled (events, a refusal, timers, durable
   * tells) is not applied softly: it is sent as a command (`durable`) and applied as one.
   * May be lost on a rebalance or a crash (`dropped`, or a forwarded record the new owner
   * does not get to): receivers keep the newest by the message's own timestamp, and the
   * next message repairs it.
   */
  tellSoft(to: EntityRef, message: unknown): Promise<SoftDelivery> {
    this.#checkAccepting();
    return this.#soft({ to, message, at: this.#now() });
  }

  /** A tell whose outcome (applied, rejected with a reason, or the entity's reply) comes back here. */
  async request(to: EntityRef, message: unknown, options: { id?: string; timeoutMs?: number } = {}): Promise<CommandResult> {
    this.#checkAccepting();
    const id = options.id ?? randomUUID();
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
    return this.#answerNow<A>(to, this.#askShard(to), query);
  }

  #answerNow<A>(to: EntityRef, shard: ShardId, query: unknown): { readonly value: A } | undefined {
    if (!this.#holds(shard)) return undefined;
    const value = this.#options.host.queryNow(to, shard, query);
    return value === NOT_NOW ? undefined : { value: value as A };
  }

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
    const shard = this.#askShard(to);
    const now = this.#answerNow<A>(to, shard, query);
    if (now) return now.value;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#holds(shard)) {
        const answer = await this.#answerLocally(to, shard, query, deadline);
        if (answer.given) return answer.value as A;
        continue;
      }
      const owner = this.#assignment.placement.get(shard);
      const remote = this.#options.remote;
      if (this.#handingOff(shard) || !owner || owner === this.nodeId || !remote) {
        if (!remote && !this.#owned.has(shard) && !this.#rebalancing) {
          throw new NotOwnerError(`shard ${shard} of ${entityKey(to)} has no reachable owner right now`);
        }
        await this.#awaitHandoff(shard, deadline, to);
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
        await this.#awaitHandoff(shard, deadline, to, Math.min(deadline, Date.now() + 250));
      }
    }
  }

  /**
   * Shards of entities asked lately. shardOf hashes with BigInt (and H3 for cells), which is
   * most of what an ask answered locally costs; placement never changes for a region, so an
   * entry never goes stale. Bounded by starting over.
   */
  readonly #askShards = new Map<EntityKey, ShardId>();

  #askShard(to: EntityRef): ShardId {
    const key = entityKey(to);
    let shard = this.#askShards.get(key);
    if (shard === undefined) {
      if (this.#askShards.size >= 50_000) this.#askShards.clear();
      shard = this.shardOf(to);
      this.#askShards.set(key, shard);
    }
    return shard;
  }

  stats(): RegionStats {
    return {
      commandsHandled: this.#handled, commandsDuplicate: this.#duplicates, commandsRetried: this.#retried,
      commandsDeadLettered: this.#deadLettered, rebalanceFailures: this.#rebalanceFailures, owned: [...this.#owned],
      fencedWrites: this.#options.fences?.refusedWrites ?? 0, shardsFenced: this.#shardsFenced,
      softApplied: this.#softApplied, softDurable: this.#softDurable, softForwarded: this.#softForwarded, softDropped: this.#softDropped,
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
    if (this.#reminderScan) clearInterval(this.#reminderScan);
    this.#signal();
    await this.#options.log.drain?.();
    this.#closed = true;
    this.#epoch++;
    this.#signal();
    await this.#options.host.stopAll();
    await this.#options.log.stop();
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      pending.reject(new Error('node is shutting down'));
      this.#pending.delete(id);
    }
  }

  async #runService(requester: EntityRef, name: string, payload: unknown, trace?: string): Promise<void> {
    const service = this.#options.services?.[name];
    if (!service) { this.#options.onError?.(new Error(`no service "${name}"`), `request from ${entityKey(requester)}`); return; }
    // Active while the service runs, so its remote asks and its answer's tell continue the requester's trace.
    const span = trace === undefined
      ? undefined
      : startSpan(`service ${name}`, SpanKind.INTERNAL, { 'dispatch.entity': entityKey(requester) }, trace);
    try {
      await withSpan(span, async () => {
        const answer = await service(payload, { now: this.#now(), requester, ask: (to, query) => this.askSoon(to, query) });
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
    if (this.#stopping) throw new Error('node is shutting down and accepts no commands');
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
    const shard = this.shardOf(to);
    const deadline = Date.now() + this.#options.askTimeoutMs / 2;
    for (;;) {
      if (this.#holds(shard)) {
        const answer = await this.#answerLocally(to, shard, query, deadline + this.#options.askTimeoutMs / 2);
        if (answer.given) return answer.value;
        continue;
      }
      if (!this.#handingOff(shard)) throw new NotOwnerError(`this node does not own shard ${shard}`);
      await this.#awaitHandoff(shard, deadline, to);
    }
  }

  /**
   * Asks the local entity; the answer is given only if the shard was not fenced while the
   * entity computed it (else it may be older than what a new owner has handled since).
   */
  async #answerLocally(to: EntityRef, shard: ShardId, query: unknown, deadline: number): Promise<{ given: boolean; value?: unknown }> {
    const now = this.#options.host.queryNow(to, shard, query);
    if (now !== NOT_NOW) return { given: true, value: now };
    const epoch = this.#epoch;
    const value = await withTimeout(
      this.#options.host.query(to, shard, query), Math.max(1, deadline - Date.now()), `ask to ${entityKey(to)}`,
    );
    if (epoch !== this.#epoch || !this.#holds(shard)) return { given: false };
    return { given: true, value };
  }

  /** Whether this node owned the shard and cannot serve it now because it is moving (or the node stopping). */
  #handingOff(shard: ShardId): boolean {
    if (this.#closed) return this.#owned.has(shard);
    return (this.#owned.has(shard) || this.#rebalancing) && !this.#holds(shard);
  }

  /** Waits for the hand-off to move on (until `until`, at most the deadline); past the deadline, ShardHandoffError. */
  async #awaitHandoff(shard: ShardId, deadline: number, to: EntityRef, until = deadline): Promise<void> {
    const left = Math.min(until, deadline) - Date.now();
    if (this.#closed || left <= 0) {
      throw new ShardHandoffError(
        `shard ${shard} of ${entityKey(to)} is being handed to another node${this.#closed ? ' (this node is stopping)' : ''}; ask again`,
      );
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#changed.promise, new Promise((r) => { timer = setTimeout(r, left); })]);
    clearTimeout(timer);
  }

  #signal(): void {
    const changed = this.#changed;
    this.#changed = deferred();
    changed.resolve();
  }

  /** A rebalance began: every shard is fenced until the join says which stay (see KafkaCommandLog's assigner). */
  #onRebalancing(): void {
    this.#rebalancingSince ??= this.#now();
    this.#rebalancing = true;
    this.#epoch++;
    this.#signal();
  }

  /** The join completed: kept shards resume (and the timers they deferred fire); lost ones stay fenced. */
  #onJoined(owned: readonly ShardId[]): void {
    this.#joined = new Set(owned);
    this.#rebalancing = false;
    this.#rebalancingSince = undefined;
    this.#epoch++;
    this.#signal();
    const deferred = this.#deferredFires;
    this.#deferredFires = [];
    for (const f of deferred) if (this.#holds(this.shardOf(f.self))) void this.#fire(f.self, f.name, f.at);
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

  async #soft(m: SoftMessage): Promise<SoftDelivery> {
    const shard = this.shardOf(m.to);
    if (this.#holds(shard)) return this.#applySoft(shard, m);
    // Served elsewhere, or between owners: the log takes it to whoever serves the shard next.
    if (!this.#options.log.appendSoft || this.#closed) { this.#softDropped++; return 'dropped'; }
    await this.#queueSoft(shard, m);
    this.#softForwarded++;
    return 'forwarded';
  }

  /** Hands a soft message to its entity here; an outcome that must be journaled goes through the log as a command. */
  async #applySoft(shard: ShardId, m: SoftMessage): Promise<SoftDelivery> {
    if (!this.#options.host.knows(m.to.kind)) { this.#softDropped++; return 'dropped'; }
    const outcome = await this.#options.host.soft(m.to, shard, m.message).catch((): SoftOutcome => 'dropped');
    if (outcome === 'applied') this.#softApplied++;
    else if (outcome === 'dropped') this.#softDropped++;
    else {
      await this.#options.log.append(shard, { id: randomUUID(), to: m.to, message: m.message, at: m.at });
      this.#softDurable++;
    }
    return outcome;
  }

  /**
   * Backpressure for entities' soft tells: they are not waited for (a sender must not wait
   * for its receiver's mailbox: two entities telling each other would deadlock), but past
   * SOFT_IN_FLIGHT_MAX unhandled ones a sender waits for room, at most SOFT_WAIT_MS, so a
   * fast sender (drivers) cannot queue unboundedly ahead of slower receivers (cells).
   */
  #softRoom(): Promise<void> | undefined {
    if (this.#softInFlight < SOFT_IN_FLIGHT_MAX) return undefined;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, SOFT_WAIT_MS);
      this.#softWaiting.push(() => { clearTimeout(timer); resolve(); });
    });
  }

  #softSettled(): void {
    this.#softInFlight--;
    if (this.#softInFlight < SOFT_IN_FLIGHT_MAX / 2 && this.#softWaiting.length > 0) {
      const waiting = this.#softWaiting;
      this.#softWaiting = [];
      for (const go of waiting) go();
    }
  }

  /** Soft messages of a record from another node, for a shard this node serves. */
  async #handleSoft(shard: ShardId, messages: readonly SoftMessage[]): Promise<void> {
    await Promise.all(messages.map(async (m) => {
      // A shard lost meanwhile (or a record naming an entity of another shard) is not served here.
      if (!this.#holds(shard) || this.shardOf(m.to) !== shard) { this.#softDropped++; return; }
      await this.#applySoft(shard, m).catch((e) => {
        this.#softDropped++;
        this.#options.onError?.(e, `soft message to ${entityKey(m.to)}: sending it as a command failed`);
      });
    }));
  }

  /** Soft messages for another node's shard wait for the end of this tick, then go as one record per shard. */
  #queueSoft(shard: ShardId, m: SoftMessage): Promise<void> {
    let batch = this.#softOut.get(shard);
    if (!batch) {
      let settle!: (error?: unknown) => void;
      const done = new Promise<void>((resolve, reject) => { settle = (error) => (error === undefined ? resolve() : reject(error)); });
      batch = { messages: [], done, settle };
      this.#softOut.set(shard, batch);
      this.#softFlush ??= setImmediate(() => this.#flushSoft());
    }
    batch.messages.push(m);
    if (batch.messages.length >= SOFT_RECORD_MAX) { this.#softOut.delete(shard); this.#sendSoft(shard, batch); }
    return batch.done;
  }

  #flushSoft(): void {
    this.#softFlush = undefined;
    const batches = [...this.#softOut];
    this.#softOut.clear();
    for (const [shard, batch] of batches) this.#sendSoft(shard, batch);
  }

  #sendSoft(shard: ShardId, batch: { messages: SoftMessage[]; settle: (error?: unknown) => void }): void {
    this.#options.log.appendSoft!(shard, batch.messages).then(
      () => batch.settle(),
      (error: unknown) => batch.settle(new LogUnavailableError(
        `the command log did not take ${batch.messages.length} soft message(s): ${(error as Error)?.message ?? error}`, { cause: error },
      )),
    );
  }

  /** A due timer becomes a command in its entity's shard (see timers.ts). */
  async #fire(self: EntityRef, name: string, at: number): Promise<void> {
    const shard = this.shardOf(self);
    if (this.#stopping) return; // the reminder brings it back on the next owner
    if (!this.#holds(shard)) {
      // Fenced by a rebalance: fired if the shard stays here; else the new owner re-arms it.
      if (this.#rebalancing && this.#owned.has(shard)) this.#deferredFires.push({ self, name, at });
      return;
    }
    const fire: TimerFire = { $timer: name, at };
    for (const delay of this.#backoff()) {
      try {
        await this.#options.log.append(shard, { id: timerCommandId(self, name, at), to: self, message: fire, at: this.#now() });
        return;
      } catch (error) {
        // The reminder would bring it back after a restart; while this node runs, keep trying.
        if (!this.#holds(shard) || this.#stopping) return;
        this.#options.onError?.(error, `timer ${name} of ${entityKey(self)}: the log refused the fire command; retrying`);
        await sleep(delay);
      }
    }
  }

  /** Entities of one shard run concurrently; each entity sees its own commands in log order. */
  async #handleRecords(shard: ShardId, records: readonly LogRecord[], heartbeat?: () => Promise<void>): Promise<void> {
    const byEntity = new Map<EntityKey, LogRecord[]>();
    for (const record of records) {
      const key = entityKey(record.command.to);
      const list = byEntity.get(key);
      if (list) list.push(record); else byEntity.set(key, [record]);
    }
    let abandoned = false;
    await Promise.all([...byEntity.values()].map(async (list) => {
      for (const record of list) {
        // A shard revoked mid-batch is left to its new owner, which resumes from the
        // last commit; handling more here would re-activate entities it now owns.
        if (!this.#holds(shard)) { abandoned = true; return; }
        await this.#handleOne(shard, record, heartbeat);
      }
    }));
    const last = records.at(-1);
    if (last && !abandoned) await this.#options.log.commit(shard, last.offset);
  }

  /**
   * Whether this node serves the shard: owns it, is not draining it, and is not fenced (a
   * rebalance under way, a join that did not give it the shard, the node stopping). Timers,
   * asks, activations and commands of a shard not held wait or are left to the next owner.
   */
  #holds(shard: ShardId): boolean {
    return this.#owned.has(shard) && !this.#draining.has(shard) && !this.#rebalancing && !this.#closed
      && (this.#joined?.has(shard) ?? true);
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
      const failure: Failure = { kind: 'undecodable', retriable: false, message: `no entity kind "${to.kind}"` };
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
        if (!this.#holds(shard) || this.#stopping) {
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
        if (error instanceof ShardFencedError || !this.#holds(shard) || this.#stopping) {
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

  async #reassign(assignment: ShardAssignment, revoked: readonly ShardId[], gained: readonly ShardId[]): Promise<void> {
    for (const shard of revoked) this.#draining.add(shard);
    if (revoked.length > 0) { this.#epoch++; this.#signal(); }
    try {
      await this.#options.host.stopShards(revoked);
    } finally {
      for (const shard of revoked) { this.#owned.delete(shard); this.#draining.delete(shard); }
      this.#options.fences?.release(revoked);
    }
    this.#assignment = assignment;
    const fences = this.#options.fences;
    // With fencing, a shard is owned only under an epoch: a gained one once it is taken below.
    // A shard this node kept but lost its epoch for (fenced while it was paused, say: another
    // node took it in a generation this node missed) is taken again like a gained one, since
    // this assignment is newer than the fence; left dropped, nobody would serve it.
    for (const shard of assignment.owned) if (!fences || fences.holds(shard)) this.#owned.add(shard);
    this.#signal();
    const taken = fences ? [...new Set([...gained, ...assignment.owned.filter((s) => !fences.holds(s))])] : gained;
    for (const shard of this.#gaining.keys()) if (!this.#owned.has(shard) && !taken.includes(shard)) this.#gaining.delete(shard);
    for (const shard of taken) if (!this.#gaining.has(shard)) this.#gaining.set(shard, { since: this.#now() });
    if (taken.length === 0) return;
    try {
      if (fences) {
        await fences.acquire(taken, this.nodeId);
        for (const shard of taken) if (assignment.owned.includes(shard)) this.#owned.add(shard);
        this.#signal(); // asks waiting for these shards go on
      }
      await this.#activateGained(taken);
    } catch (error) {
      // The log tries again (ports.ts); meanwhile /ready and the stuck-shard gauge say why.
      const failure = error instanceof Error ? error.message : String(error);
      for (const shard of taken) { const g = this.#gaining.get(shard); if (g) g.failure = failure; }
      this.#rebalanceFailures++;
      throw new RebalanceStepError(`setting up gained shard(s) ${taken.join(', ')} failed: ${failure}`, { cause: error });
    }
    for (const shard of taken) this.#gaining.delete(shard);
  }

  /** Every entity with a reminder on a gained shard is activated; reminders that cannot be read fail the step. */
  async #activateGained(shards: readonly ShardId[]): Promise<void> {
    await this.#activate(await this.#options.reminders.forShards(shards));
  }

  /**
   * Entities with timers on the given shards are activated so their timers are armed
   * again: every reminder on a gained shard, and on a periodic scan those already due
   * (`dueBy`) whose entity is not active (its timer was lost: a failed fire, a poisoned
   * incarnation passivated with its timers disarmed).
   */
  async #activateReminded(shards: readonly ShardId[], dueBy: number): Promise<void> {
    if (shards.length === 0) return;
    // The scan comes again: a failure here is only reported.
    const reminders = await this.#options.reminders.forShards(shards)
      .catch((e) => { this.#options.onError?.(e, 'reading reminders'); return []; });
    await this.#activate(reminders, dueBy);
  }

  async #activate(reminders: readonly Reminder[], dueBy?: number): Promise<void> {
    const byKey = new Map<EntityKey, string[]>();
    for (const r of reminders) {
      if (dueBy === undefined || r.dueAt <= dueBy) byKey.set(r.entityKey, [...(byKey.get(r.entityKey) ?? []), r.name]);
    }
    await Promise.all([...byKey].map(async ([key, names]) => {
      const ref = parseEntityKey(key);
      if (!this.#options.host.knows(ref.kind) || (dueBy !== undefined && this.#options.host.isActive(ref))) return;
      const shard = this.shardOf(ref);
      // A shard lost (fenced, revoked) since the reminders were read is not woken here.
      if (!this.#holds(shard)) return;
      try {
        await this.#options.host.activate(ref, shard);
        // A reminder whose timer the entity no longer has was left by a lost delete: drop it,
        // or every scan would wake the entity again.
        const armed = new Set(this.#options.host.armedTimers(ref));
        for (const name of names) if (!armed.has(name)) await this.#options.reminders.clear(key, name, shard);
      } catch (e) {
        this.#options.onError?.(e, `activating ${key} for its timers`);
      }
    }));
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

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => { resolve = r; });
  return { promise, resolve };
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

// Hosts the entity actors of the shards this node owns.
//
// Entities are virtual actors: activated (spawnPersistent, recovered from
// snapshot + journal tail) on their first message, passivated when idle or
// when the node holds too many (passivation.ts), and stopped shard by shard when
// a shard moves away. nact drops messages sent to a stopped actor and never
// re-spawns one, so every delivery goes through this host, which follows each
// entity's lifecycle (activation.ts): it waits for a passivation in progress,
// re-activates on demand, and settles with an error every message a stopped
// actor never handled.
//
// Queries do not enter the mailbox of an active entity: they are answered from the
// state its actor last returned (Activation.current), as Orleans interleaves read-only
// requests. Between messages that state is immutable and this process is single-
// threaded, so a query sees a whole state, never half a command; it does not wait
// behind a command's storage writes, and sees the state from before that command until
// the command's write succeeded (see entityActor's onState). A poisoned incarnation's
// state is never served (Activation drops it on the poison event).

import { configurePersistence, dispatch, spawnPersistent, start, stop } from 'nact';
import type { AnyBehavior, EntityRef } from '../actors/behavior.ts';
import { entityKey, type EntityKey, type ShardId } from './entity.ts';
import {
  entityActor, freshIncarnation, type ActorHost, type ActorMessage, type EntityActor, type JournalRecord, type MessageDone,
  type SoftOutcome,
} from './entity-actor.ts';
import { JournalPersistenceEngine } from './persistence-engine.ts';
import { Activation as ActivationOf, RECOVERED, accepts } from './activation.ts';
import { idleVictims, leastRecentlyUsed, type NextTimerAt, type Visit } from './passivation.ts';
import { EntityTimers } from './timers.ts';
import { EntityStoppedError } from './errors.ts';
import type { CommandResult, Journal } from './ports.ts';
import { Semaphore } from './semaphore.ts';
import { ActiveEntities } from './active-entities.ts';
import { withoutChildMaps } from './nact-trim.ts';


const isPromise = <T>(x: T | Promise<T> | undefined): x is Promise<T> => typeof (x as { then?: unknown } | undefined)?.then === 'function';

/** Longest a turn spends hibernating entities (see #rest), ms. */
const REST_SLICE_MS = 2;

/** How long passivation waits for an entity's in-flight messages. */
const DRAIN_TIMEOUT_MS = 10_000;
type NactRef = Parameters<typeof dispatch>[0];

type Activation = ActivationOf<NactRef>;

/** Every shard served: queryNow's callers checked theirs. */
const served = () => true;

/** What queryNow returns when the entity must be activated (or finish passivating) before it can answer. */
export const NOT_NOW: unique symbol = Symbol('not answerable without activation');

export interface ShardHostOptions {
  readonly journal: Journal;
  readonly behaviors: readonly AnyBehavior[];
  readonly passivateAfterMs: number;
  readonly maxActiveEntities: number;
  readonly maxConcurrentRecoveries: number;
  readonly snapshotEvery: number;
  /**
   * An idle entity whose next timer is due within this stays in memory; one due later may be
   * passivated, and the region's reminder scan (which must run more often) brings it back.
   */
  readonly keepTimersWithinMs?: number;
  /**
   * An entity whose mailbox went unused for between one and two of these gives it up (see
   * #hibernate); default 1 s, so a busy entity keeps it and pays to spawn one at most once a
   * second.
   */
  readonly hibernateAfterMs?: number;
  readonly now?: () => number;
  readonly onError?: (error: unknown, context: string) => void;
}

/** Everything an entity may ask of the node beyond its own journal. */
export type NodeServices = Pick<ActorHost, 'send' | 'sendSoft' | 'notify' | 'publish' | 'remember' | 'forget' | 'request'> & {
  onTimer(self: EntityRef, name: string, at: number): void;
};

export interface ShardHostStats {
  readonly active: number;
  readonly activeByKind: Record<string, number>;
  readonly activeByShard: Map<ShardId, number>;
  /** Active entities holding a mailbox (nact's actor) now; the others hibernate (see #hibernate). */
  readonly mailboxes: number;
  readonly activations: number;
  readonly passivations: number;
  readonly engine: JournalPersistenceEngine['stats'];
}

export class ShardHost {
  readonly #options: ShardHostOptions;
  readonly #behaviors = new Map<string, AnyBehavior>();
  readonly #engine: JournalPersistenceEngine;
  readonly #system: NactRef;
  readonly #active = new ActiveEntities<Activation>();
  readonly #timers: EntityTimers<EntityRef>;
  readonly #recoveries: Semaphore;
  readonly #now: () => number;
  /** What every entity actor calls back into, made once the node's services are attached: one for all of them (each call names its entity). */
  #actorHostOf: ActorHost | undefined;
  /** The node's services, once attached: where a due timer goes. */
  #services: NodeServices | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  /** Entities whose mailbox went idle in this period of hibernateAfterMs, and in the one before (see #rest). */
  #idleNow = new Set<Activation>();
  #idleBefore = new Set<Activation>();
  /** Runs #rest while some entity with a mailbox is idle; unset otherwise (an idle node runs nothing). */
  #rester: NodeJS.Timeout | undefined;
  #activations = 0;
  #passivations = 0;
  /** Mailboxes spawned so far: each one's name among the actor system's children (see #spawn). */
  #spawned = 0;
  /** Set by stopAll: nothing new is activated while (and after) the host shuts down. */
  #closing = false;

  constructor(options: ShardHostOptions) {
    this.#options = options;
    for (const b of options.behaviors) this.#behaviors.set(b.kind, b);
    this.#engine = new JournalPersistenceEngine(options.journal);
    this.#system = start(configurePersistence(this.#engine as never)) as NactRef;
    this.#recoveries = new Semaphore(options.maxConcurrentRecoveries);
    this.#now = options.now ?? Date.now;
    this.#timers = new EntityTimers<EntityRef>(this.#now, (self, name, at) => this.#services?.onTimer(self, name, at));
  }

  /** Wires the node's services; the host is inert until then. */
  attach(services: NodeServices): void {
    this.#services = services;
    this.#actorHostOf = this.#actorHost(services);
    const every = Math.max(250, Math.min(this.#options.passivateAfterMs / 4, 10_000));
    this.#sweeper = setInterval(() => void this.#sweep(), every);
    this.#sweeper.unref();
  }

  knows(kind: string): boolean {
    return this.#behaviors.has(kind);
  }

  /** Delivers a command to an entity and resolves once it is handled and its effects are durable. */
  command(self: EntityRef, shard: ShardId, build: (done: MessageDone) => ActorMessage): Promise<CommandResult> {
    return this.#deliver(self, shard, build) as Promise<CommandResult>;
  }

  /**
   * Answers a query at once from the entity's current state if it is active here (recovered,
   * not poisoned, not passivating, the host not closing); else NOT_NOW, and `query` is the
   * way. Counts as use for passivation. Throws what the behavior's query throws.
   */
  queryNow(self: EntityRef, _shard: number, query: unknown): unknown {
    return this.queryServed(self, served, query);
  }

  /**
   * queryNow for an entity whose shard `serves` says is served now, its shard read from its
   * activation (the caller need not know it); NOT_NOW when it is not, as when not active here.
   */
  queryServed(self: EntityRef, serves: (shard: ShardId) => boolean, query: unknown): unknown {
    if (this.#closing) return NOT_NOW;
    const activation = this.#active.get(self);
    const current = activation?.current;
    if (!current || !serves(activation!.shard)) return NOT_NOW;
    activation!.lastUsed = this.#now();
    return this.#answer(self, current.state, query);
  }

  /**
   * Answers a query from an entity's current state if it is active here, without counting as
   * use (a metrics scrape must not keep idle entities alive); else NOT_NOW.
   */
  peek(self: EntityRef, query: unknown): unknown {
    const current = this.#closing ? undefined : this.#active.get(self)?.current;
    return current ? this.#answer(self, current.state, query) : NOT_NOW;
  }

  /**
   * Answers a query, activating the entity first if need be: once recovered, from the state
   * it recovered; if it was poisoned or began passivating meanwhile, through its mailbox as
   * before (a poisoned actor refuses; a stopped one's callers hear so). Never activates a
   * second incarnation: the shard may have been revoked while this one recovered.
   */
  async query(self: EntityRef, shard: ShardId, query: unknown): Promise<unknown> {
    const now = this.queryNow(self, shard, query);
    if (now !== NOT_NOW) return now;
    return this.#deliver(self, shard, (done) => ({ t: 'query', query, done }), (state) => this.#answer(self, state, query));
  }

  #answer(self: EntityRef, state: unknown, query: unknown): unknown {
    const behavior = this.#behaviors.get(self.kind);
    if (!behavior?.query) throw new Error(`${self.kind} answers no queries`);
    return behavior.query(state, query, { self, now: this.#now() });
  }

  /**
   * Delivers a soft message (no command id, no journal record; see entity-actor.ts runSoft).
   * The caller checks that this node serves the shard, as for a query.
   *
   * An entity active here with no message in flight handles it at once, outside its
   * mailbox (EntityActor.softNow): nact's mailbox costs a setImmediate turn, a context with
   * a Map and a bound function, and promises per message, which was most of what a fix
   * cost. Nothing can be overtaken: nothing of this entity is queued or running; and the
   * entity counts as busy meanwhile, so a message it causes for itself waits its turn.
   */
  soft(self: EntityRef, shard: ShardId, message: unknown): SoftOutcome | Promise<SoftOutcome> {
    const active = this.#active.get(self);
    // Busy: into the batch of soft messages waiting in its mailbox (one turn for them all).
    if (active?.actor && active.current && active.inFlight > 0) return this.#batched(active, message);
    if (active?.actor && active.current && active.inFlight === 0) {
      active.enter();
      let outcome: SoftOutcome | Promise<SoftOutcome> | undefined;
      try {
        outcome = active.actor.softNow(message);
      } finally {
        if (!isPromise(outcome)) active.leave();
      }
      if (outcome !== undefined) {
        active.lastUsed = this.#now();
        return isPromise(outcome) ? outcome.finally(() => active.leave()) : outcome;
      }
    }
    // Not active yet (or still recovering): wait for it, then take the way an active one takes.
    if (!active?.actor || !active.current) return this.#softOnceActive(self, shard, message);
    return this.#deliver(self, shard, (done) => ({ t: 'soft', message, done: done as never })) as Promise<SoftOutcome>;
  }

  /**
   * Fires a due timer of an entity active here and idle at once, outside its mailbox and the
   * log (EntityActor.fireNow), when the fire is soft but for re-arming itself in memory and
   * `serves` says its shard (its activation's: no hashing) is served now.
   * False when it cannot: the caller appends the fire to the log as usual.
   */
  fireNow(self: EntityRef, name: string, at: number, serves: (shard: ShardId) => boolean): boolean {
    const active = this.#active.get(self);
    if (!active?.actor || !active.current || active.inFlight > 0 || !serves(active.shard)) return false;
    active.enter();
    let outcome: SoftOutcome | Promise<SoftOutcome> | undefined;
    try {
      outcome = active.actor.fireNow(name, at);
    } finally {
      if (!isPromise(outcome)) active.leave();
    }
    if (outcome === undefined) return false;
    active.lastUsed = this.#now();
    if (isPromise(outcome)) void outcome.finally(() => active.leave());
    return true;
  }

  /**
   * A soft message for an entity being activated: once it is, at once or into the batch like
   * any other (the messages that waited continue in the order they came, so none overtakes
   * another). A cell's first copies, thousands of them while it recovers, took one mailbox
   * turn each. An entity that did not come up (a failed recovery, a stop) gets the message
   * through its mailbox as before, which answers it.
   */
  async #softOnceActive(self: EntityRef, shard: ShardId, message: unknown): Promise<SoftOutcome> {
    const activation = await this.#activation(self, shard);
    activation.enter();
    try {
      await activation.ready;
    } catch {
      // Recovery failed: the mailbox way below hears why.
    } finally {
      this.#left(activation);
    }
    const active = this.#active.get(self);
    if (active === activation && active.actor && active.current) return this.soft(self, shard, message);
    return this.#deliver(self, shard, (done) => ({ t: 'soft', message, done: done as never })) as Promise<SoftOutcome>;
  }

  /** Activates entities (for reminders after a restart or a shard move). */
  async activate(self: EntityRef, shard: ShardId): Promise<void> {
    const activation = await this.#activation(self, shard);
    await activation.ready;
    this.#idle(activation);
  }

  /** Entities of a kind live on this node right now (for operations views). */
  activeRefs(kind: string): EntityRef[] {
    return [...this.#active.values()].filter((a) => a.self.kind === kind && accepts(a.state)).map((a) => a.self);
  }

  /** The shard of an entity active here (it was activated for it), or undefined. */
  activeShard(self: EntityRef): ShardId | undefined {
    return this.#active.get(self)?.shard;
  }

  isActive(self: EntityRef): boolean {
    return this.#active.has(self);
  }

  /** Names of the timers armed for an entity on this node. */
  armedTimers(self: EntityRef): string[] {
    return this.#timers.names(entityKey(self));
  }

  /**
   * Snapshots and stops every actor of the given shards (rebalance, shutdown). Without
   * `snapshot` (a shard another node took: its writes are refused) they are only stopped.
   */
  async stopShards(shards: Iterable<number>, options: { snapshot?: boolean } = {}): Promise<void> {
    const wanted = new Set(shards);
    const victims = [...this.#active.values()].filter((a) => wanted.has(a.shard));
    await Promise.all(victims.map((a) => this.#passivate(a, options.snapshot ?? true)));
  }

  async stopAll(): Promise<void> {
    this.#closing = true;
    if (this.#sweeper) clearInterval(this.#sweeper);
    if (this.#rester) clearInterval(this.#rester);
    await Promise.all([...this.#active.values()].map((a) => this.#passivate(a, true)));
    stop(this.#system);
  }

  stats(): ShardHostStats {
    const activeByKind: Record<string, number> = {};
    const activeByShard = new Map<ShardId, number>();
    let mailboxes = 0;
    for (const a of this.#active.values()) {
      if (a.ref) mailboxes++;
      activeByKind[a.self.kind] = (activeByKind[a.self.kind] ?? 0) + 1;
      activeByShard.set(a.shard, (activeByShard.get(a.shard) ?? 0) + 1);
    }
    return {
      active: this.#active.size, activeByKind, activeByShard, mailboxes,
      activations: this.#activations, passivations: this.#passivations, engine: { ...this.#engine.stats },
    };
  }

  #deliver(
    self: EntityRef, shard: ShardId, build: (done: MessageDone) => ActorMessage, read?: (state: unknown) => unknown,
  ): Promise<unknown> {
    // The common case, an entity active and recovered here, without the awaits of activation:
    // on the hot path (fixes, cell copies) they were a large share of the cost per message.
    const active = this.#active.get(self);
    if (active?.current && accepts(active.state)) {
      active.enter();
      active.lastUsed = this.#now();
      return this.#dispatch(active, build).finally(() => this.#left(active));
    }
    return this.#activateAndDeliver(self, shard, build, read);
  }

  async #activateAndDeliver(
    self: EntityRef, shard: ShardId, build: (done: MessageDone) => ActorMessage, read?: (state: unknown) => unknown,
  ): Promise<unknown> {
    const activation = await this.#activation(self, shard);
    activation.enter();
    activation.lastUsed = this.#now();
    try {
      await activation.ready;
      const current = read && activation.current;
      if (current) return read(current.state);
      return await this.#dispatch(activation, build);
    } finally {
      this.#left(activation);
    }
  }

  /** A delivered message settled. */
  #left(activation: Activation): void {
    activation.leave();
    activation.lastUsed = this.#now();
    this.#idle(activation);
  }

  /** An entity with a mailbox may have nothing in flight now: it hibernates if nothing comes for a while (see #rest). */
  #idle(activation: Activation): void {
    if (activation.inFlight > 0) return;
    // Its last soft batch is answered: what it holds (messages, callbacks) goes now.
    activation.softBatch = undefined;
    if (!activation.ref) return;
    this.#idleNow.add(activation);
    if (this.#rester) return;
    this.#rester = setInterval(() => this.#rest(), this.#options.hibernateAfterMs ?? 1_000);
    this.#rester.unref();
  }

  /**
   * Every hibernateAfterMs: the entities whose mailbox went idle in the period before this
   * one and that were not used since hibernate. Two sets, not a time per entity: a time is
   * a heap number per activation (the point is to hold less per entity). They hibernate a
   * slice at a time: stopping nact's actor costs a few µs, and twenty thousand drivers that
   * came online together would otherwise stop the event loop for a tenth of a second.
   */
  #rest(): void {
    const due = this.#idleBefore;
    this.#idleBefore = this.#idleNow;
    this.#idleNow = new Set();
    this.#hibernateSome(due.values());
    if (this.#idleBefore.size > 0 || !this.#rester) return;
    clearInterval(this.#rester);
    this.#rester = undefined;
  }

  /** Hibernates, for at most REST_SLICE_MS a turn, the entities of `due` not used in the last period. */
  #hibernateSome(due: Iterator<Activation>): void {
    const until = performance.now() + REST_SLICE_MS;
    for (let next = due.next(); !next.done; next = due.next()) {
      if (!this.#idleBefore.has(next.value)) this.#hibernate(next.value);
      if (performance.now() > until) { setImmediate(() => this.#hibernateSome(due)).unref(); return; }
    }
  }

  /**
   * An active entity with nothing in flight gives up its mailbox: nact's actor, its
   * reference, path and queue, the closures it holds and the handle of its last turn were
   * about 1.1 KiB of heap per online driver, whose fixes never use them (soft messages go
   * around the mailbox). Its incarnation stays, and with it queries and soft messages; the
   * next message that needs a mailbox (a command, a soft batch, a snapshot) spawns one
   * that starts from that incarnation without reading storage (see #mailbox). Spawning
   * costs about 10 µs of CPU (measured), so only entities idle for a while hibernate.
   */
  #hibernate(activation: Activation): void {
    if (this.#closing || activation.inFlight > 0 || !activation.ref || !activation.current || activation.actor?.resumableAt() === undefined) return;
    stop(activation.ref);
    activation.ref = undefined;
    activation.softBatch = undefined;
  }

  /** The entity's mailbox, spawned anew if it hibernated: it continues the journal's numbering where the incarnation is. */
  #mailbox(activation: Activation): NactRef {
    if (activation.ref) return activation.ref;
    const seq = activation.actor?.resumableAt();
    if (seq === undefined) throw new Error(`${activation.key} has no mailbox and cannot resume one`);
    this.#engine.resume(activation.key, seq);
    return this.#spawn(activation, activation.actor!);
  }

  /**
   * Spawns the entity's mailbox. `recovered` settles the first one's recovery: a crash
   * before it (or later, in any mailbox) retires the incarnation and stops the entity.
   */
  #spawn(activation: Activation, actor: EntityActor, recovery?: { readonly initial: unknown; failed(error: unknown): void }): NactRef {
    const ref = spawnPersistent(
      this.#system,
      ((given, msg, ctx) => actor.receive(given, msg, ctx)) satisfies EntityActor['receive'] as never,
      activation.key,
      // A name of our own: nact names an unnamed actor anonymous-<random int32> and refuses a
      // name a live child has, so among tens of thousands of live mailboxes a spawn failed
      // now and then (the fix bench: a soft message dropped in about one run in ten).
      (this.#spawned++).toString(36),
      {
        // No snapshotEvery for nact: the entity actor snapshots itself (see entity-actor.ts).
        initialState: recovery?.initial,
        onCrash: (_msg: unknown, error: unknown, ctx: { stop: symbol }) => {
          this.#options.onError?.(error, `entity ${activation.key} crashed`);
          activation.on('recovery_failed');
          recovery?.failed(error);
          void this.#passivate(activation, false);
          return ctx.stop;
        },
      } as never,
    ) as NactRef;
    withoutChildMaps(ref);
    activation.ref = ref;
    return ref;
  }

  /**
   * A soft message for a busy entity joins the soft batch last in its mailbox, or starts one
   * there: under a steady stream an entity in the mailbox's hands would take one event-loop
   * turn per message and never catch up (a hot cell stayed busy for good). In flight until
   * answered, like any delivered message; a stop before it is handled fails it.
   */
  #batched(active: Activation, message: unknown): Promise<SoftOutcome> {
    return new Promise<SoftOutcome>((resolve, reject) => {
      active.enter();
      const fail = (error: Error) => { active.leave(); reject(error); };
      active.wait(fail);
      const settle = <T>(f: (v: T) => void) => (v: T) => {
        active.unwait(fail);
        this.#left(active);
        f(v);
      };
      let batch = active.softBatch;
      if (!batch || batch.started) {
        batch = { messages: [], done: [], started: false };
        active.softBatch = batch;
        dispatch(this.#mailbox(active), { t: 'softBatch', batch } satisfies ActorMessage);
      }
      batch.messages.push(message);
      batch.done.push({ resolve: settle(resolve), reject: settle(reject) });
    });
  }

  /** Puts a message in the actor's mailbox; a stop before it is handled fails it (see #passivate). */
  #dispatch(activation: Activation, build: (done: MessageDone) => ActorMessage): Promise<unknown> {
    // Whatever comes after the open soft batch must not be overtaken by soft messages joining it.
    activation.softBatch = undefined;
    return new Promise<unknown>((resolve, reject) => {
      const fail = (error: Error) => reject(error);
      activation.wait(fail);
      const settle = <T>(f: (v: T) => void) => (v: T) => { activation.unwait(fail); f(v); };
      dispatch(this.#mailbox(activation), build({ resolve: settle(resolve), reject: settle(reject) } as MessageDone));
    });
  }

  async #activation(self: EntityRef, shard: ShardId): Promise<Activation> {
    const key = entityKey(self);
    for (;;) {
      const existing = this.#active.get(self);
      if (!existing) break;
      if (accepts(existing.state)) return existing;
      // Poisoned or passivating: wait for it to stop, then activate a fresh incarnation.
      await (existing.stopping ?? this.#passivate(existing, false));
    }
    // An entity activated after stopAll collected its victims would outlive the actor
    // system and leave its callers waiting forever: refuse, so they fail (and retry) now.
    if (this.#closing) throw new Error(`node is stopping; ${key} is not activated`);
    const behavior = this.#behaviors.get(self.kind);
    if (!behavior) throw new Error(`no behavior for entity kind "${self.kind}"`);
    if (this.#active.size >= this.#options.maxActiveEntities) void this.#evictLeastRecentlyUsed();
    const host = this.#actorHostOf;
    if (!host) throw new Error('shard host is not attached to a node');

    const activation: Activation = new ActivationOf<NactRef>(self, key, shard, this.#now());
    // Spawning starts recovery, so it happens inside the semaphore that bounds concurrent recoveries.
    activation.ready = this.#recoveries.run(() => new Promise<void>((resolve, reject) => {
      const actor = entityActor({
        behavior, self, key, host, snapshotEvery: behavior.snapshotEvery ?? this.#options.snapshotEvery, published: activation,
      });
      activation.actor = actor;
      this.#spawn(activation, actor, { initial: freshIncarnation(behavior, self.id), failed: reject });
      this.#activations++;
      dispatch(activation.ref!, {
        t: 'activate',
        done: { resolve: () => { activation.on('recovered'); resolve(); }, reject },
      } satisfies ActorMessage);
    }));
    // A recovery's own promise (and what it holds) goes once it succeeded.
    activation.ready.then(() => { activation.ready = RECOVERED; }, () => undefined);
    this.#active.set(activation);
    return activation;
  }

  /** An entity's key as its activation holds it (one string per entity, however many hold it), else a new one. */
  #keyOf(self: EntityRef): EntityKey {
    return this.#active.get(self)?.key ?? entityKey(self);
  }

  #actorHost(services: NodeServices): ActorHost {
    return {
      now: this.#now,
      send: services.send,
      sendSoft: services.sendSoft,
      findCommand: async (key, commandId) => (await this.#engine.journal.findCommand(key, commandId))?.data as JournalRecord | undefined,
      notify: services.notify,
      publish: services.publish,
      request: services.request,
      remember: services.remember,
      forget: services.forget,
      armTimer: (self, name, at) => this.#timers.arm(this.#keyOf(self), name, at, self),
      disarmTimer: (self, name) => this.#timers.disarm(entityKey(self), name),
      saveSnapshot: (key, seq, incarnation) =>
        this.#engine.takeSnapshot({ key, sequenceNumber: seq, data: incarnation, createdAt: this.#now() }),
      reducerFailed: (self, _message, error) => this.#options.onError?.(error, `reducer of ${entityKey(self)} threw`),
      poisoned: (self, error) => {
        this.#options.onError?.(error, `entity ${entityKey(self)} failed; it will recover from its journal`);
        const activation = this.#active.get(self);
        if (activation) {
          activation.on('poison');
          void this.#passivate(activation, false);
        }
      },
    };
  }

  /** Stops an actor; with `snapshot`, first saves its state so re-activation is cheap and soft state survives. */
  #passivate(activation: Activation, snapshot: boolean): Promise<void> {
    if (activation.stopping) return activation.stopping;
    // A poisoned incarnation is not snapshotted: its memory may not match its journal.
    const saves = snapshot && activation.state !== 'poisoned';
    activation.on('passivate');
    activation.stopping = (async () => {
      try {
        const recovered = await activation.ready.then(() => true, () => false);
        // Bounded: a shutdown must finish even if some message never completes.
        // Awaits the last in-flight message settling (no polling); bounded by a timer.
        if (activation.inFlight > 0) {
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([activation.idle(), new Promise<void>((r) => { timer = setTimeout(r, DRAIN_TIMEOUT_MS); })]);
          clearTimeout(timer);
        }
        if (activation.inFlight > 0) {
          this.#options.onError?.(
            new Error('drain timed out'), `${activation.key} still had ${activation.inFlight} message(s) in flight when stopped`,
          );
        }
        // Not drained: a snapshot message would queue behind the stuck one and never be answered.
        if (saves && recovered && activation.inFlight === 0 && !this.#behaviors.get(activation.self.kind)?.ephemeral) {
          await new Promise<void>((resolve, reject) => {
            dispatch(this.#mailbox(activation), { t: 'snapshot', done: { resolve, reject } } satisfies ActorMessage);
          }).catch((error) => this.#options.onError?.(error, `snapshot of ${activation.key} failed`));
        }
      } finally {
        this.#timers.disarmAll(activation.key);
        if (activation.ref) stop(activation.ref);
        activation.on('stopped');
        // nact drops what is still queued for a stopped actor: its callers hear so now
        // (a log command among them stays uncommitted and is delivered again).
        activation.failWaiting(() => new EntityStoppedError(`${activation.key} was stopped before it handled the message`));
        this.#active.delete(activation);
        this.#passivations++;
      }
    })();
    return activation.stopping;
  }

  /** Every active entity, visited in place (passivation.ts). */
  readonly #eachActive: Visit<Activation> = (visit) => this.#active.forEach(visit);
  readonly #nextTimerAt: NextTimerAt<Activation> = (a) => this.#timers.nextAt(a.key);

  #horizon() {
    return { now: this.#now(), keepTimersWithinMs: this.#options.keepTimersWithinMs ?? 60_000 };
  }

  async #sweep(): Promise<void> {
    const victims = idleVictims(this.#eachActive, this.#nextTimerAt, this.#horizon(), this.#options.passivateAfterMs);
    await Promise.all(victims.map((a) => this.#passivate(a, true)));
  }

  async #evictLeastRecentlyUsed(): Promise<void> {
    const victims = leastRecentlyUsed(this.#eachActive, this.#nextTimerAt, this.#horizon(), this.#active.size, this.#options.maxActiveEntities);
    await Promise.all(victims.map((a) => this.#passivate(a, true)));
  }
}

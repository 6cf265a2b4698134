// Hosts the entity actors of the shards this node owns.
//
// Entities are virtual actors: activated (spawnPersistent, recovered from
// snapshot + journal tail) on their first message, passivated when idle or
// when the node holds too many, and stopped shard by shard when a shard moves
// away. nact drops messages sent to a stopped actor and never re-spawns one,
// so every delivery goes through this host, which waits for a passivation in
// progress and re-activates on demand.

import { configurePersistence, dispatch, spawnPersistent, start, stop } from 'nact';
import type { Behavior, EntityRef } from '../actors/behavior.ts';
import { entityKey } from './entity.ts';
import {
  entityActor, freshIncarnation, type ActorHost, type ActorMessage, type CommandResult, type Incarnation,
} from './entity-actor.ts';
import { JournalPersistenceEngine } from './persistence-engine.ts';
import type { Journal } from './ports.ts';
import { Semaphore } from './semaphore.ts';

type AnyBehavior = Behavior<unknown, unknown, unknown, unknown, unknown>;

/** How long passivation waits for an entity's in-flight messages. */
const DRAIN_TIMEOUT_MS = 10_000;
type NactRef = Parameters<typeof dispatch>[0];

interface Activation {
  readonly self: EntityRef;
  readonly key: string;
  readonly shard: number;
  /** Set once the actor is spawned (inside the recovery semaphore). */
  ref: NactRef | undefined;
  /** Resolves once recovery is done and timers are re-armed. */
  ready: Promise<void>;
  lastUsed: number;
  inFlight: number;
  stopping?: Promise<void>;
}

export interface ShardHostOptions {
  readonly journal: Journal;
  readonly behaviors: readonly AnyBehavior[];
  readonly passivateAfterMs: number;
  readonly maxActiveEntities: number;
  readonly maxConcurrentRecoveries: number;
  readonly snapshotEvery: number;
  readonly now?: () => number;
  readonly onError?: (error: unknown, context: string) => void;
}

/** Everything an entity may ask of the node beyond its own journal. */
export type NodeServices = Pick<ActorHost, 'send' | 'notify' | 'publish' | 'remember' | 'forget' | 'request'> & {
  onTimer(self: EntityRef, name: string, at: number): void;
};

export interface ShardHostStats {
  readonly active: number;
  readonly activeByKind: Record<string, number>;
  readonly activeByShard: Map<number, number>;
  readonly activations: number;
  readonly passivations: number;
  readonly engine: JournalPersistenceEngine['stats'];
}

export class ShardHost {
  readonly #options: ShardHostOptions;
  readonly #behaviors = new Map<string, AnyBehavior>();
  readonly #engine: JournalPersistenceEngine;
  readonly #system: NactRef;
  readonly #active = new Map<string, Activation>();
  readonly #timers = new Map<string, Map<string, NodeJS.Timeout>>();
  readonly #recoveries: Semaphore;
  readonly #now: () => number;
  #services: NodeServices | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  #activations = 0;
  #passivations = 0;
  /** Set by stopAll: nothing new is activated while (and after) the host shuts down. */
  #closing = false;

  constructor(options: ShardHostOptions) {
    this.#options = options;
    for (const b of options.behaviors) this.#behaviors.set(b.kind, b);
    this.#engine = new JournalPersistenceEngine(options.journal);
    this.#system = start(configurePersistence(this.#engine as never)) as NactRef;
    this.#recoveries = new Semaphore(options.maxConcurrentRecoveries);
    this.#now = options.now ?? Date.now;
  }

  /** Wires the node's services; the host is inert until then. */
  attach(services: NodeServices): void {
    this.#services = services;
    const every = Math.max(250, Math.min(this.#options.passivateAfterMs / 4, 10_000));
    this.#sweeper = setInterval(() => void this.#sweep(), every);
    this.#sweeper.unref();
  }

  knows(kind: string): boolean {
    return this.#behaviors.has(kind);
  }

  /** Delivers a command to an entity and resolves once it is handled and its effects are durable. */
  command(self: EntityRef, shard: number, build: (done: ActorMessage['done']) => ActorMessage): Promise<CommandResult> {
    return this.#deliver(self, shard, build) as Promise<CommandResult>;
  }

  query(self: EntityRef, shard: number, query: unknown): Promise<unknown> {
    return this.#deliver(self, shard, (done) => ({ t: 'query', query, done }));
  }

  fireTimer(self: EntityRef, shard: number, name: string, at: number): Promise<CommandResult> {
    return this.#deliver(self, shard, (done) => ({ t: 'timer', name, at, done: done as never })) as Promise<CommandResult>;
  }

  /** Activates entities (for reminders after a restart or a shard move). */
  async activate(self: EntityRef, shard: number): Promise<void> {
    const activation = await this.#activation(self, shard);
    await activation.ready;
  }

  /** Entities of a kind live on this node right now (for operations views). */
  activeRefs(kind: string): EntityRef[] {
    return [...this.#active.values()].filter((a) => a.self.kind === kind && !a.stopping).map((a) => a.self);
  }

  isActive(self: EntityRef): boolean {
    return this.#active.has(entityKey(self));
  }

  /** Snapshots and stops every actor of the given shards (rebalance, shutdown). */
  async stopShards(shards: Iterable<number>): Promise<void> {
    const wanted = new Set(shards);
    const victims = [...this.#active.values()].filter((a) => wanted.has(a.shard));
    await Promise.all(victims.map((a) => this.#passivate(a, true)));
  }

  async stopAll(): Promise<void> {
    this.#closing = true;
    if (this.#sweeper) clearInterval(this.#sweeper);
    await Promise.all([...this.#active.values()].map((a) => this.#passivate(a, true)));
    stop(this.#system);
  }

  stats(): ShardHostStats {
    const activeByKind: Record<string, number> = {};
    const activeByShard = new Map<number, number>();
    for (const a of this.#active.values()) {
      activeByKind[a.self.kind] = (activeByKind[a.self.kind] ?? 0) + 1;
      activeByShard.set(a.shard, (activeByShard.get(a.shard) ?? 0) + 1);
    }
    return {
      active: this.#active.size, activeByKind, activeByShard,
      activations: this.#activations, passivations: this.#passivations, engine: { ...this.#engine.stats },
    };
  }

  async #deliver(self: EntityRef, shard: number, build: (done: ActorMessage['done']) => ActorMessage): Promise<unknown> {
    const activation = await this.#activation(self, shard);
    activation.inFlight++;
    activation.lastUsed = this.#now();
    try {
      await activation.ready;
      return await new Promise<unknown>((resolve, reject) => {
        dispatch(activation.ref!, build({ resolve, reject } as ActorMessage['done']));
      });
    } finally {
      activation.inFlight--;
      activation.lastUsed = this.#now();
    }
  }

  async #activation(self: EntityRef, shard: number): Promise<Activation> {
    const key = entityKey(self);
    for (;;) {
      const existing = this.#active.get(key);
      if (!existing) break;
      if (!existing.stopping) return existing;
      await existing.stopping;
    }
    // An entity activated after stopAll collected its victims would outlive the actor
    // system and leave its callers waiting forever: refuse, so they fail (and retry) now.
    if (this.#closing) throw new Error(`node is stopping; ${key} is not activated`);
    const behavior = this.#behaviors.get(self.kind);
    if (!behavior) throw new Error(`no behavior for entity kind "${self.kind}"`);
    if (this.#active.size >= this.#options.maxActiveEntities) void this.#evictLeastRecentlyUsed();
    const services = this.#services;
    if (!services) throw new Error('shard host is not attached to a node');

    const activation: Activation = { self, key, shard, ref: undefined, ready: Promise.resolve(), lastUsed: this.#now(), inFlight: 0 };
    // Spawning starts recovery, so it happens inside the semaphore that bounds concurrent recoveries.
    activation.ready = this.#recoveries.run(() => new Promise<void>((resolve, reject) => {
      activation.ref = spawnPersistent(
        this.#system,
        entityActor({ behavior, self, key, host: this.#actorHost(services) }) as never,
        key,
        undefined,
        {
          initialState: freshIncarnation(behavior, self.id),
          snapshotEvery: behavior.snapshotEvery ?? this.#options.snapshotEvery,
          snapshotEncoder: (inc: Incarnation<unknown>) => ({ ...inc, unsnapshotted: 0 }),
          onCrash: (_msg: unknown, error: unknown, ctx: { stop: symbol }) => {
            this.#options.onError?.(error, `entity ${key} crashed`);
            reject(error);
            if (this.#active.get(key) === activation) this.#forgetActivation(key);
            return ctx.stop;
          },
        } as never,
      ) as NactRef;
      this.#activations++;
      dispatch(activation.ref, { t: 'activate', done: { resolve, reject } } satisfies ActorMessage);
    }));
    this.#active.set(key, activation);
    return activation;
  }

  #actorHost(services: NodeServices): ActorHost {
    return {
      now: this.#now,
      send: services.send,
      notify: services.notify,
      publish: services.publish,
      request: services.request,
      remember: services.remember,
      forget: services.forget,
      armTimer: (self, name, at) => this.#armTimer(self, name, at, services),
      disarmTimer: (self, name) => this.#disarmTimer(entityKey(self), name),
      saveSnapshot: (key, seq, inc) =>
        this.#engine.takeSnapshot({ key, sequenceNumber: seq, data: inc, createdAt: this.#now() }),
      reducerFailed: (self, _message, error) => this.#options.onError?.(error, `reducer of ${entityKey(self)} threw`),
      poisoned: (self, error) => {
        this.#options.onError?.(error, `entity ${entityKey(self)} failed; it will recover from its journal`);
        const activation = this.#active.get(entityKey(self));
        if (activation) void this.#passivate(activation, false);
      },
    };
  }

  #armTimer(self: EntityRef, name: string, at: number, services: NodeServices): void {
    const key = entityKey(self);
    this.#disarmTimer(key, name);
    const delay = Math.max(0, at - this.#now());
    const handle = setTimeout(() => {
      this.#timers.get(key)?.delete(name);
      services.onTimer(self, name, at);
    }, Math.min(delay, 2 ** 31 - 1));
    let byName = this.#timers.get(key);
    if (!byName) this.#timers.set(key, (byName = new Map()));
    byName.set(name, handle);
  }

  #disarmTimer(key: string, name: string): void {
    const byName = this.#timers.get(key);
    const handle = byName?.get(name);
    if (handle) clearTimeout(handle);
    byName?.delete(name);
    if (byName && byName.size === 0) this.#timers.delete(key);
  }

  #hasTimers(key: string): boolean {
    return (this.#timers.get(key)?.size ?? 0) > 0;
  }

  /** Stops an actor; with `snapshot`, first saves its state so re-activation is cheap and soft state survives. */
  #passivate(activation: Activation, snapshot: boolean): Promise<void> {
    if (activation.stopping) return activation.stopping;
    activation.stopping = (async () => {
      try {
        const recovered = await activation.ready.then(() => true, () => false);
        // Bounded: a shutdown must finish even if some message never completes.
        const until = Date.now() + DRAIN_TIMEOUT_MS;
        while (activation.inFlight > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 1));
        if (activation.inFlight > 0) this.#options.onError?.(new Error('drain timed out'), `${activation.key} still had ${activation.inFlight} message(s) in flight when stopped`);
        if (snapshot && recovered && !this.#behaviors.get(activation.self.kind)?.ephemeral) {
          await new Promise<void>((resolve, reject) => {
            dispatch(activation.ref!, { t: 'snapshot', done: { resolve, reject } } satisfies ActorMessage);
          }).catch((error) => this.#options.onError?.(error, `snapshot of ${activation.key} failed`));
        }
      } finally {
        for (const name of [...(this.#timers.get(activation.key)?.keys() ?? [])]) this.#disarmTimer(activation.key, name);
        if (activation.ref) stop(activation.ref);
        this.#forgetActivation(activation.key);
        this.#passivations++;
      }
    })();
    return activation.stopping;
  }

  #forgetActivation(key: string): void {
    this.#active.delete(key);
  }

  async #sweep(): Promise<void> {
    const idleSince = this.#now() - this.#options.passivateAfterMs;
    const idle = [...this.#active.values()].filter(
      (a) => !a.stopping && a.inFlight === 0 && a.lastUsed <= idleSince && !this.#hasTimers(a.key),
    );
    await Promise.all(idle.map((a) => this.#passivate(a, true)));
  }

  async #evictLeastRecentlyUsed(): Promise<void> {
    const excess = this.#active.size - this.#options.maxActiveEntities + 1;
    if (excess <= 0) return;
    const candidates = [...this.#active.values()]
      .filter((a) => !a.stopping && a.inFlight === 0 && !this.#hasTimers(a.key))
      .sort((a, b) => a.lastUsed - b.lastUsed)
      .slice(0, Math.max(excess, Math.ceil(this.#options.maxActiveEntities / 100)));
    await Promise.all(candidates.map((a) => this.#passivate(a, true)));
  }
}

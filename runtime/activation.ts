// One entity's life on this node, as an explicit state machine (after Pekko's Shard):
//
//   recovering --recovered--> active --passivate--> passivating --stopped--> stopped
//        |                      |                        ^
//        +--recovery_failed-----+----poison--> poisoned -+ (passivate)
//
// `recovering`: spawned, reading snapshot and journal; messages wait for it.
// `active`: handling messages. `poisoned`: a write failed after nact advanced its
// sequence number, so its memory may not match its journal; it takes no more work
// and is stopped, the next message recovers a fresh incarnation. `passivating`:
// draining in-flight messages and snapshotting. `stopped`: gone; whoever still
// waited on it hears so (see ShardHost), the next message activates it anew.
//
// `current` is the entity's state as its actor last returned it (after recovery, after
// each handled message). Queries are answered from it without entering the mailbox
// (ShardHost.queryNow). It is only ever set by the actor, only with a state the actor
// returned (a command's state is returned after its journal write succeeded), and it is
// dropped for good the moment the incarnation is poisoned, fails recovery or stops.

import type { EntityRef } from '../actors/behavior.ts';
import type { EntityKey, ShardId } from './entity.ts';
import type { EntityActor, SoftBatch } from './entity-actor.ts';

export type ActivationState = 'recovering' | 'active' | 'passivating' | 'poisoned' | 'stopped';
export type ActivationEvent = 'recovered' | 'recovery_failed' | 'poison' | 'passivate' | 'stopped';

const TRANSITIONS: Record<ActivationState, Partial<Record<ActivationEvent, ActivationState>>> = {
  recovering: { recovered: 'active', recovery_failed: 'poisoned', passivate: 'passivating', poison: 'poisoned' },
  active: { poison: 'poisoned', passivate: 'passivating' },
  poisoned: { passivate: 'passivating', poison: 'poisoned', recovery_failed: 'poisoned' },
  passivating: { stopped: 'stopped', poison: 'passivating', recovery_failed: 'passivating', recovered: 'passivating' },
  stopped: {},
};

/** The single transition function; an event a state does not take leaves it as it is. */
export function transition(state: ActivationState, event: ActivationEvent): ActivationState {
  return TRANSITIONS[state][event] ?? state;
}

/** Whether a state takes new messages (recovering ones wait for recovery). */
export function accepts(state: ActivationState): boolean {
  return state === 'recovering' || state === 'active';
}

/** A settled recovery: what `ready` becomes once it succeeded, one promise for every activation. */
export const RECOVERED: Promise<void> = Promise.resolve();

export class Activation<Ref = unknown> {
  readonly self: EntityRef;
  readonly key: string;
  readonly shard: ShardId;
  #state: ActivationState = 'recovering';
  /**
   * The entity's mailbox (nact's actor): set when it is spawned (inside the recovery
   * semaphore), unset while the entity hibernates (active, with nothing in flight, and no
   * mailbox until a message needs one; see ShardHost).
   */
  ref: Ref | undefined;
  /** Resolves once recovery is done and timers are re-armed (then one promise shared by all, see ShardHost). */
  ready: Promise<void> = RECOVERED;
  lastUsed: number;
  #inFlight = 0;
  /** Resolved (and dropped) when the last in-flight message settles. */
  #idle: { promise: Promise<void>; resolve: () => void } | undefined;
  /** Settles when the actor is stopped; set when passivation starts. */
  stopping: Promise<void> | undefined;
  /**
   * Callers still waiting on this actor, failed if it stops first: the first in a field, more
   * in a set made when needed (most actors have one message in flight at most, and a node
   * holds an activation per online driver).
   */
  #waiter: ((error: Error) => void) | undefined;
  #waiters: Set<(error: Error) => void> | undefined;
  #current: { readonly state: unknown } | undefined;
  /** The soft batch last in the actor's mailbox, open to more soft messages until it starts or anything follows it. */
  softBatch: SoftBatch | undefined;
  /** The entity's actor (its steps, its soft path around the mailbox), once first spawned; it outlives each mailbox. */
  actor: EntityActor | undefined;

  /** A caller waits on this actor until `unwait`; `failWaiting` fails every caller still waiting. */
  wait(fail: (error: Error) => void): void {
    if (this.#waiter === undefined) this.#waiter = fail;
    else (this.#waiters ??= new Set()).add(fail);
  }

  unwait(fail: (error: Error) => void): void {
    if (this.#waiter === fail) this.#waiter = undefined;
    else this.#waiters?.delete(fail);
  }

  /**
   * `error` is made only when someone waits: an error captures a stack trace, and most
   * activations stop (passivation) with nobody waiting.
   */
  failWaiting(error: () => Error): void {
    const all = [...(this.#waiter ? [this.#waiter] : []), ...(this.#waiters ?? [])];
    this.#waiter = undefined;
    this.#waiters = undefined;
    if (all.length === 0) return;
    const failure = error();
    for (const fail of all) fail(failure);
  }

  constructor(self: EntityRef, key: EntityKey, shard: ShardId, now: number) {
    this.self = self;
    this.key = key;
    this.shard = shard;
    this.lastUsed = now;
  }

  /** Messages delivered to the actor and not settled yet. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** For tests that build an activation in a given state. */
  set inFlight(n: number) {
    this.#inFlight = n;
    if (n === 0) this.#settleIdle();
  }

  /** A message is delivered to the actor. */
  enter(): void {
    this.#inFlight++;
  }

  /** A delivered message settled. */
  leave(): void {
    this.#inFlight--;
    if (this.#inFlight === 0) this.#settleIdle();
  }

  /** Resolves once no message is in flight (at once if none is). */
  idle(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    if (!this.#idle) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => { resolve = r; });
      this.#idle = { promise, resolve };
    }
    return this.#idle.promise;
  }

  #settleIdle(): void {
    const idle = this.#idle;
    this.#idle = undefined;
    idle?.resolve();
  }

  get state(): ActivationState {
    return this.#state;
  }

  /**
   * The state a query may be answered from: the actor's last published one, while the
   * activation is active. Undefined while recovering, passivating, poisoned or stopped.
   */
  get current(): { readonly state: unknown } | undefined {
    return this.#state === 'active' ? this.#current : undefined;
  }

  /**
   * The actor publishes the state it is about to return (see entityActor's `onState`).
   * Ignored once the incarnation is poisoned, failed recovery or stopped: nothing it
   * holds may be served again.
   */
  publish(incarnation: { readonly state: unknown }): void {
    if (this.#retired) return;
    this.#current = incarnation;
  }

  #retired = false;

  on(event: ActivationEvent): ActivationState {
    // A poison taken while passivating leaves the state 'passivating': the event, not the
    // state, is what retires the published incarnation.
    if (event === 'poison' || event === 'recovery_failed' || event === 'stopped') {
      this.#retired = true;
      this.#current = undefined;
    }
    this.#state = transition(this.#state, event);
    return this.#state;
  }
}

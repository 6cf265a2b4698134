// Runs one pure Behavior as a persistent nact actor.
//
// One journal entry per handled command holds everything the command changed:
// its domain events, the durable tells it sent (an outbox) and its timer
// changes. Writing them as one row makes a command all-or-nothing, and keeping
// the outbox with the recent command ids lets a redelivered command re-send
// exactly the tells it produced the first time (receivers drop them by id)
// instead of running the reducer again on newer state.

import type { Behavior, Effect, EntityRef, Outcome } from '../actors/behavior.ts';
import { classify, ReducerError, type FailureKind } from './errors.ts';
import type { CommandEnvelope } from './ports.ts';
import { isTimerFire } from './timers.ts';

/** How many recent command ids an entity remembers for duplicate detection. */
export const DEDUP_WINDOW = 128;

export interface OutboundTell {
  readonly id: string;
  readonly to: EntityRef;
  readonly message: unknown;
}

interface TimerEntry {
  readonly at: number;
  readonly message: unknown;
}

interface SeenCommand {
  readonly id: string;
  readonly tells: readonly OutboundTell[];
}

/** What the actor keeps: the domain state plus what the runtime needs to be exactly-once. */
export interface Incarnation<S> {
  state: S;
  /** Journal entries applied so far (equals nact's sequence number). */
  seq: number;
  seen: SeenCommand[];
  timers: Record<string, TimerEntry>;
  /** Handled messages whose changes are only in memory (soft state) since the last snapshot. */
  unsnapshotted: number;
}

/** The shape of one journal entry. `v` is the behavior's event version when written. */
export interface JournalRecord {
  readonly v: number;
  readonly cmd: string;
  readonly at: number;
  readonly events: readonly unknown[];
  readonly tells: readonly OutboundTell[];
  readonly timersSet: readonly { readonly name: string; readonly at: number; readonly message: unknown }[];
  readonly timersCancelled: readonly string[];
}

export type CommandStatus = 'applied' | 'duplicate' | 'rejected' | 'failed';

export interface CommandResult {
  readonly status: CommandStatus;
  readonly rejection?: { readonly code: string; readonly message: string };
  readonly reply?: unknown;
  /** Why a `failed` command failed, and whether trying again can help. */
  readonly failure?: Failure;
  /** Set when a permanently failed command was set aside in the dead-letter store. */
  readonly deadLetter?: string;
}

export interface Failure {
  readonly kind: FailureKind;
  readonly retriable: boolean;
  readonly message: string;
}

export function failureOf(error: unknown): Failure {
  const e = classify(error);
  return { kind: e.kind, retriable: e.retriable, message: e.message };
}

interface Deferred<T> {
  resolve(value: T): void;
  reject(error: unknown): void;
}

export type ActorMessage =
  | { readonly t: 'activate'; readonly done: Deferred<void> }
  | { readonly t: 'command'; readonly command: CommandEnvelope; readonly done: Deferred<CommandResult> }
  | { readonly t: 'query'; readonly query: unknown; readonly done: Deferred<unknown> }
  | { readonly t: 'snapshot'; readonly done: Deferred<void> };

/** What an entity actor needs from the node that hosts it. */
export interface ActorHost {
  now(): number;
  /** Appends tells to the command log; resolves once they are durable. */
  send(from: EntityRef, tells: readonly OutboundTell[]): Promise<void>;
  notify(userId: string, message: unknown): void;
  publish(topic: string, event: unknown, from: EntityRef): void;
  /** Runs a node service; its answer is told back to `self`. */
  request(self: EntityRef, service: string, payload: unknown): void;
  /** Records a reminder before the timer is journaled (see ReminderStore). */
  remember(self: EntityRef, name: string, at: number): Promise<void>;
  forget(self: EntityRef, name: string): void;
  armTimer(self: EntityRef, name: string, at: number): void;
  disarmTimer(self: EntityRef, name: string): void;
  saveSnapshot(key: string, seq: number, incarnation: Incarnation<unknown>): Promise<void>;
  /** The actor's in-memory view may no longer match its journal: stop it so the next message recovers it. */
  poisoned(self: EntityRef, error: unknown): void;
  reducerFailed(self: EntityRef, message: unknown, error: unknown): void;
}

export function freshIncarnation<S>(behavior: Behavior<S, unknown, unknown, unknown, unknown>, id: string): Incarnation<S> {
  return { state: behavior.initial(id), seq: 0, seen: [], timers: {}, unsnapshotted: 0 };
}

type AnyBehavior = Behavior<unknown, unknown, unknown, unknown, unknown>;

/** Rebuilds an incarnation from one journal record (recovery). */
export function replay(behavior: AnyBehavior, inc: Incarnation<unknown>, record: JournalRecord): Incarnation<unknown> {
  const events = record.v === behavior.eventVersion || !behavior.upcast
    ? record.events
    : record.events.map((e) => behavior.upcast!(e, record.v));
  let state = inc.state;
  for (const event of events) state = behavior.apply(state, event);
  const timers = { ...inc.timers };
  for (const name of record.timersCancelled) delete timers[name];
  for (const t of record.timersSet) timers[t.name] = { at: t.at, message: t.message };
  return { state, seq: inc.seq + 1, seen: remember(inc.seen, { id: record.cmd, tells: record.tells }), timers, unsnapshotted: 0 };
}

function remember(seen: readonly SeenCommand[], entry: SeenCommand): SeenCommand[] {
  const next = seen.length >= DEDUP_WINDOW ? seen.slice(seen.length - DEDUP_WINDOW + 1) : [...seen];
  next.push(entry);
  return next;
}

/** Splits a reducer's effects into what is journaled and what is done after. */
export function planEffects(commandId: string, effects: readonly Effect[]) {
  const tells: OutboundTell[] = [];
  const softTells: OutboundTell[] = [];
  const timersSet: { name: string; at: number; message: unknown }[] = [];
  const timersCancelled: string[] = [];
  const notifications: { userId: string; message: unknown }[] = [];
  const publications: { topic: string; event: unknown }[] = [];
  const requests: { service: string; payload: unknown }[] = [];
  effects.forEach((effect, i) => {
    switch (effect.type) {
      case 'tell': {
        const tell = { id: `${commandId}>${i}`, to: effect.to, message: effect.message };
        (effect.durable === false ? softTells : tells).push(tell);
        break;
      }
      case 'timer.set': timersSet.push({ name: effect.name, at: effect.at, message: effect.message }); break;
      case 'timer.cancel': timersCancelled.push(effect.name); break;
      case 'notify': notifications.push({ userId: effect.userId, message: effect.message }); break;
      case 'publish': publications.push({ topic: effect.topic, event: effect.event }); break;
      case 'request': requests.push({ service: effect.service, payload: effect.payload }); break;
    }
  });
  return { tells, softTells, timersSet, timersCancelled, notifications, publications, requests };
}

interface PersistContext {
  readonly recovering?: boolean;
  persist(record: JournalRecord): Promise<void>;
}

export interface EntityActorOptions {
  readonly behavior: AnyBehavior;
  readonly self: EntityRef;
  readonly key: string;
  readonly host: ActorHost;
  /** Journal entries between snapshots (0: only when passivated). */
  readonly snapshotEvery: number;
}

/** The nact actor function for one entity. */
export function entityActor(options: EntityActorOptions) {
  const { behavior, self, key, host, snapshotEvery } = options;

  async function handleOutcome(
    inc: Incarnation<unknown>, commandId: string, at: number, outcome: Outcome<unknown, unknown>, ctx: PersistContext,
  ): Promise<[Incarnation<unknown>, CommandResult]> {
    const plan = planEffects(commandId, outcome.effects);
    const journaled = outcome.events.length > 0 || plan.tells.length > 0 || plan.timersSet.length > 0 || plan.timersCancelled.length > 0;
    let next: Incarnation<unknown> = { ...inc, state: outcome.state };
    if (journaled) {
      for (const t of plan.timersSet) await host.remember(self, t.name, t.at);
      const record: JournalRecord = {
        v: behavior.eventVersion, cmd: commandId, at, events: outcome.events, tells: plan.tells,
        timersSet: plan.timersSet, timersCancelled: plan.timersCancelled,
      };
      await ctx.persist(record);
      const timers = { ...inc.timers };
      for (const name of plan.timersCancelled) { delete timers[name]; host.disarmTimer(self, name); }
      for (const t of plan.timersSet) { timers[t.name] = { at: t.at, message: t.message }; host.armTimer(self, t.name, t.at); }
      next = { state: outcome.state, seq: inc.seq + 1, seen: remember(inc.seen, { id: commandId, tells: plan.tells }), timers, unsnapshotted: inc.unsnapshotted };
      // Snapshots are the runtime's alone, stamped with the sequence number of the entry
      // just journaled: a state that was not journaled can never be saved (nact's own
      // periodic snapshots could save the old state under a number a failed write used).
      if (snapshotEvery > 0 && next.seq % snapshotEvery === 0) {
        await host.saveSnapshot(key, next.seq, { ...next, unsnapshotted: 0 }).then(() => { next.unsnapshotted = 0; }, () => undefined);
      }
    } else if (outcome.state !== inc.state) {
      next.unsnapshotted = inc.unsnapshotted + 1;
      if (behavior.softSnapshotEvery && next.unsnapshotted >= behavior.softSnapshotEvery) {
        // Best effort: a failed snapshot only means more soft state lost on a crash.
        await host.saveSnapshot(key, next.seq, { ...next, unsnapshotted: 0 }).then(() => { next.unsnapshotted = 0; }, () => undefined);
      }
    }
    const outbound = [...plan.tells, ...plan.softTells];
    // Timers cancelled and set again in one command keep their reminder.
    for (const name of plan.timersCancelled) if (!plan.timersSet.some((t) => t.name === name)) host.forget(self, name);
    if (outbound.length > 0) await host.send(self, outbound);
    for (const n of plan.notifications) host.notify(n.userId, n.message);
    for (const p of plan.publications) host.publish(p.topic, p.event, self);
    for (const r of plan.requests) host.request(self, r.service, r.payload);
    const status: CommandStatus = outcome.rejection ? 'rejected' : 'applied';
    return [next, { status, rejection: outcome.rejection, reply: outcome.reply }];
  }

  async function runCommand(
    inc: Incarnation<unknown>, commandId: string, at: number, message: unknown, ctx: PersistContext,
  ): Promise<[Incarnation<unknown>, CommandResult]> {
    const seen = inc.seen.find((s) => s.id === commandId);
    if (seen) {
      // Redelivered after a crash before its offset was committed: re-send what it sent.
      if (seen.tells.length > 0) await host.send(self, seen.tells);
      return [inc, { status: 'duplicate' }];
    }
    const outcome = decide(inc.state, message, at, commandId);
    return handleOutcome(inc, commandId, at, outcome, ctx);
  }

  /** A reducer that throws has a bug: a permanent failure (the command is dead-lettered, not retried). */
  function decide(state: unknown, message: unknown, at: number, commandId: string): Outcome<unknown, unknown> {
    try {
      return behavior.handle(state, message, { self, now: at, commandId });
    } catch (error) {
      host.reducerFailed(self, message, error);
      throw new ReducerError(`the reducer of ${key} threw: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
  }

  // Set when a write failed: nact has already advanced its sequence number, so
  // this incarnation must handle nothing more until it is stopped and recovered.
  let poisoned = false;

  return async function actor(inc: Incarnation<unknown>, msg: ActorMessage | JournalRecord, ctx: PersistContext): Promise<Incarnation<unknown>> {
    if (ctx.recovering) return replay(behavior, inc, msg as JournalRecord);
    const m = msg as ActorMessage;
    if (poisoned) {
      const failure: Failure = { kind: 'entity_stopped', retriable: true, message: `${key} is recovering; try again` };
      if (m.t === 'command') m.done.resolve({ status: 'failed', failure });
      else if (m.t === 'query') m.done.reject(new Error(failure.message));
      else m.done.resolve();
      return inc;
    }
    switch (m.t) {
      case 'activate':
        for (const [name, timer] of Object.entries(inc.timers)) host.armTimer(self, name, timer.at);
        m.done.resolve();
        return inc;
      case 'query':
        try {
          if (!behavior.query) throw new Error(`${self.kind} answers no queries`);
          m.done.resolve(behavior.query(inc.state, m.query, { self, now: host.now() }));
        } catch (error) {
          m.done.reject(error);
        }
        return inc;
      case 'snapshot':
        try {
          if (inc.unsnapshotted > 0 || inc.seq > 0) await host.saveSnapshot(key, inc.seq, { ...inc, unsnapshotted: 0 });
          m.done.resolve();
          return { ...inc, unsnapshotted: 0 };
        } catch (error) {
          m.done.reject(error);
          return inc;
        }
      case 'command': {
        // A fired timer arrives through the log like any command (see timers.ts).
        const fire = isTimerFire(m.command.message) ? m.command.message : undefined;
        const timer = fire ? inc.timers[fire.$timer] : undefined;
        if (fire && (!timer || timer.at !== fire.at) && !inc.seen.some((c) => c.id === m.command.id)) {
          m.done.resolve({ status: 'duplicate' }); // cancelled or re-set since it was due
          return inc;
        }
        // Handling time, not acceptance time: a command delivered late (after downtime)
        // must not arm timers that are already in the past. Replays never re-run the
        // reducer (events are journaled), so this stays deterministic where it matters.
        const at = host.now();
        try {
          const [next, result] = fire && timer
            ? await runTimer(inc, m.command.id, at, fire.$timer, timer.message, ctx)
            : await runCommand(inc, m.command.id, at, m.command.message, ctx);
          m.done.resolve(result);
          return next;
        } catch (error) {
          const failure = failureOf(error);
          // A reducer that threw changed nothing: this incarnation is still in step with its journal.
          if (!(error instanceof ReducerError)) {
            poisoned = true;
            host.poisoned(self, error);
          }
          m.done.resolve({ status: 'failed', failure });
          return inc;
        }
      }
    }
  };

  /** A fired timer runs its message as a command; the timer is cancelled in the journal unless the reducer sets it again. */
  async function runTimer(
    inc: Incarnation<unknown>, commandId: string, at: number, name: string, message: unknown, ctx: PersistContext,
  ): Promise<[Incarnation<unknown>, CommandResult]> {
    const { [name]: _fired, ...rest } = inc.timers;
    const outcome = decide(inc.state, message, at, commandId);
    const resets = outcome.effects.some((e) => e.type === 'timer.set' && e.name === name);
    const cancelsFired: Effect = { type: 'timer.cancel', name };
    return handleOutcome({ ...inc, timers: rest }, commandId, at, { ...outcome, effects: resets ? outcome.effects : [cancelsFired, ...outcome.effects] }, ctx);
  }
}

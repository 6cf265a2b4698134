// Runs one pure Behavior as a persistent nact actor.
//
// One journal entry per handled command holds everything the command changed:
// its domain events, the durable tells it sent (an outbox) and its timer
// changes. Writing them as one row makes a command all-or-nothing. The row also
// records the command's id, its origin (for a tell from an entity) and its
// refusal, so a redelivered command, however late, gets the answer it got the
// first time instead of being decided again on newer state (see dedupe.ts).

import type { AnyBehavior, Behavior, Effect, EntityRef, Outcome } from '../actors/behavior.ts';
import { classify, DuplicateCommandError, ReducerError } from './errors.ts';
import { emptyDedupe, recognise, remember, type Dedupe, type Origin, type Refusal } from './dedupe.ts';
import type { AppendOptions, CommandEnvelope, CommandResult, CommandStatus, Failure } from './ports.ts';
import { isTimerFire } from './timers.ts';

export interface OutboundTell {
  readonly id: string;
  readonly to: EntityRef;
  readonly message: unknown;
  /** Set on durable tells: receivers keep a high-water mark per sender (dedupe.ts). */
  readonly origin?: Origin;
}

/** A non-durable tell: no id, no origin (receivers keep the newest by the message's own time). */
export interface SoftTell {
  readonly to: EntityRef;
  readonly message: unknown;
}

interface TimerEntry {
  readonly at: number;
  readonly message: unknown;
}

/** What the actor keeps: the domain state plus what the runtime needs to be exactly-once. */
export interface Incarnation<S> {
  state: S;
  /** Journal entries applied so far (equals nact's sequence number). */
  seq: number;
  dedupe: Dedupe;
  /**
   * Tells of the last journaled entry not known to be in the log yet. Re-sent when the
   * entity is activated, before it handles anything: a sender's tells then enter the log
   * in the order of its history, which receivers' high-water marks rely on.
   */
  outbox: readonly OutboundTell[];
  timers: Record<string, TimerEntry>;
  /** Handled messages whose changes are only in memory (soft state) since the last snapshot. */
  unsnapshotted: number;
}

/** The shape of one journal entry. `v` is the behavior's event version when written. */
export interface JournalRecord {
  readonly v: number;
  readonly cmd: string;
  readonly at: number;
  /** The command's origin, when it is a tell from an entity (moves the sender's mark on replay). */
  readonly from?: Origin;
  /** The command's refusal: a redelivery gets it again. */
  readonly rejection?: Refusal;
  readonly events: readonly unknown[];
  readonly tells: readonly OutboundTell[];
  readonly timersSet: readonly { readonly name: string; readonly at: number; readonly message: unknown }[];
  readonly timersCancelled: readonly string[];
}

export function failureOf(error: unknown): Failure {
  const e = classify(error);
  return { kind: e.kind, retriable: e.retriable, message: e.message };
}

interface Deferred<T> {
  resolve(value: T): void;
  reject(error: unknown): void;
}

/**
 * What became of a soft message (ShardHost.soft): `applied` in memory; `durable` when its
 * outcome would have to be journaled (events, a refusal, timers, durable tells), so nothing
 * was applied and the sender must send it as a command; `dropped` when the entity could not
 * take it (recovering after a failure, its reducer threw).
 */
export type SoftOutcome = 'applied' | 'durable' | 'dropped';

export type ActorMessage =
  | { readonly t: 'activate'; readonly done: Deferred<void> }
  | { readonly t: 'soft'; readonly message: unknown; readonly done: Deferred<SoftOutcome> }
  /** Soft messages that came while the entity was busy, in order: one mailbox turn for all of them (see SoftBatch). */
  | { readonly t: 'softBatch'; readonly batch: SoftBatch }
  | { readonly t: 'command'; readonly command: CommandEnvelope; readonly done: Deferred<CommandResult> }
  | { readonly t: 'query'; readonly query: unknown; readonly done: Deferred<unknown> }
  | { readonly t: 'snapshot'; readonly done: Deferred<void> };

/** How a delivered message is answered (every kind but a soft batch, whose messages are answered one by one). */
export type MessageDone = Extract<ActorMessage, { readonly done: unknown }>['done'];

/**
 * Soft messages for a busy entity, gathered while the batch waits in the mailbox: the host
 * appends to it only while it is the last message queued and has not started, so the
 * entity still sees every message in the order it came.
 */
export interface SoftBatch {
  readonly messages: unknown[];
  readonly done: Deferred<SoftOutcome>[];
  /** Set when the actor takes it up: later soft messages go into a new batch. */
  started: boolean;
}

/** What an entity actor needs from the node that hosts it. */
export interface ActorHost {
  now(): number;
  /**
   * Appends tells to the command log; resolves once they are durable. `trace` (here and in
   * notify and request) is the traceparent of the handling that caused them, if traced: the
   * runtime's, never the reducer's concern.
   */
  send(from: EntityRef, tells: readonly OutboundTell[], trace?: string): Promise<void>;
  /** Hands non-durable tells (`durable: false`) to the soft path; never fails; may ask the sender to wait for room. */
  sendSoft(from: EntityRef, tells: readonly SoftTell[]): Promise<void> | undefined;
  /** The journal's record of a command this entity handled, if any (the durable dedupe record). */
  findCommand(key: string, commandId: string): Promise<JournalRecord | undefined>;
  notify(userId: string, message: unknown, trace?: string): void;
  publish(topic: string, event: unknown, from: EntityRef): void;
  /** Runs a node service (no earlier than `at`, when given); its answer is told back to `self`. */
  request(self: EntityRef, service: string, payload: unknown, trace?: string, at?: number): void;
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

// Shared empty values: an incarnation (one per active entity) is immutable, and a fresh
// empty array or table in each was heap per entity for nothing.
const NO_TELLS: readonly OutboundTell[] = Object.freeze([]);
const NO_TIMERS: Record<string, TimerEntry> = Object.freeze({});

export function freshIncarnation<S>(behavior: Behavior<S, unknown, unknown, unknown, unknown>, id: string): Incarnation<S> {
  return { state: behavior.initial(id), seq: 0, dedupe: emptyDedupe, outbox: NO_TELLS, timers: NO_TIMERS, unsnapshotted: 0 };
}

/** Snapshots written before dedupe.ts kept a window of ids (`seen`) instead. */
function upgraded(incarnation: Incarnation<unknown>): Incarnation<unknown> {
  if (incarnation.dedupe) return incarnation;
  const legacy = incarnation as Incarnation<unknown> & { seen?: { id: string }[] };
  const dedupe = (legacy.seen ?? []).reduce((d, c) => remember(d, c.id, incarnation.seq), emptyDedupe);
  return { ...incarnation, dedupe, outbox: [] };
}


/** Rebuilds an incarnation from one journal record (recovery). */
export function replay(behavior: AnyBehavior, incarnation: Incarnation<unknown>, record: JournalRecord): Incarnation<unknown> {
  const events = record.v === behavior.eventVersion || !behavior.upcast
    ? record.events
    : record.events.map((e) => behavior.upcast!(e, record.v));
  let state = incarnation.state;
  for (const event of events) state = behavior.apply(state, event);
  const timers = { ...incarnation.timers };
  for (const name of record.timersCancelled) delete timers[name];
  for (const t of record.timersSet) timers[t.name] = { at: t.at, message: t.message };
  const seq = incarnation.seq + 1;
  // Every replayed entry's tells may be unsent (a crash after the write): the last one's are re-sent on activation.
  const dedupe = remember(incarnation.dedupe, record.cmd, seq, record.from, record.rejection);
  return { ...incarnation, state, seq, dedupe, outbox: record.tells, timers, unsnapshotted: 0 };
}

/**
 * Splits a reducer's effects into what is journaled and what is done after; durable tells
 * carry their origin. `journaledTimers`: the timers the journal holds before this command,
 * which alone a `durable: false` set re-arms in memory (`rearmed`); without it every set is
 * journaled.
 */
export function planEffects(
  commandId: string, effects: readonly Effect[], origin?: Omit<Origin, 'i'>, journaledTimers?: Readonly<Record<string, TimerEntry>>,
) {
  const tells: OutboundTell[] = [];
  const softTells: OutboundTell[] = [];
  const timersSet: { name: string; at: number; message: unknown }[] = [];
  const rearmed: { name: string; at: number; message: unknown }[] = [];
  const timersCancelled: string[] = [];
  const notifications: { userId: string; message: unknown }[] = [];
  const publications: { topic: string; event: unknown }[] = [];
  const requests: { service: string; payload: unknown; at?: number }[] = [];
  effects.forEach((effect, i) => {
    switch (effect.type) {
      case 'tell': {
        const tell = { id: `${commandId}>${i}`, to: effect.to, message: effect.message };
        if (effect.durable === false) softTells.push(tell);
        else tells.push(origin ? { ...tell, origin: { ...origin, i } } : tell);
        break;
      }
      case 'timer.set': {
        const timer = { name: effect.name, at: effect.at, message: effect.message };
        const soft = effect.durable === false && journaledTimers !== undefined && Object.hasOwn(journaledTimers, effect.name);
        (soft ? rearmed : timersSet).push(timer);
        break;
      }
      case 'timer.cancel': timersCancelled.push(effect.name); break;
      case 'notify': notifications.push({ userId: effect.userId, message: effect.message }); break;
      case 'publish': publications.push({ topic: effect.topic, event: effect.event }); break;
      case 'request': requests.push({ service: effect.service, payload: effect.payload, at: effect.at }); break;
    }
  });
  // Cancelled in the journal by this outcome, a timer re-armed only in memory would be lost on a crash.
  for (let i = rearmed.length - 1; i >= 0; i--) {
    if (timersCancelled.includes(rearmed[i]!.name)) timersSet.push(...rearmed.splice(i, 1));
  }
  return { tells, softTells, timersSet, rearmed, timersCancelled, notifications, publications, requests };
}

export interface PersistContext {
  readonly recovering?: boolean;
  /** nact's persist: `options` reaches the journal's append (persistence-engine.ts). */
  persist(record: JournalRecord, tags?: string[], options?: AppendOptions): Promise<void>;
}

export interface EntityActorOptions {
  readonly behavior: AnyBehavior;
  readonly self: EntityRef;
  readonly key: string;
  readonly host: ActorHost;
  /** Journal entries between snapshots (0: only when passivated). */
  readonly snapshotEvery: number;
  /**
   * Told (publish) the incarnation the actor is about to return, after recovery and after each
   * command, before the caller hears the outcome, so a query answered from it (see
   * ShardHost.queryNow) reads its own writes. Only states the actor returns are
   * published: a command's new state after its journal write (and its tells' append)
   * succeeded; never the state of a command whose write failed, nor anything once the
   * incarnation is poisoned.
   */
  readonly published?: { publish(incarnation: Incarnation<unknown>): void };
}

/**
 * Whether a command's outcome is journaled: it changed something durable, was refused
 * (so a redelivery is refused alike), or is a tell from an entity (so the sender's
 * high-water mark survives a restart).
 */
function isJournaled(
  command: Pick<CommandEnvelope, 'origin'>, outcome: Outcome<unknown, unknown>, plan: ReturnType<typeof planEffects>,
): boolean {
  return outcome.events.length > 0 || plan.tells.length > 0 || plan.timersSet.length > 0 || plan.timersCancelled.length > 0
    || outcome.rejection !== undefined || command.origin !== undefined;
}


/** The command id a reducer sees for a soft message (which has none). */
export const SOFT_COMMAND_ID = 'soft';

/** A redelivered command gets the answer it got: its refusal, or `duplicate` when it was applied. */
function answerAgain(rejection: Refusal | undefined): CommandResult {
  return rejection ? { status: 'rejected', rejection } : { status: 'duplicate' };
}

/** One entity's actor: the nact actor function, and its soft messages' way around the mailbox. */
export interface EntityActor {
  /** The nact actor function (a method: nact is handed a function that calls it). */
  receive(given: Incarnation<unknown>, msg: ActorMessage | JournalRecord, ctx: PersistContext): Promise<Incarnation<unknown>>;
  /**
   * Handles a soft message at once, outside the mailbox; the host calls it only while no
   * message of this entity is in flight (so it cannot overtake one) and marks the entity
   * busy meanwhile. The same decision, effects and published state as the mailbox's
   * `soft`, in the same order; a promise when the sender must wait for room on the soft
   * path (the state is applied already). Undefined when it cannot be done here and now
   * (not recovered yet, or a soft snapshot is due): the caller goes through the mailbox.
   */
  softNow(message: unknown): SoftOutcome | Promise<SoftOutcome> | undefined;
  /**
   * Fires a due timer at once, outside the mailbox and the log, as softNow handles a soft
   * message, when its outcome is soft but for re-arming that timer in memory (a driver's
   * presence): nothing in it needs the log's exactly-once, as a duplicate fire re-sends soft
   * copies and re-arms. Undefined when it cannot (another outcome, the timer re-set since,
   * not recovered): nothing is applied and the fire goes through the log.
   */
  fireNow(name: string, at: number): SoftOutcome | Promise<SoftOutcome> | undefined;
  /**
   * The journal sequence number a new mailbox continues from, when this incarnation can go
   * on in one (recovered, not poisoned): the number of entries it applied, which is nact's
   * own count as long as no write failed (a failed write poisons it). Undefined otherwise.
   */
  resumableAt(): number | undefined;
}

/** The command as dedupe sees it: its id and, for a tell from an entity, its origin. */
type Handled = Pick<CommandEnvelope, 'id' | 'origin' | 'trace'>;

/** The nact actor function for one entity, and its soft path around the mailbox. */
export function entityActor(options: EntityActorOptions): EntityActor {
  return new EntityActorOf(options);
}

/**
 * One entity's actor as a class: its steps are methods shared by every entity, so an entity
 * costs its fields, not a closure per step (a node holds one per online driver); the function
 * nact is handed belongs to the mailbox, and goes with it (see ShardHost's hibernation).
 */
class EntityActorOf implements EntityActor, EntityActorOptions {
  // The options' fields, held here rather than as the options object (one object less per entity).
  readonly behavior: AnyBehavior;
  readonly self: EntityRef;
  readonly key: string;
  readonly host: ActorHost;
  readonly snapshotEvery: number;
  readonly published: EntityActorOptions['published'];
  /**
   * The incarnation the actor last published: what every message after activation starts
   * from (nact's copy of the state lags behind a soft message handled outside its mailbox).
   */
  #current: Incarnation<unknown> | undefined;
  // Set when a write failed: nact has already advanced its sequence number, so
  // this incarnation must handle nothing more until it is stopped and recovered.
  #poisoned = false;

  constructor(options: EntityActorOptions) {
    this.behavior = options.behavior;
    this.self = options.self;
    this.key = options.key;
    this.host = options.host;
    this.snapshotEvery = options.snapshotEvery;
    this.published = options.published;
  }

  #onState(incarnation: Incarnation<unknown>): void {
    this.#current = incarnation;
    this.published?.publish(incarnation);
  }

  resumableAt(): number | undefined {
    return this.#poisoned ? undefined : this.#current?.seq;
  }

  /** `journaledTimers`: the timers the journal holds before this command (see planEffects). */
  async #handleOutcome(
    incarnation: Incarnation<unknown>, command: Handled, at: number, outcome: Outcome<unknown, unknown>, ctx: PersistContext,
    append?: AppendOptions, journaledTimers = incarnation.timers,
  ): Promise<[Incarnation<unknown>, CommandResult]> {
    const { behavior, self, key, host, snapshotEvery } = this;
    const plan = planEffects(command.id, outcome.effects, { from: key, seq: incarnation.seq + 1 }, journaledTimers);
    let next: Incarnation<unknown> = { ...incarnation, state: outcome.state };
    if (isJournaled(command, outcome, plan)) {
      // A record is written anyway: timers re-armed in memory go in it too.
      const timersSet = plan.rearmed.length > 0 ? [...plan.timersSet, ...plan.rearmed] : plan.timersSet;
      for (const t of timersSet) await host.remember(self, t.name, t.at);
      const record: JournalRecord = {
        v: behavior.eventVersion, cmd: command.id, at, events: outcome.events, tells: plan.tells,
        timersSet, timersCancelled: plan.timersCancelled,
        ...(command.origin ? { from: command.origin } : {}), ...(outcome.rejection ? { rejection: outcome.rejection } : {}),
      };
      await (append ? ctx.persist(record, [], append) : ctx.persist(record));
      const timers = { ...incarnation.timers };
      for (const name of plan.timersCancelled) { delete timers[name]; host.disarmTimer(self, name); }
      for (const t of timersSet) { timers[t.name] = { at: t.at, message: t.message }; host.armTimer(self, t.name, t.at); }
      const seq = incarnation.seq + 1;
      const dedupe = remember(incarnation.dedupe, command.id, seq, command.origin, outcome.rejection);
      next = { state: outcome.state, seq, dedupe, outbox: plan.tells, timers, unsnapshotted: incarnation.unsnapshotted };
      // Snapshots are the runtime's alone, stamped with the sequence number of the entry
      // just journaled: a state that was not journaled can never be saved (nact's own
      // periodic snapshots could save the old state under a number a failed write used).
      if (snapshotEvery > 0 && next.seq % snapshotEvery === 0) {
        await host.saveSnapshot(key, next.seq, { ...next, unsnapshotted: 0 }).then(() => { next.unsnapshotted = 0; }, () => undefined);
      }
    } else {
      // The journal keeps the earlier due time of these: after a crash they fire then.
      if (plan.rearmed.length > 0) {
        next.timers = { ...next.timers };
        for (const t of plan.rearmed) { next.timers[t.name] = { at: t.at, message: t.message }; host.armTimer(self, t.name, t.at); }
      }
      if (outcome.state !== incarnation.state) {
        next.unsnapshotted = incarnation.unsnapshotted + 1;
        if (behavior.softSnapshotEvery && next.unsnapshotted >= behavior.softSnapshotEvery) {
          // Best effort: a failed snapshot only means more soft state lost on a crash.
          await host.saveSnapshot(key, next.seq, { ...next, unsnapshotted: 0 }).then(() => { next.unsnapshotted = 0; }, () => undefined);
        }
      }
    }
    // Timers cancelled and set again in one command keep their reminder.
    for (const name of plan.timersCancelled) if (!plan.timersSet.some((t) => t.name === name)) host.forget(self, name);
    // The outbox is journaled without the trace (a re-send after a crash starts no trace).
    if (plan.tells.length > 0) await host.send(self, plan.tells, command.trace);
    // Soft copies (a driver's in its cell) skip the log: last-write-wins at the receiver.
    if (plan.softTells.length > 0) await host.sendSoft(self, plan.softTells);
    next.outbox = NO_TELLS;
    for (const n of plan.notifications) host.notify(n.userId, n.message, command.trace);
    for (const p of plan.publications) host.publish(p.topic, p.event, self);
    for (const r of plan.requests) host.request(self, r.service, r.payload, command.trace, r.at);
    const status: CommandStatus = outcome.rejection ? 'rejected' : 'applied';
    return [next, { status, rejection: outcome.rejection, reply: outcome.reply }];
  }

  async #runCommand(
    incarnation: Incarnation<unknown>, command: Handled, at: number, message: unknown, ctx: PersistContext,
  ): Promise<[Incarnation<unknown>, CommandResult]> {
    const { self, key, host } = this;
    const verdict = recognise(incarnation.dedupe, command.id, command.origin);
    if (verdict.kind === 'duplicate') return [incarnation, answerAgain(verdict.rejection)];
    // The reducer is pure, so deciding before knowing whether the command is new costs
    // nothing. When memory cannot tell, the journal settles it, and only if the outcome is
    // journaled (an outcome that changes nothing durable needs no record): the write itself
    // is conditional on the entity having no entry for this command id (one statement, no
    // lookup before every new command). Only a refused write asks how it was answered.
    const outcome = this.#decide(incarnation.state, message, at, command.id);
    if (verdict.kind !== 'unknown') return this.#handleOutcome(incarnation, command, at, outcome, ctx);
    try {
      return await this.#handleOutcome(incarnation, command, at, outcome, ctx, { unlessCommand: command.id });
    } catch (error) {
      if (!(error instanceof DuplicateCommandError)) throw error;
      const earlier = await host.findCommand(key, command.id);
      // nact numbered the refused write already, so this incarnation is out of step with its
      // journal's numbering: it is recovered (as after a failed write), the command answered.
      this.#poisoned = true;
      host.poisoned(self, error);
      return [incarnation, answerAgain(earlier?.rejection)];
    }
  }

  /** A reducer that throws has a bug: a permanent failure (the command is dead-lettered, not retried). */
  #decide(state: unknown, message: unknown, at: number, commandId: string): Outcome<unknown, unknown> {
    const { behavior, self, key, host } = this;
    try {
      return behavior.handle(state, message, { self, now: at, commandId });
    } catch (error) {
      host.reducerFailed(self, message, error);
      throw new ReducerError(`the reducer of ${key} threw: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
  }

  /**
   * What nact holds as the actor's state: the replayed incarnation while it recovers, then
   * nothing. Every message after activation starts from `current`; a copy in nact would be
   * an older version of the entity's state (and all it refers to) kept alive for nothing.
   */
  async receive(
    given: Incarnation<unknown>, msg: ActorMessage | JournalRecord, ctx: PersistContext,
  ): Promise<Incarnation<unknown>> {
    const next = await this.#step(given, msg, ctx);
    return this.#current === undefined ? next : undefined as never;
  }

  async #step(
    given: Incarnation<unknown>, msg: ActorMessage | JournalRecord, ctx: PersistContext,
  ): Promise<Incarnation<unknown>> {
    const { behavior, self, key, host } = this;
    if (ctx.recovering) return replay(behavior, upgraded(given), msg as JournalRecord);
    const incarnation = this.#current ?? upgraded(given);
    const m = msg as ActorMessage;
    if (this.#poisoned) {
      const failure: Failure = { kind: 'entity_stopped', retriable: true, message: `${key} is recovering; try again` };
      if (m.t === 'command') m.done.resolve({ status: 'failed', failure });
      else if (m.t === 'query') m.done.reject(new Error(failure.message));
      else if (m.t === 'soft') m.done.resolve('dropped');
      else if (m.t === 'softBatch') { m.batch.started = true; for (const d of m.batch.done) d.resolve('dropped'); }
      else m.done.resolve();
      return incarnation;
    }
    switch (m.t) {
      case 'activate':
        return this.#activate(incarnation, m.done);
      case 'soft':
        return this.#runSoft(incarnation, m.message, m.done);
      case 'softBatch':
        return this.#runSoftBatch(incarnation, m.batch);
      case 'query':
        try {
          if (!behavior.query) throw new Error(`${self.kind} answers no queries`);
          m.done.resolve(behavior.query(incarnation.state, m.query, { self, now: host.now() }));
        } catch (error) {
          m.done.reject(error);
        }
        return incarnation;
      case 'snapshot':
        try {
          if (incarnation.unsnapshotted > 0 || incarnation.seq > 0) {
            await host.saveSnapshot(key, incarnation.seq, { ...incarnation, unsnapshotted: 0 });
          }
          const next = { ...incarnation, unsnapshotted: 0 };
          this.#current = next;
          m.done.resolve();
          return next;
        } catch (error) {
          m.done.reject(error);
          return incarnation;
        }
      case 'command': {
        // A fired timer arrives through the log like any command (see timers.ts).
        const fire = isTimerFire(m.command.message) ? m.command.message : undefined;
        const timer = fire ? incarnation.timers[fire.$timer] : undefined;
        if (fire && (!timer || timer.at !== fire.at)) {
          // Fired and handled already, or cancelled or re-set since it was due: the timer table decides fires.
          const known = recognise(incarnation.dedupe, m.command.id);
          m.done.resolve(answerAgain(known.kind === 'duplicate' ? known.rejection : undefined));
          return incarnation;
        }
        // Handling time, not acceptance time: a command delivered late (after downtime)
        // must not arm timers that are already in the past. Replays never re-run the
        // reducer (events are journaled), so this stays deterministic where it matters.
        const at = host.now();
        try {
          const [next, result] = fire && timer
            ? await this.#runTimer(incarnation, m.command.id, at, fire.$timer, timer.message, ctx)
            : await this.#runCommand(incarnation, m.command, at, m.command.message, ctx);
          if (!this.#poisoned) this.#onState(next);
          m.done.resolve(result);
          return next;
        } catch (error) {
          const failure = failureOf(error);
          // A reducer that threw changed nothing: this incarnation is still in step with its journal.
          if (!(error instanceof ReducerError)) {
            this.#poisoned = true;
            host.poisoned(self, error);
          }
          m.done.resolve({ status: 'failed', failure });
          return incarnation;
        }
      }
    }
  }

  /**
   * A soft message: no command id, no dedupe, no journal. Applied only when its outcome
   * changes nothing durable (as a command with such an outcome would not be journaled
   * either); else nothing is applied and the sender hears `durable`.
   */
  async #runSoft(incarnation: Incarnation<unknown>, message: unknown, done: Deferred<SoftOutcome>): Promise<Incarnation<unknown>> {
    const { self, host } = this;
    const at = host.now();
    let outcome: Outcome<unknown, unknown>;
    try {
      outcome = this.#decide(incarnation.state, message, at, SOFT_COMMAND_ID);
    } catch {
      done.resolve('dropped'); // reported by decide; nothing changed
      return incarnation;
    }
    if (isJournaled({}, outcome, planEffects(SOFT_COMMAND_ID, outcome.effects))) { done.resolve('durable'); return incarnation; }
    try {
      const journalsNothing = { persist: () => Promise.reject(new Error('a soft message journals nothing')) };
      const [next] = await this.#handleOutcome(incarnation, { id: SOFT_COMMAND_ID }, at, outcome, journalsNothing);
      // Queries answer from the published state: a soft change (a fix, a cell's copy) is one too.
      this.#onState(next);
      done.resolve('applied');
      return next;
    } catch (error) {
      // Only a soft snapshot or a side effect can fail here: memory is still in step with the journal.
      host.reducerFailed(self, message, error);
      done.resolve('dropped');
      return incarnation;
    }
  }

  /** A batch's soft messages one after the other, each as softNow would (runSoft when it cannot), each answered. */
  async #runSoftBatch(incarnation: Incarnation<unknown>, batch: SoftBatch): Promise<Incarnation<unknown>> {
    batch.started = true;
    let latest = incarnation;
    for (let i = 0; i < batch.messages.length; i++) {
      const message = batch.messages[i];
      const done = batch.done[i]!;
      const now = this.softNow(message);
      if (now === undefined) latest = await this.#runSoft(this.#current ?? latest, message, done);
      else done.resolve(typeof now === 'string' ? now : await now);
      latest = this.#current ?? latest;
    }
    return latest;
  }

  /** runSoft without the mailbox (see EntityActor.softNow). */
  softNow(message: unknown): SoftOutcome | Promise<SoftOutcome> | undefined {
    if (this.#poisoned && this.#current) return 'dropped';
    return this.#handleNow(message, undefined);
  }

  fireNow(name: string, at: number): SoftOutcome | Promise<SoftOutcome> | undefined {
    const timer = this.#current?.timers[name];
    if (this.#poisoned || !timer || timer.at !== at) return undefined;
    const outcome = this.#handleNow(timer.message, name);
    // Refused here (or a reducer that threw): the log's way decides, dead-letters, reports.
    return outcome === 'durable' || outcome === 'dropped' ? undefined : outcome;
  }

  /** softNow's and fireNow's work: `rearms`, the timer being fired, which the outcome may re-arm in memory alone. */
  #handleNow(message: unknown, rearms: string | undefined): SoftOutcome | Promise<SoftOutcome> | undefined {
    const { behavior, self, host } = this;
    const incarnation = this.#current;
    if (!incarnation) return undefined;
    const at = host.now();
    let outcome: Outcome<unknown, unknown>;
    try {
      outcome = this.#decide(incarnation.state, message, at, SOFT_COMMAND_ID);
    } catch {
      return 'dropped'; // reported by decide; nothing changed
    }
    // What planEffects and isJournaled decide, without their arrays: a fix's outcome is one or two soft tells.
    if (outcome.events.length > 0 || outcome.rejection !== undefined) return 'durable';
    // Indexed loops: for-of here took an iterator and a result object per effect (measured).
    const effects = outcome.effects;
    let soft = 0;
    let rearm: Extract<Effect, { type: 'timer.set' }> | undefined;
    for (let i = 0; i < effects.length; i++) {
      const e = effects[i]!;
      if (e.type === 'timer.set' && e.name === rearms && e.durable === false && !rearm) { rearm = e; continue; }
      if (e.type === 'timer.set' || e.type === 'timer.cancel' || (e.type === 'tell' && e.durable !== false)) return 'durable';
      if (e.type === 'tell') soft++;
    }
    // Side effects past the soft tells and the re-armed timer: a presence firing has none, and
    // skips the side-effect loops below (three iterators each).
    const others = effects.length - soft - (rearm ? 1 : 0);
    // A fire that does not re-arm its timer cancels it in the journal.
    if (rearms !== undefined && !rearm) return 'durable';
    const changed = outcome.state !== incarnation.state;
    const unsnapshotted = changed ? incarnation.unsnapshotted + 1 : incarnation.unsnapshotted;
    // A soft snapshot awaits storage: the mailbox takes this one.
    if (changed && behavior.softSnapshotEvery && unsnapshotted >= behavior.softSnapshotEvery) return undefined;
    let room: Promise<void> | undefined;
    try {
      // Effects in planEffects' order: soft tells (all of them, in order), notifications, publications, requests.
      if (soft > 0) {
        const tells = soft === effects.length ? effects as readonly SoftTell[]
          : effects.filter((e): e is Extract<Effect, { type: 'tell' }> => e.type === 'tell');
        room = host.sendSoft(self, tells);
      }
      if (others > 0) {
        for (const e of effects) if (e.type === 'notify') host.notify(e.userId, e.message);
        for (const e of effects) if (e.type === 'publish') host.publish(e.topic, e.event, self);
        for (const e of effects) if (e.type === 'request') host.request(self, e.service, e.payload, undefined, e.at);
      }
    } catch (error) {
      host.reducerFailed(self, message, error);
      return 'dropped';
    }
    // In place: a new incarnation per fix (and per cell copy) was an object promoted with
    // every state it held. Nothing else holds this one: the activation publishes the same
    // object, snapshots are written from copies, and no message of this entity is in flight
    // (softNow runs only then), so no step is reading it meanwhile.
    if (changed || incarnation.outbox.length > 0) {
      incarnation.state = outcome.state;
      incarnation.outbox = NO_TELLS;
      incarnation.unsnapshotted = unsnapshotted;
    }
    if (rearm) {
      // A new table: snapshots being written share the old one.
      incarnation.timers = { ...incarnation.timers, [rearm.name]: { at: rearm.at, message: rearm.message } };
      host.armTimer(self, rearm.name, rearm.at);
    }
    this.#onState(incarnation);
    return room ? room.then((): SoftOutcome => 'applied') : 'applied';
  }

  /**
   * Arms the timers and re-sends the outbox of the last entry before anything else is
   * handled (see `Incarnation.outbox`). If the log refuses it, this incarnation is
   * poisoned: it handles nothing, so no later tell can overtake the unsent ones.
   */
  async #activate(incarnation: Incarnation<unknown>, done: Deferred<void>): Promise<Incarnation<unknown>> {
    const { self, host } = this;
    for (const [name, timer] of Object.entries(incarnation.timers)) host.armTimer(self, name, timer.at);
    if (incarnation.outbox.length === 0) { this.#onState(incarnation); done.resolve(); return incarnation; }
    try {
      await host.send(self, incarnation.outbox);
      const next = { ...incarnation, outbox: NO_TELLS };
      this.#onState(next);
      done.resolve();
      return next;
    } catch (error) {
      this.#poisoned = true;
      done.resolve();
      host.poisoned(self, error);
      return incarnation;
    }
  }

  /** A fired timer runs its message as a command; the timer is cancelled in the journal unless the reducer sets it again. */
  async #runTimer(
    incarnation: Incarnation<unknown>, commandId: string, at: number, name: string, message: unknown, ctx: PersistContext,
  ): Promise<[Incarnation<unknown>, CommandResult]> {
    const { [name]: _fired, ...rest } = incarnation.timers;
    const outcome = this.#decide(incarnation.state, message, at, commandId);
    const resets = outcome.effects.some((e) => e.type === 'timer.set' && e.name === name);
    const cancelsFired: Effect = { type: 'timer.cancel', name };
    const effects = resets ? outcome.effects : [cancelsFired, ...outcome.effects];
    // The journal still holds the fired timer: a re-set of it may stay in memory.
    return this.#handleOutcome({ ...incarnation, timers: rest }, { id: commandId }, at, { ...outcome, effects }, ctx, undefined, incarnation.timers);
  }
}

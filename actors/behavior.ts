// The contract between the pure domain and the runtime that runs it.
//
// A behavior is a reducer over commands that also tells the runtime what to
// persist (events) and what to do (effects). The runtime never looks inside
// state, events or messages; the domain never touches I/O or clocks: the
// current time arrives in the context, so replays are deterministic.

export type EntityKind = 'driver' | 'booking' | 'cell' | (string & {});

export interface EntityRef {
  readonly kind: EntityKind;
  readonly id: string;
}

export interface HandleContext {
  /** The entity being handled. */
  readonly self: EntityRef;
  /** Milliseconds since the epoch, fixed for the whole handling of one message. */
  readonly now: number;
  /** Id of the command being handled (stable across redeliveries). */
  readonly commandId: string;
}

/** What a reducer asks the runtime to do after its events are persisted. */
export type Effect =
  /** A command to another entity. Durable tells go through the command log with an id
   *  derived from the causing command, so a replayed effect is dropped by its receiver. */
  | { readonly type: 'tell'; readonly to: EntityRef; readonly message: unknown; readonly durable?: boolean }
  /** A push to a user's live sessions (WebSocket), best effort. */
  | { readonly type: 'notify'; readonly userId: string; readonly message: unknown }
  /** Arm (or re-arm) a named timer; the message is delivered to this entity at `at`.
   *  Timers are persisted with the entity and re-armed after recovery. With `durable:
   *  false`, a timer the journal holds already is re-armed in memory only (and in
   *  snapshots): no journal row and no reminder write, and after a crash it fires at the
   *  due time the journal holds, which is earlier, so at once if that has passed. For
   *  periodic work that a restart should run at once anyway (a driver's presence), where
   *  a journal row per period was the cost of an idle online driver. A timer the journal
   *  does not hold (new, or cancelled in the same outcome) is journaled as usual. */
  | { readonly type: 'timer.set'; readonly name: string; readonly at: number; readonly message: unknown; readonly durable?: false }
  | { readonly type: 'timer.cancel'; readonly name: string }
  /** A domain event for projections and analytics (already persisted in the journal). */
  | { readonly type: 'publish'; readonly topic: string; readonly event: unknown }
  /** Asks a node service (such as the nearest-driver search across cells) for an answer
   *  that comes back to this entity as a command. Best effort: an entity that needs the
   *  answer keeps a timer to ask again. With `at`, the service runs no earlier than then
   *  (held in memory on this node, not journaled: a soft deadline such as a batch window's,
   *  lost if the node stops, where a timer would cost a journal row). */
  | { readonly type: 'request'; readonly service: string; readonly payload: unknown; readonly at?: number };

/**
 * A service runs outside any entity (it may ask many) and answers with a message for
 * the entity that requested it; undefined means no answer is sent.
 */
export type Service = (payload: unknown, ports: ServicePorts) => Promise<unknown>;

export interface ServicePorts {
  readonly now: number;
  readonly requester: EntityRef;
  /** A query's answer: at once when the entity is active on this node, else a promise of it. */
  ask<A>(to: EntityRef, query: unknown): A | Promise<A>;
  /**
   * A query's answer when the entity is active on this node, else undefined (nothing is
   * asked): for queries that may only be answered in process (a cell's `nearest.offer`).
   */
  askNow?<A>(to: EntityRef, query: unknown): { readonly value: A } | undefined;
}

/**
 * What handling one message came to. `R` is the behavior's closed set of refusal codes
 * (see rejections.ts); the runtime sees them as strings.
 */
export interface Outcome<S, E, R extends string = string> {
  readonly state: S;
  readonly events: readonly E[];
  readonly effects: readonly Effect[];
  /** A refusal the caller should see (the command was understood but not allowed). */
  readonly rejection?: { readonly code: R; readonly message: string };
  /** A value returned to a caller waiting on this command (for example the created booking). */
  readonly reply?: unknown;
}

export interface Behavior<S, M, E, Q = never, A = unknown, R extends string = string> {
  readonly kind: EntityKind;
  /** Version of the event payloads this code writes; older payloads go through `upcast`. */
  readonly eventVersion: number;
  initial(id: string): S;
  handle(state: S, message: M, ctx: HandleContext): Outcome<S, E, R>;
  /** Rebuilds state from a persisted event during recovery. */
  apply(state: S, event: E): S;
  /** Read-only queries (`ask`). */
  query?(state: S, query: Q, ctx: { readonly self: EntityRef; readonly now: number }): A;
  /** Turns an event written by an older version into the current shape. */
  upcast?(event: unknown, version: number): E;
  /** Journal entries between snapshots (0 or absent: never by count). */
  readonly snapshotEvery?: number;
  /** Snapshot after this many messages changed state without journaling anything (soft
   *  state such as GPS fixes), so a restart loses little of it. Absent: only on passivation. */
  readonly softSnapshotEvery?: number;
  /** State is only ever soft (rebuilt by others' next messages): never snapshotted, so a
   *  restarted entity starts empty instead of showing what it knew before. */
  readonly ephemeral?: boolean;
}

/** Any behavior, as the runtime and the node hold them (each its own types inside). */
export type AnyBehavior = Behavior<unknown, unknown, unknown, unknown, unknown>;

/** Nothing, shared: most outcomes (every GPS fix) persist no event, and an empty array each was garbage. */
export const NOTHING: readonly never[] = Object.freeze([]);

/** A reducer result with nothing persisted and nothing to do (optionally a reply to a waiting caller). */
export function unchanged<S, E, R extends string = never>(state: S, reply?: unknown): Outcome<S, E, R> {
  return reply === undefined ? { state, events: NOTHING, effects: NOTHING } : { state, events: NOTHING, effects: NOTHING, reply };
}

/** A refusal: nothing persisted, nothing done (unless `effects`), and the caller told why. */
export function rejected<S, E, R extends string>(state: S, code: R, message: string, effects: readonly Effect[] = []): Outcome<S, E, R> {
  return { state, events: [], effects, rejection: { code, message } };
}

// Recognising a command handled before, at any later time, in bounded memory.
//
// Where commands come from, and what keeps them in order:
// - Durable tells from entities. A sender journals a command's tells (its outbox)
//   and appends them before it handles its next command; an activation first
//   re-sends the outbox of the last entry (entity-actor.ts), so a tell is in the
//   log before any later tell of its sender. All tells to one receiver go to its
//   shard's partition, which keeps them in append order (Kafka: idempotent
//   producer, one request in flight), and the region hands an entity its records
//   in offset order. So one sender's tells reach one receiver in increasing
//   *origin* (the sender's journal sequence number and the effect's index), and
//   anything at or below the receiver's high-water mark for that sender is a
//   re-send, a replay of the partition, or a dead letter retried by an operator.
// - Commands from the HTTP edge, node services and the scheduler: ids are random,
//   or derived from a request (an Idempotency-Key, a quote, a scheduled slot) that
//   a client or a timer may repeat at any time. No order to lean on.
// - Timer fires (`timer:<key>/<name>/<at>`): the entity's timer table decides
//   them (a fire is taken only while that timer is set for that time), not this.
//
// So memory (part of the incarnation, snapshotted, rebuilt on replay) holds a
// high-water mark per sender and the last few ids with their refusals; both are
// capped. What memory cannot settle (a tell at or below its sender's mark, a
// sender evicted from memory, any command without origin) is settled by the
// journal, the durable record: every applied or refused command, and every tell
// from an entity, is journaled under its id. The journal is asked only when the
// decision would be journaled, and by the write itself: an append conditional on the
// entity having no entry for the id (Journal.append `unlessCommand`); only when it has,
// Journal.findCommand looks up how the command was answered. A command whose
// outcome changes nothing durable (a GPS fix, a no-op) is not recorded and may be
// decided again when redelivered.

/** Where a durable tell comes from: its sender and its place in the sender's history. */
export interface Origin {
  /** The sender's entity key. */
  readonly from: string;
  /** The sender's journal sequence number of the entry that holds the tell. */
  readonly seq: number;
  /** The tell's index among that entry's effects. */
  readonly i: number;
}

export interface Refusal {
  readonly code: string;
  readonly message: string;
}

interface Mark {
  readonly seq: number;
  readonly i: number;
  /** The receiver's own sequence number when the mark last moved (the least recent is evicted first). */
  readonly at: number;
}

interface RecentCommand {
  readonly id: string;
  readonly rejection?: Refusal;
}

export interface Dedupe {
  readonly marks: Readonly<Record<string, Mark>>;
  readonly recent: readonly RecentCommand[];
}

/** Senders whose mark is kept in memory; an evicted sender's tells are settled by the journal. */
export const MAX_SENDERS = 256;
/** Recent ids answered from memory (a redelivery after a crash is almost always among them). */
export const RECENT_COMMANDS = 64;

export type Verdict =
  /** Never handled: decide it. */
  | { readonly kind: 'new' }
  /** Handled before: answer as then (with its refusal, if it was refused). */
  | { readonly kind: 'duplicate'; readonly rejection?: Refusal }
  /** Memory cannot tell: the journal's record decides, if the outcome would be journaled. */
  | { readonly kind: 'unknown' };

export const emptyDedupe: Dedupe = { marks: {}, recent: [] };

export function recognise(d: Dedupe, id: string, origin?: Origin): Verdict {
  const recent = d.recent.find((r) => r.id === id);
  if (recent) return recent.rejection ? { kind: 'duplicate', rejection: recent.rejection } : { kind: 'duplicate' };
  const mark = origin && d.marks[origin.from];
  if (origin && mark && after(origin, mark)) return { kind: 'new' };
  return { kind: 'unknown' };
}

/** Notes a handled command; `at` is the receiver's sequence number of the entry that records it. */
export function remember(d: Dedupe, id: string, at: number, origin?: Origin, rejection?: Refusal): Dedupe {
  const entry: RecentCommand = rejection ? { id, rejection } : { id };
  // concat, not a spread: a spread's array keeps room to grow (152 bytes for one id, against
  // 40 exactly sized), and every active entity keeps this one.
  const recent = d.recent.slice(Math.max(0, d.recent.length - RECENT_COMMANDS + 1)).concat([entry]);
  if (!origin) return { marks: d.marks, recent };
  const mark = d.marks[origin.from];
  if (mark && !after(origin, mark)) return { marks: d.marks, recent };
  return { marks: capped({ ...d.marks, [origin.from]: { seq: origin.seq, i: origin.i, at } }), recent };
}

function after(origin: Origin, mark: Mark): boolean {
  return origin.seq > mark.seq || (origin.seq === mark.seq && origin.i > mark.i);
}

function capped(marks: Record<string, Mark>): Record<string, Mark> {
  const senders = Object.entries(marks);
  if (senders.length <= MAX_SENDERS) return marks;
  senders.sort(([, a], [, b]) => b.at - a.at);
  return Object.fromEntries(senders.slice(0, MAX_SENDERS));
}

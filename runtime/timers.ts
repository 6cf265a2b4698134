// Timers, as commands. An entity's timer is journaled with the command that set it
// and armed in memory while the entity is active; when it is due, the node appends
// a *fire* command to the entity's shard in the command log, with an id derived
// from the entity, the timer's name and its due time. From there it is a command
// like any other: retried while storage fails, dead-lettered if it never can be
// handled, redelivered after a crash and dropped as a duplicate once handled (its
// tells re-sent). Reminders (the durable note that an entity has a timer) bring
// the entity back after a restart or a shard move, and are re-scanned periodically.

import type { EntityRef } from '../actors/behavior.ts';
import { entityKey, type EntityKey } from './entity.ts';

/** The message of a fire command. The `$` keeps it apart from every domain message. */
export interface TimerFire {
  readonly $timer: string;
  readonly at: number;
}

export function isTimerFire(message: unknown): message is TimerFire {
  const m = message as Partial<TimerFire> | null;
  return typeof m === 'object' && m !== null && typeof m.$timer === 'string' && typeof m.at === 'number';
}

/** The same timer firing twice (two nodes, a retry) is one command. */
export function timerCommandId(self: EntityRef, name: string, at: number): string {
  return `timer:${entityKey(self)}/${name}/${at}`;
}

/** One armed timer of an entity: in the node's heap by due time, and in its entity's list. */
interface Armed<T> {
  readonly key: EntityKey;
  readonly name: string;
  readonly at: number;
  /** Armed in this order: equal due times fire in it. */
  readonly order: number;
  /** Whom `due` is called for. */
  readonly target: T;
  /** The entity's next armed timer: a short list (a driver's presence, a booking's offer and deadline). */
  next: Armed<T> | undefined;
  /** Where it is in the heap. */
  slot: number;
}

/** `a` is due before `b`. */
const before = <T>(a: Armed<T>, b: Armed<T>) => a.at < b.at || (a.at === b.at && a.order < b.order);

/** setTimeout holds at most ~24.8 days; a later wake-up finds nothing due and waits again. */
const MAX_DELAY_MS = 2 ** 31 - 1;

/**
 * The in-memory side of timers, armed while their entity is active: a heap of every armed
 * timer of the node by due time, under one setTimeout for the earliest. A node holds one per
 * online driver, and a Node timeout each (its object, closures and list entry) cost several
 * times what the timer holds. A timer found early by the node's clock (`now`) is kept for later.
 */
export class EntityTimers<T> {
  readonly #byEntity = new Map<EntityKey, Armed<T>>();
  readonly #heap: Armed<T>[] = [];
  readonly #now: () => number;
  readonly #due: (target: T, name: string, at: number) => void;
  #armed = 0;
  #wake: NodeJS.Timeout | undefined;
  #wakeAt = Number.POSITIVE_INFINITY;

  /** `due` is called once per timer that comes due, after it is disarmed. */
  constructor(now: () => number, due: (target: T, name: string, at: number) => void) {
    this.#now = now;
    this.#due = due;
  }

  arm(key: EntityKey, name: string, at: number, target: T): void {
    this.disarm(key, name);
    const armed: Armed<T> = { key, name, at, order: this.#armed++, target, next: this.#byEntity.get(key), slot: this.#heap.length };
    this.#byEntity.set(key, armed);
    this.#heap.push(armed);
    this.#up(armed.slot);
    this.#schedule();
  }

  disarm(key: EntityKey, name: string): void {
    let previous: Armed<T> | undefined;
    for (let a = this.#byEntity.get(key); a; previous = a, a = a.next) {
      if (a.name !== name) continue;
      this.#unlink(a, previous);
      this.#remove(a.slot);
      return;
    }
  }

  disarmAll(key: EntityKey): void {
    for (let a = this.#byEntity.get(key); a; a = a.next) this.#remove(a.slot);
    this.#byEntity.delete(key);
  }

  names(key: EntityKey): string[] {
    const names: string[] = [];
    for (let a = this.#byEntity.get(key); a; a = a.next) names.push(a.name);
    return names.reverse();
  }

  /** When the entity's next armed timer is due; undefined when it has none. */
  nextAt(key: EntityKey): number | undefined {
    let at: number | undefined;
    for (let a = this.#byEntity.get(key); a; a = a.next) if (at === undefined || a.at < at) at = a.at;
    return at;
  }

  /** Timers armed on the node. */
  get size(): number {
    return this.#heap.length;
  }

  /** Takes `a` out of its entity's list (`previous`: the entry before it there). */
  #unlink(a: Armed<T>, previous: Armed<T> | undefined): void {
    if (previous) previous.next = a.next;
    else if (a.next) this.#byEntity.set(a.key, a.next);
    else this.#byEntity.delete(a.key);
  }

  /** Wakes up for the earliest timer: at once if it is due, never later than it. */
  #schedule(): void {
    const first = this.#heap[0];
    if (first && this.#wake && this.#wakeAt <= first.at) return;
    if (this.#wake) clearTimeout(this.#wake);
    this.#wake = undefined;
    this.#wakeAt = Number.POSITIVE_INFINITY;
    if (!first) return;
    this.#wakeAt = first.at;
    this.#wake = setTimeout(() => this.#fireDue(), Math.min(Math.max(0, first.at - this.#now()), MAX_DELAY_MS));
  }

  #fireDue(): void {
    this.#wake = undefined;
    this.#wakeAt = Number.POSITIVE_INFINITY;
    const now = this.#now();
    const due: Armed<T>[] = [];
    while (this.#heap[0] && this.#heap[0].at <= now) {
      const a = this.#heap[0];
      this.disarm(a.key, a.name);
      due.push(a);
    }
    this.#schedule();
    for (const a of due) this.#due(a.target, a.name, a.at);
  }

  /** Removes heap entry i, keeping the heap in order; the last one gone, no wake-up keeps the process up. */
  #remove(i: number): void {
    const last = this.#heap.pop()!;
    if (this.#heap.length === 0) return this.#schedule();
    if (i < this.#heap.length) {
      this.#heap[i] = last;
      last.slot = i;
      this.#up(i);
      this.#down(last.slot);
    }
  }

  #up(i: number): void {
    const heap = this.#heap;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i]!, heap[parent]!)) return;
      this.#swap(i, parent);
      i = parent;
    }
  }

  #down(i: number): void {
    const heap = this.#heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let first = i;
      if (l < heap.length && before(heap[l]!, heap[first]!)) first = l;
      if (r < heap.length && before(heap[r]!, heap[first]!)) first = r;
      if (first === i) return;
      this.#swap(i, first);
      i = first;
    }
  }

  #swap(i: number, j: number): void {
    const heap = this.#heap;
    const a = heap[i]!;
    const b = heap[j]!;
    heap[i] = b;
    b.slot = i;
    heap[j] = a;
    a.slot = j;
  }
}

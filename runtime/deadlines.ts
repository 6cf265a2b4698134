// Deadlines of many things under one timer: a heap by due time of every item that has one,
// and one setTimeout for the earliest. A WebSocket session's auth deadline, then its token's
// expiry, was a Node timeout each (the Timeout object, its closure and context, its boxed
// numbers and often a timer list of its own: about 280 bytes per connected driver); here an
// item costs a slot number of its own and two array entries.

/** What the heap places: the item says where it is in it (-1 when it has no deadline). */
export interface Scheduled {
  deadlineSlot: number;
}

/** setTimeout holds at most ~24.8 days; a later wake-up finds nothing due and waits again. */
const MAX_DELAY_MS = 2 ** 31 - 1;

export class Deadlines<T extends Scheduled> {
  /** Due times and items, side by side: the times stay unboxed doubles. */
  readonly #at: number[] = [];
  readonly #items: T[] = [];
  readonly #due: (item: T) => void;
  readonly #now: () => number;
  #wake: NodeJS.Timeout | undefined;
  #wakeAt = Number.POSITIVE_INFINITY;

  /** `due` is called once per item whose time has come, after its deadline is cleared. */
  constructor(due: (item: T) => void, now: () => number = Date.now) {
    this.#due = due;
    this.#now = now;
  }

  /** The item is due at `at` (ms since the epoch): a deadline it had is moved. */
  set(item: T, at: number): void {
    let i = item.deadlineSlot;
    if (i < 0) {
      i = this.#items.length;
      this.#items.push(item);
      this.#at.push(at);
      item.deadlineSlot = i;
    } else {
      this.#at[i] = at;
      this.#down(i);
    }
    this.#up(item.deadlineSlot);
    this.#schedule();
  }

  clear(item: T): void {
    if (item.deadlineSlot < 0) return;
    this.#remove(item);
    this.#schedule();
  }

  #remove(item: T): void {
    const i = item.deadlineSlot;
    item.deadlineSlot = -1;
    const lastItem = this.#items.pop()!;
    const lastAt = this.#at.pop()!;
    if (i < this.#items.length) {
      this.#items[i] = lastItem;
      this.#at[i] = lastAt;
      lastItem.deadlineSlot = i;
      this.#up(i);
      this.#down(lastItem.deadlineSlot);
    }
  }

  /** When the item is due; undefined when it has no deadline. */
  dueAt(item: T): number | undefined {
    return item.deadlineSlot < 0 ? undefined : this.#at[item.deadlineSlot];
  }

  get size(): number {
    return this.#items.length;
  }

  /** Wakes up for the earliest: never later than it; no timer is left to keep the process up when none is due. */
  #schedule(): void {
    const first = this.#at[0];
    if (first !== undefined && this.#wake && this.#wakeAt <= first) return;
    if (this.#wake) clearTimeout(this.#wake);
    this.#wake = undefined;
    this.#wakeAt = Number.POSITIVE_INFINITY;
    if (first === undefined) return;
    this.#wakeAt = first;
    this.#wake = setTimeout(() => this.#fireDue(), Math.min(Math.max(0, first - this.#now()), MAX_DELAY_MS));
  }

  #fireDue(): void {
    this.#wake = undefined;
    this.#wakeAt = Number.POSITIVE_INFINITY;
    const now = this.#now();
    const due: T[] = [];
    while (this.#at.length > 0 && this.#at[0]! <= now) {
      const item = this.#items[0]!;
      this.#remove(item);
      due.push(item);
    }
    this.#schedule();
    for (const item of due) this.#due(item);
  }

  #up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!(this.#at[i]! < this.#at[parent]!)) return;
      this.#swap(i, parent);
      i = parent;
    }
  }

  #down(i: number): void {
    const n = this.#at.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let first = i;
      if (l < n && this.#at[l]! < this.#at[first]!) first = l;
      if (r < n && this.#at[r]! < this.#at[first]!) first = r;
      if (first === i) return;
      this.#swap(i, first);
      i = first;
    }
  }

  #swap(i: number, j: number): void {
    const at = this.#at[i]!;
    this.#at[i] = this.#at[j]!;
    this.#at[j] = at;
    const a = this.#items[i]!;
    const b = this.#items[j]!;
    this.#items[i] = b;
    b.deadlineSlot = i;
    this.#items[j] = a;
    a.deadlineSlot = j;
  }
}

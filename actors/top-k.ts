// The k best of a stream of (distance, driver) pairs: a max-heap of k, so each
// offer costs O(log k) and nothing is kept beyond k. Order is distance, then
// driverId, the order every nearest answer uses (so answers equal a sort-all).

interface Ranked {
  readonly driverId: string;
}

export interface Entry<T extends Ranked> {
  readonly km: number;
  readonly driver: T;
}

/** a worse than b: farther, or as far with the larger driverId. */
function worse<T extends Ranked>(a: Entry<T>, b: Entry<T>): boolean {
  return a.km > b.km || (a.km === b.km && a.driver.driverId > b.driver.driverId);
}

export class TopK<T extends Ranked = Ranked> {
  readonly k: number;
  readonly #heap: Entry<T>[] = [];

  constructor(k: number) {
    this.k = Math.max(0, Math.floor(k));
  }

  get size(): number {
    return this.#heap.length;
  }

  /** Distance a driver must not exceed to enter (ties enter by driverId): Infinity until k are held. */
  get bound(): number {
    return this.#heap.length < this.k ? Number.POSITIVE_INFINITY : this.#heap[0]!.km;
  }

  offer(km: number, driver: T): void {
    const heap = this.#heap;
    if (this.k === 0) return;
    const entry = { km, driver };
    if (heap.length < this.k) {
      heap.push(entry);
      this.#up(heap.length - 1);
    } else if (worse(heap[0]!, entry)) {
      heap[0] = entry;
      this.#down(0);
    }
  }

  /** The held entries, best first. */
  sorted(): Entry<T>[] {
    return [...this.#heap].sort((a, b) => (worse(a, b) ? 1 : -1));
  }

  #up(i: number): void {
    const heap = this.#heap;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!worse(heap[i]!, heap[parent]!)) return;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  #down(i: number): void {
    const heap = this.#heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let top = i;
      if (l < heap.length && worse(heap[l]!, heap[top]!)) top = l;
      if (r < heap.length && worse(heap[r]!, heap[top]!)) top = r;
      if (top === i) return;
      [heap[i], heap[top]] = [heap[top]!, heap[i]!];
      i = top;
    }
  }
}

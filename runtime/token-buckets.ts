// Many token buckets by key, their numbers in one Float64Array: what is left in each, when it
// was last taken from, and when it will be full again (then it owes nothing and can be
// forgotten). A TokenBucket object per key, with its numbers boxed, was about 90 bytes more
// per bucket, and an embedded node holds two for every connected driver (its messages and its
// fixes, http/ws.ts). The refill is TokenBucket's (runtime/token-bucket.ts).

import { refilled } from './token-bucket.ts';

/** A bucket's refill rate and size (the rate limiter port's Budget, http/ports.ts). */
export interface Budget {
  readonly perSecond: number;
  readonly burst: number;
}

/** Numbers per bucket: tokens, last take, full again at. */
const WIDTH = 3;

export class TokenBuckets {
  readonly #slots = new Map<string, number>();
  /** Slots of forgotten buckets, taken again before the array grows. */
  readonly #free: number[] = [];
  #numbers = new Float64Array(WIDTH * 64);
  #used = 0;

  /** Takes `n` tokens from `key`'s bucket (full when new) if it holds as many; false, and nothing taken, otherwise. */
  take(key: string, n: number, budget: Budget, now: number): boolean {
    let slot = this.#slots.get(key);
    if (slot === undefined) {
      slot = this.#allocate();
      this.#slots.set(key, slot);
      this.#numbers[slot] = budget.burst;
      this.#numbers[slot + 1] = now;
    }
    const s = this.#numbers;
    const tokens = refilled(s[slot]!, s[slot + 1]!, now, budget.perSecond, budget.burst);
    s[slot + 1] = now;
    const taken = tokens >= n;
    s[slot] = taken ? tokens - n : tokens;
    s[slot + 2] = now + ((budget.burst - s[slot]!) / budget.perSecond) * 1000;
    return taken;
  }

  /** Forgets the buckets that are full by `now`: a new one is the same. */
  forgetFull(now: number): void {
    for (const [key, slot] of this.#slots) {
      if (this.#numbers[slot + 2]! > now) continue;
      this.#slots.delete(key);
      this.#free.push(slot);
    }
  }

  /** Buckets held. */
  get size(): number {
    return this.#slots.size;
  }

  #allocate(): number {
    const reused = this.#free.pop();
    if (reused !== undefined) return reused;
    if (this.#used + WIDTH > this.#numbers.length) {
      const grown = new Float64Array(this.#numbers.length * 2);
      grown.set(this.#numbers);
      this.#numbers = grown;
    }
    const slot = this.#used;
    this.#used += WIDTH;
    return slot;
  }
}

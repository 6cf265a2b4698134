// A token bucket: `rate` tokens a second, holding at most `capacity`. Takes a
// clock so it can be tested without waiting.

export class TokenBucket {
  readonly #rate: number;
  readonly #capacity: number;
  #tokens: number;
  #at: number;

  constructor(rate: number, capacity: number, now = Date.now()) {
    this.#rate = rate;
    this.#capacity = capacity;
    this.#tokens = capacity;
    this.#at = now;
  }

  /** Takes `n` tokens if there are as many; false (and nothing taken) otherwise. */
  take(n = 1, now = Date.now()): boolean {
    this.#tokens = refilled(this.#tokens, this.#at, now, this.#rate, this.#capacity);
    this.#at = now;
    if (this.#tokens < n) return false;
    this.#tokens -= n;
    return true;
  }

  /** Full again: nothing taken is still owed, so the bucket can be forgotten. */
  full(now = Date.now()): boolean {
    return refilled(this.#tokens, this.#at, now, this.#rate, this.#capacity) >= this.#capacity;
  }
}

/** What a bucket holding `tokens` at `at` holds at `now`, refilled at `rate` a second up to `capacity`. */
export function refilled(tokens: number, at: number, now: number, rate: number, capacity: number): number {
  return Math.min(capacity, tokens + ((now - at) / 1000) * rate);
}

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
    this.#tokens = Math.min(this.#capacity, this.#tokens + ((now - this.#at) / 1000) * this.#rate);
    this.#at = now;
    if (this.#tokens < n) return false;
    this.#tokens -= n;
    return true;
  }

  /** Full again: nothing taken is still owed, so the bucket can be forgotten. */
  full(now = Date.now()): boolean {
    return this.#tokens + ((now - this.#at) / 1000) * this.#rate >= this.#capacity;
  }
}

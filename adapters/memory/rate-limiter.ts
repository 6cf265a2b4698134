// In-process fixed-window counters, token buckets and capped places for the embedded node:
// one process sees every request and socket, so its own counts are the whole truth.

import type { Budget, Place, RateLimiter } from '../../http/ports.ts';
import { TokenBucket } from '../../runtime/token-bucket.ts';

/** Full buckets are forgotten this often (a full bucket owes nothing: a new one is the same). */
const PRUNE_EVERY_MS = 30_000;

export class InProcessRateLimiter implements RateLimiter {
  readonly #windows = new Map<string, { count: number; resetAt: number }>();
  readonly #blocks = new Map<string, number>();
  readonly #buckets = new Map<string, TokenBucket>();
  /** key -> holder -> lease end. */
  readonly #places = new Map<string, Map<string, number>>();
  #prunedAt = Date.now();

  async hit(key: string, limit: number, windowMs: number) {
    const now = Date.now();
    let w = this.#windows.get(key);
    if (!w || w.resetAt <= now) {
      w = { count: 0, resetAt: now + windowMs };
      this.#windows.set(key, w);
      if (this.#windows.size > 100_000) for (const [k, v] of this.#windows) if (v.resetAt <= now) this.#windows.delete(k);
    }
    w.count++;
    return { allowed: w.count <= limit, retryAfterMs: w.resetAt - now, count: w.count };
  }

  async block(key: string, ms: number) {
    this.#blocks.set(key, Date.now() + ms);
    if (this.#blocks.size > 100_000) for (const [k, until] of this.#blocks) if (until <= Date.now()) this.#blocks.delete(k);
  }

  async blockedFor(key: string) {
    return Math.max(0, (this.#blocks.get(key) ?? 0) - Date.now());
  }

  async take(key: string, n: number, budget: Budget): Promise<boolean> {
    return this.takeNow(key, n, budget);
  }

  /** `take` without a promise, for a caller that needs the answer now (Redis's fallback). */
  takeNow(key: string, n: number, budget: Budget): boolean {
    const now = Date.now();
    if (now - this.#prunedAt > PRUNE_EVERY_MS) {
      this.#prunedAt = now;
      for (const [k, b] of this.#buckets) if (b.full(now)) this.#buckets.delete(k);
    }
    let bucket = this.#buckets.get(key);
    if (!bucket) this.#buckets.set(key, (bucket = new TokenBucket(budget.perSecond, budget.burst, now)));
    return bucket.take(n, now);
  }

  async acquire(place: Place, cap: number, leaseMs: number): Promise<boolean> {
    const now = Date.now();
    let held = this.#places.get(place.key);
    if (!held) this.#places.set(place.key, (held = new Map()));
    for (const [holder, until] of held) if (until <= now) held.delete(holder);
    if (!held.has(place.holder) && held.size >= cap) return false;
    held.set(place.holder, now + leaseMs);
    return true;
  }

  async renew(places: readonly Place[], leaseMs: number): Promise<void> {
    const until = Date.now() + leaseMs;
    for (const p of places) {
      let held = this.#places.get(p.key);
      if (!held) this.#places.set(p.key, (held = new Map()));
      held.set(p.holder, until);
    }
  }

  async release(place: Place): Promise<void> {
    const held = this.#places.get(place.key);
    held?.delete(place.holder);
    if (held?.size === 0) this.#places.delete(place.key);
  }
}

// In-process fixed-window counters, token buckets and capped places for the embedded node:
// one process sees every request and socket, so its own counts are the whole truth.

import type { Budget, Place, RateLimiter } from '../../http/ports.ts';
import { TokenBuckets } from '../../runtime/token-buckets.ts';

/** Full buckets are forgotten this often (a full bucket owes nothing: a new one is the same). */
const PRUNE_EVERY_MS = 30_000;

export class InProcessRateLimiter implements RateLimiter {
  readonly #windows = new Map<string, { count: number; resetAt: number }>();
  readonly #blocks = new Map<string, number>();
  /**
   * Buckets by scope, then by id: the ids are the callers' own strings (a user's id, which its
   * session holds anyway), where a key per bucket (`ws:fixes:<user>`) was a string of its own,
   * about 33 bytes for each of a connected driver's two buckets.
   */
  readonly #buckets = new Map<string, TokenBuckets>();
  /**
   * scope -> id -> its holders and their lease ends, one after the other: [holder, until, holder, until, ...].
   * By scope, then id (the user's, which the session holds anyway): a key per user was a string of its own.
   * A Map per key was about 180 bytes, and a connected user holds one key (ws:sockets:<user>) with
   * one holder or a few.
   */
  readonly #places = new Map<string, Map<string, (string | number)[]>>();
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

  async take(scope: string, id: string, n: number, budget: Budget): Promise<boolean> {
    return this.takeNow(scope, id, n, budget);
  }

  /** `take` without a promise, for a caller that needs the answer now (Redis's fallback). */
  takeNow(scope: string, id: string, n: number, budget: Budget): boolean {
    const now = Date.now();
    if (now - this.#prunedAt > PRUNE_EVERY_MS) {
      this.#prunedAt = now;
      for (const buckets of this.#buckets.values()) buckets.forgetFull(now);
    }
    let buckets = this.#buckets.get(scope);
    if (!buckets) this.#buckets.set(scope, (buckets = new TokenBuckets()));
    return buckets.take(id, n, budget, now);
  }

  async acquire(place: Place, cap: number, leaseMs: number): Promise<boolean> {
    const now = Date.now();
    const places = this.#scope(place.scope);
    const held = places.get(place.id) ?? [];
    for (let i = held.length - 2; i >= 0; i -= 2) if ((held[i + 1] as number) <= now) held.splice(i, 2);
    if (held.indexOf(place.holder) < 0 && held.length / 2 >= cap) {
      if (held.length === 0) places.delete(place.id);
      return false;
    }
    this.#hold(places, place.id, held, place.holder, now + leaseMs);
    return true;
  }

  async renew(places: readonly Place[], leaseMs: number): Promise<void> {
    const until = Date.now() + leaseMs;
    for (const p of places) {
      const scope = this.#scope(p.scope);
      this.#hold(scope, p.id, scope.get(p.id) ?? [], p.holder, until);
    }
  }

  async release(place: Place): Promise<void> {
    const places = this.#places.get(place.scope);
    const held = places?.get(place.id);
    if (!places || !held) return;
    const at = held.indexOf(place.holder);
    if (at >= 0) held.splice(at, 2);
    if (held.length === 0) places.delete(place.id);
  }

  #scope(scope: string): Map<string, (string | number)[]> {
    let places = this.#places.get(scope);
    if (!places) this.#places.set(scope, (places = new Map()));
    return places;
  }

  /**
   * `holder` holds its place under `id` until `until` (a lease it had is extended). Holders
   * are strings and lease ends numbers, so indexOf finds a holder, never a lease end.
   */
  #hold(places: Map<string, (string | number)[]>, id: string, held: (string | number)[], holder: string, until: number): void {
    const at = held.indexOf(holder);
    if (at >= 0) held[at + 1] = until;
    else if (held.length > 0) held.push(holder, until);
    // An id's first holder: an array grown by a push keeps room for 17 (about 150 bytes).
    else places.set(id, [holder, until]);
  }
}

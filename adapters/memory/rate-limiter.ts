// In-process fixed-window counters for the embedded node.

import type { RateLimiter } from '../../http/ports.ts';

export class InProcessRateLimiter implements RateLimiter {
  readonly #windows = new Map<string, { count: number; resetAt: number }>();
  readonly #blocks = new Map<string, number>();

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
}

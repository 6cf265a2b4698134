// Rate limits as middleware over a limiter port (RateLimiter, ports.ts): fixed windows counted in Redis
// (shared by all nodes) or in-process (embedded). Over the limit: 429 with Retry-After.

import type { Middleware } from 'koa';
import type { AuthState } from './authenticate.ts';
import { HttpError } from './errors.ts';
import type { RateLimiter } from './ports.ts';

export interface LimitRule {
  readonly name: string;
  readonly limit: number;
  readonly windowMs: number;
}

export function rateLimit(
  limiter: RateLimiter, rule: LimitRule, keyOf: (ctx: Parameters<Middleware<AuthState>>[0]) => string,
): Middleware<AuthState> {
  return async (ctx, next) => {
    const verdict = await limiter.hit(`${rule.name}:${keyOf(ctx)}`, rule.limit, rule.windowMs);
    if (!verdict.allowed) {
      const seconds = Math.max(1, Math.ceil(verdict.retryAfterMs / 1000));
      ctx.set('Retry-After', String(seconds));
      throw new HttpError(429, 'rate_limited', `too many requests (${rule.name}); retry in ${seconds} s`);
    }
    await next();
  };
}

/**
 * A limit on what succeeded, not on what was asked: `made(ctx)` says whether the request
 * made the thing counted (a booking created), so a refused request costs nothing. The
 * limit-th success holds the key back until its window ends: 429 with Retry-After.
 */
export function successLimit(
  limiter: RateLimiter, rule: LimitRule, keyOf: (ctx: Parameters<Middleware<AuthState>>[0]) => string,
  made: (ctx: Parameters<Middleware<AuthState>>[0]) => boolean,
): Middleware<AuthState> {
  return async (ctx, next) => {
    const key = `${rule.name}:${keyOf(ctx)}`;
    const wait = await limiter.blockedFor(key);
    if (wait > 0) {
      const seconds = Math.max(1, Math.ceil(wait / 1000));
      ctx.set('Retry-After', String(seconds));
      throw new HttpError(429, 'rate_limited', `too many requests (${rule.name}); retry in ${seconds} s`);
    }
    await next();
    if (!made(ctx)) return;
    const verdict = await limiter.hit(key, rule.limit, rule.windowMs);
    if (verdict.count >= rule.limit) await limiter.block(key, verdict.retryAfterMs);
  };
}

/** Per signed-in user when there is one, else per client IP. */
export const userOrIp = (ctx: Parameters<Middleware<AuthState>>[0]) => (ctx.state.principal ? `u:${ctx.state.principal.sub}` : `ip:${ctx.ip}`);
export const byIp = (ctx: Parameters<Middleware<AuthState>>[0]) => `ip:${ctx.ip}`;

// Calls to PostgreSQL and Redis on the request path go through one policy each
// (cockatiel): a timeout per attempt, retries with exponential backoff for
// transient faults, and a circuit breaker that, once the dependency keeps
// failing, refuses at once (the edge answers 503 in microseconds instead of
// letting requests pile up) and lets one trial call through after a pause, so
// the service recovers by itself when the dependency does.

import {
  ConsecutiveBreaker, ExponentialBackoff, TimeoutStrategy, circuitBreaker, handleWhen, retry, timeout, wrap,
  type IPolicy,
} from 'cockatiel';

export interface Guard {
  run<T>(work: () => Promise<T>): Promise<T>;
  readonly state: () => string;
}

export interface GuardOptions {
  readonly name: string;
  readonly timeoutMs?: number;
  readonly attempts?: number;
  readonly breakAfter?: number;
  readonly halfOpenAfterMs?: number;
  /** Errors that say the request was wrong, not the dependency: never retried, never trip the breaker. */
  readonly isPermanent?: (error: unknown) => boolean;
}

export class DependencyUnavailableError extends Error {
  override readonly name = 'DependencyUnavailableError';
}

export function guard(o: GuardOptions): Guard {
  const transient = handleWhen((error) => !(o.isPermanent?.(error) ?? false));
  const breaker = circuitBreaker(transient, { halfOpenAfter: o.halfOpenAfterMs ?? 5_000, breaker: new ConsecutiveBreaker(o.breakAfter ?? 5) });
  const policy: IPolicy = wrap(
    breaker,
    retry(transient, { maxAttempts: o.attempts ?? 2, backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 500 }) }),
    timeout(o.timeoutMs ?? 3_000, TimeoutStrategy.Aggressive),
  );
  return {
    state: () => String(breaker.state),
    async run<T>(work: () => Promise<T>): Promise<T> {
      try {
        return await policy.execute(() => work());
      } catch (error) {
        if (o.isPermanent?.(error)) throw error;
        throw new DependencyUnavailableError(`${o.name} is unavailable right now; try again shortly`, { cause: error });
      }
    },
  };
}

/** PostgreSQL errors that are about the statement or the data, not the server (SQLSTATE classes 22, 23, 42). */
export function isPermanentSqlError(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return typeof code === 'string' && /^(22|23|42)/.test(code);
}

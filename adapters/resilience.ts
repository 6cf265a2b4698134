// Calls to PostgreSQL and Redis on the request path go through one policy each
// (cockatiel): a timeout per attempt, retries with exponential backoff for
// transient faults, and a circuit breaker that, once the dependency keeps
// failing, refuses at once (the edge answers 503 in microseconds instead of
// letting requests pile up) and lets one trial call through after a pause, so
// the service recovers by itself when the dependency does.
//
// The breaker is shared by every user of the dependency, so only evidence that the
// dependency itself is down may move it: an error one request caused (bad input
// that slipped past the edge, a bug of ours, a constraint the data broke) would
// otherwise let one caller take the database away from everyone. `countsAsOutage`
// is that decision, written out; everything it does not claim reaches the caller
// unchanged and leaves the breaker where it was.

import {
  BrokenCircuitError, CircuitState, ConsecutiveBreaker, ExponentialBackoff, IsolatedCircuitError, TaskCancelledError, TimeoutStrategy,
  circuitBreaker, handleWhen, retry, timeout, wrap,
} from 'cockatiel';

export interface Guard {
  run<T>(work: () => Promise<T>): Promise<T>;
  /** 'closed', 'open', 'half-open' or 'isolated'. */
  readonly state: () => string;
  /** Holds the circuit open until released (an operator's switch; tests use it to keep the breaker open). */
  hold(): { release(): void };
}

export interface GuardOptions {
  readonly name: string;
  readonly timeoutMs?: number;
  readonly attempts?: number;
  readonly breakAfter?: number;
  readonly halfOpenAfterMs?: number;
  /** Errors that say the dependency is down: retried, counted by the breaker, answered as unavailable. Default `countsAsOutage`. */
  readonly countsAsOutage?: (error: unknown) => boolean;
  /** Errors that are worth another attempt although the dependency is fine (a lost race). Default `isRetriableConflict`. */
  readonly retriable?: (error: unknown) => boolean;
}

export class DependencyUnavailableError extends Error {
  override readonly name = 'DependencyUnavailableError';
}

const STATE_NAMES: Record<CircuitState, string> = {
  [CircuitState.Closed]: 'closed', [CircuitState.Open]: 'open', [CircuitState.HalfOpen]: 'half-open', [CircuitState.Isolated]: 'isolated',
};

/**
 * Outage errors are retried and then counted; a retriable conflict is retried and,
 * if it persists, answered as unavailable without being counted; anything else is
 * neither retried nor counted and reaches the caller as it was thrown. (cockatiel
 * lets an error its breaker does not handle pass by without touching the count of
 * consecutive failures; the one exception is the trial call of a half-open breaker,
 * which such an error closes: the call came back without an outage.)
 */
export function guard(o: GuardOptions): Guard {
  const outage = o.countsAsOutage ?? countsAsOutage;
  const conflict = o.retriable ?? isRetriableConflict;
  const breaker = circuitBreaker(handleWhen(outage), {
    halfOpenAfter: o.halfOpenAfterMs ?? 5_000, breaker: new ConsecutiveBreaker(o.breakAfter ?? 5),
  });
  const policy = wrap(
    breaker,
    retry(handleWhen((e) => outage(e) || conflict(e)), {
      maxAttempts: o.attempts ?? 2, backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 500 }),
    }),
    timeout(o.timeoutMs ?? 3_000, TimeoutStrategy.Aggressive),
  );
  return {
    state: () => STATE_NAMES[breaker.state] ?? String(breaker.state),
    hold() {
      const handle = breaker.isolate();
      return { release: () => handle.dispose() };
    },
    async run<T>(work: () => Promise<T>): Promise<T> {
      try {
        return await policy.execute(() => work());
      } catch (error) {
        if (error instanceof BrokenCircuitError || error instanceof IsolatedCircuitError || outage(error)) {
          throw new DependencyUnavailableError(`${o.name} is unavailable right now; try again shortly`, { cause: error });
        }
        if (conflict(error)) {
          throw new DependencyUnavailableError(`${o.name} is busy with conflicting work; try again shortly`, { cause: error });
        }
        throw error;
      }
    },
  };
}

/** Socket and DNS failures: the dependency cannot be reached. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN',
  'ENOTFOUND', 'EAI_AGAIN',
]);

/** A socket or DNS failure anywhere in the error's chain (causes, AggregateError members): nothing answered. */
export function isNetworkError(error: unknown): boolean {
  return someInChain(error, (e) => NETWORK_CODES.has(String((e as { code?: unknown }).code)));
}

/** What node-postgres and its pool throw, without a code, when the connection is lost or cannot be had. */
const CONNECTION_MESSAGES = new RegExp(
  '^(Connection terminated|Client has encountered a connection error|Client was closed and is not queryable' +
  '|timeout exceeded when trying to connect|timeout expired$|Cannot use a pool after calling end on the pool|Query read timeout)',
);

/**
 * SQLSTATE classes that are about the server, not the statement:
 * 08 connection exception (except 08P01 protocol violation, which the statement's
 * parameters cause: a NUL byte in a text parameter answers 08P01 on a healthy server),
 * 53 insufficient resources (too many connections, disk full, out of memory),
 * 57P01-57P05 admin or crash shutdown, cannot connect now, database dropped, idle session
 * ended, 58 system error (I/O), XX internal error (corruption).
 */
const OUTAGE_SQLSTATE = /^(08(?!P01)|53|57P0|58|XX)/;

const SQLSTATE = /^[0-9A-Z]{5}$/;

/**
 * Whether an error is evidence that the dependency is down, and so may count toward
 * opening the shared circuit. Yes: a call that timed out (the guard's own timeout),
 * a network error (ECONNREFUSED, ECONNRESET, ETIMEDOUT, ...), a lost connection or a
 * pool that could not hand one out, and SQLSTATE classes 08 (but not 08P01), 53,
 * 57P0x, 58 and XX. No: everything else, in particular programming errors
 * (TypeError, RangeError such as an Invalid Date reaching a parameter), validation
 * errors, and SQL errors the request caused: class 22 data exception, 23 integrity
 * constraint, 42 syntax or undefined object, 0A unsupported, 25 transaction state,
 * 57014 query cancelled (by an operator or the client), and 40 serialization failure
 * or deadlock, which are retried (`isRetriableConflict`) but are lost races, not outages.
 * An error's `cause` chain and an AggregateError's members are looked at too.
 */
export function countsAsOutage(error: unknown): boolean {
  return someInChain(error, (e) => {
    if (e instanceof TaskCancelledError) return true;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') {
      if (NETWORK_CODES.has(code)) return true;
      if (SQLSTATE.test(code)) return OUTAGE_SQLSTATE.test(code);
    }
    const { name, message } = e as { name?: unknown; message?: unknown };
    if (name === 'ConnectionException') return true; // MikroORM's wrapper for connection errors
    return typeof message === 'string' && CONNECTION_MESSAGES.test(message);
  });
}

/** Whether PostgreSQL answered with an SQLSTATE (it saw the statement), anywhere in the cause chain. */
export function hasSqlState(error: unknown): boolean {
  return someInChain(error, (e) => {
    const code = (e as { code?: unknown }).code;
    // Node's own errno codes (EPIPE ...) are five capitals too; no SQLSTATE class starts with E.
    return typeof code === 'string' && SQLSTATE.test(code) && !code.startsWith('E');
  });
}

/** SQLSTATE 40001 serialization failure and 40P01 deadlock: another transaction won; the same call may well succeed now. */
export function isRetriableConflict(error: unknown): boolean {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return code === '40001' || code === '40P01';
}

/** The error, its causes and an AggregateError's members, a few levels deep (a cycle cannot loop). */
function someInChain(error: unknown, test: (e: object) => boolean, depth = 0): boolean {
  if (typeof error !== 'object' || error === null || depth > 4) return false;
  if (test(error)) return true;
  const { cause, errors } = error as { cause?: unknown; errors?: unknown };
  if (someInChain(cause, test, depth + 1)) return true;
  return Array.isArray(errors) && errors.some((e) => someInChain(e, test, depth + 1));
}

// Start-up steps that need a dependency (PostgreSQL, Kafka, Redis) which may not be up yet:
// a node started alongside them (compose, a rolling restart, a broker being replaced) waits
// and tries again instead of exiting, within one overall bound (STARTUP_TIMEOUT_MS).
//
// A signal stops the wait: once `signal` is aborted (SIGTERM during start-up), a step sleeps
// no more and tries no more, and an attempt in flight is not waited for (a client retrying
// a broker inside one attempt can take many seconds), except in a step that must finish
// what it began (one that writes DATA_DIR): the step then fails with StartupStoppedError.

import { backoff } from './backoff.ts';
import { DependencyUnreachableError } from './errors.ts';
import type { Logger } from './logger.ts';

export class StartupTimeoutError extends Error {
  override readonly name = 'StartupTimeoutError';
  readonly code = 'startup_timeout';
}

/** Start-up was stopped (a signal) before the node served: what it opened is closed again. */
export class StartupStoppedError extends Error {
  override readonly name = 'StartupStoppedError';
  readonly code = 'startup_stopped';
  /** Why: the signal's name, as the abort reason gave it. */
  readonly reason: string;
  constructor(reason: unknown) {
    super(`start-up stopped (${String(reason)})`);
    this.reason = String(reason);
  }
}

export interface StepOptions {
  /**
   * An attempt in flight when start-up is stopped is finished before the step fails: for a
   * step that writes DATA_DIR (the embedded database), which a half-done attempt could leave damaged.
   */
  readonly finish?: boolean;
}

export interface Startup {
  /** What the node waits for right now, in words for /ready; undefined when it waits for nothing. */
  waitingFor(): string | undefined;
  /**
   * Runs a step until it succeeds, fails with anything but DependencyUnreachableError, time
   * runs out, or start-up is stopped (StartupStoppedError, also when stopped before it began).
   */
  step<T>(run: () => Promise<T>, options?: StepOptions): Promise<T>;
}

export interface StartupOptions {
  readonly timeoutMs: number;
  readonly logger: Logger;
  readonly minDelayMs?: number;
  readonly maxDelayMs?: number;
  /** Aborted when the node is to stop before it has started (a signal). */
  readonly signal?: AbortSignal;
}

export function startup(options: StartupOptions): Startup {
  const deadline = Date.now() + options.timeoutMs;
  const signal = options.signal;
  // One line per dependency: a node waiting minutes for Kafka does not fill the log.
  const announced = new Set<string>();
  let waiting: DependencyUnreachableError | undefined;
  const stopIfAborted = () => {
    if (signal?.aborted) throw new StartupStoppedError(signal.reason);
  };
  return {
    waitingFor: () => waiting && `waiting for ${waiting.dependency} at ${waiting.address}: ${waiting.reason}`,
    async step(run, stepOptions = {}) {
      const delays = backoff(options.minDelayMs ?? 250, options.maxDelayMs ?? 5_000);
      for (;;) {
        stopIfAborted();
        try {
          const attempt = run();
          const result = await (stepOptions.finish ? attempt : unlessAborted(attempt, signal));
          if (waiting) {
            options.logger.info({ dependency: waiting.dependency, address: waiting.address }, `${waiting.dependency} is reachable`);
          }
          waiting = undefined;
          return result;
        } catch (error) {
          if (!(error instanceof DependencyUnreachableError)) throw error;
          stopIfAborted();
          waiting = error;
          if (Date.now() >= deadline) {
            throw new StartupTimeoutError(`${error.message}; gave up after STARTUP_TIMEOUT_MS (${options.timeoutMs} ms)`, { cause: error });
          }
          if (!announced.has(error.dependency)) {
            announced.add(error.dependency);
            options.logger.warn(`waiting for ${error.dependency} at ${error.address}: ${error.reason}; retrying`);
          }
          await pause(Math.min(delays.next().value, Math.max(0, deadline - Date.now())), signal);
        }
      }
    },
  };
}

/** The attempt, or a rejection as soon as the signal aborts (the attempt is left to end by itself). */
function unlessAborted<T>(attempt: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return attempt;
  attempt.catch(() => undefined); // abandoned: its failure is nobody's
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new StartupStoppedError(signal.reason));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    attempt.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** Sleeps `ms`, or less if the signal aborts meanwhile. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => { clearTimeout(timer); signal?.removeEventListener('abort', done); resolve(); };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

// Start-up steps that need a dependency (PostgreSQL, Kafka, Redis) which may not be up yet:
// a node started alongside them (compose, a rolling restart, a broker being replaced) waits
// and tries again instead of exiting, within one overall bound (STARTUP_TIMEOUT_MS).

import { backoff, sleep } from './backoff.ts';
import { DependencyUnreachableError } from './errors.ts';
import type { Logger } from './logger.ts';

export class StartupTimeoutError extends Error {
  override readonly name = 'StartupTimeoutError';
  readonly code = 'startup_timeout';
}

export interface Startup {
  /** What the node waits for right now, in words for /ready; undefined when it waits for nothing. */
  waitingFor(): string | undefined;
  /** Runs a step until it succeeds, fails with anything but DependencyUnreachableError, or time runs out. */
  step<T>(run: () => Promise<T>): Promise<T>;
}

export function startup(options: { timeoutMs: number; logger: Logger; minDelayMs?: number; maxDelayMs?: number }): Startup {
  const deadline = Date.now() + options.timeoutMs;
  // One line per dependency: a node waiting minutes for Kafka does not fill the log.
  const announced = new Set<string>();
  let waiting: DependencyUnreachableError | undefined;
  return {
    waitingFor: () => waiting && `waiting for ${waiting.dependency} at ${waiting.address}: ${waiting.reason}`,
    async step(run) {
      const delays = backoff(options.minDelayMs ?? 250, options.maxDelayMs ?? 5_000);
      for (;;) {
        try {
          const result = await run();
          if (waiting) {
            options.logger.info({ dependency: waiting.dependency, address: waiting.address }, `${waiting.dependency} is reachable`);
          }
          waiting = undefined;
          return result;
        } catch (error) {
          if (!(error instanceof DependencyUnreachableError)) throw error;
          waiting = error;
          if (Date.now() >= deadline) {
            throw new StartupTimeoutError(`${error.message}; gave up after STARTUP_TIMEOUT_MS (${options.timeoutMs} ms)`, { cause: error });
          }
          if (!announced.has(error.dependency)) {
            announced.add(error.dependency);
            options.logger.warn(`waiting for ${error.dependency} at ${error.address}: ${error.reason}; retrying`);
          }
          await sleep(Math.min(delays.next().value, Math.max(0, deadline - Date.now())));
        }
      }
    },
  };
}

// Capped exponential backoff, shared by everything the runtime and its adapters retry.

/** min, doubling, up to max, forever. */
export function* backoff(minMs = 50, maxMs = 5_000): Generator<number, never> {
  for (let delay = minMs; ; delay = Math.min(delay * 2, maxMs)) yield delay;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

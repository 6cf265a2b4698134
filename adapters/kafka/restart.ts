// A kafkajs consumer that crashed with an error kafkajs does not retry is connected and run
// again here, with backoff, until it runs or its owner stops.

import type { Consumer } from 'kafkajs';
import { backoff, sleep } from '../../runtime/backoff.ts';

export async function restartConsumer(o: {
  consumer: Pick<Consumer, 'connect'>; run: () => Promise<void>; stopped: () => boolean; what: string;
  retryMinMs?: number; retryMaxMs?: number; onError?: (error: unknown, context: string) => void;
}): Promise<void> {
  const delays = backoff(o.retryMinMs ?? 200, o.retryMaxMs ?? 5_000);
  for (let attempt = 1; !o.stopped(); attempt++) {
    await sleep(delays.next().value);
    if (o.stopped()) return;
    try {
      await o.consumer.connect();
      await o.run();
      return;
    } catch (error) {
      o.onError?.(error, `restarting the ${o.what} failed (attempt ${attempt}); trying again`);
    }
  }
}

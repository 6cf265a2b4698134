// The in-process node the dispatch and memory benches run on: the real shard host and
// region on the in-process command log, like test/helpers/rig.ts, but sized for a
// benchmark (a million copies, 100k live actors) and with a journal that can keep
// nothing (a node's journal lives in PostgreSQL, not in its heap).

import { DEFAULT_BOOKING, makeBookingBehavior } from '../actors/booking.ts';
import { DEFAULT_CELL, makeCellBehavior } from '../actors/cell.ts';
import { makeDriverBehavior } from '../actors/driver.ts';
import { nearestService } from '../actors/index.ts';
import { InProcessCommandLog } from '../adapters/file/command-log.ts';
import { MemoryDeadLetterStore } from '../adapters/memory/dead-letters.ts';
import { MemoryJournal } from '../adapters/memory/journal.ts';
import { InProcessNotifier } from '../adapters/memory/notifier.ts';
import { MemoryReminderStore } from '../adapters/memory/reminders.ts';
import type { Journal } from '../runtime/ports.ts';
import { ShardRegion } from '../runtime/region.ts';
import { ShardHost } from '../runtime/shard-host.ts';

export const CELL_RES = 7;

/** A journal that stores nothing: for heap measurements, whose journal rows would be in PostgreSQL. */
export const discardingJournal: Journal = {
  append: async () => undefined,
  read: async () => [],
  findCommand: async () => undefined,
  latestSnapshot: async () => undefined,
  saveSnapshot: async () => undefined,
  ping: async () => undefined,
  close: async () => undefined,
};

export interface BenchRig {
  readonly region: ShardRegion;
  readonly host: ShardHost;
  readonly notifier: InProcessNotifier;
  stop(): Promise<void>;
}

export async function benchRig(options: { maxActiveEntities?: number; journal?: Journal } = {}): Promise<BenchRig> {
  const notifier = new InProcessNotifier();
  const shards = 32;
  const host = new ShardHost({
    journal: options.journal ?? new MemoryJournal(),
    behaviors: [
      makeDriverBehavior({ cellRes: CELL_RES, offerTimeoutMs: 15_000 }),
      makeCellBehavior(DEFAULT_CELL),
      makeBookingBehavior({ ...DEFAULT_BOOKING, deadlineMs: 60_000 }),
    ] as never,
    passivateAfterMs: 600_000,
    maxActiveEntities: options.maxActiveEntities ?? 200_000,
    maxConcurrentRecoveries: 50,
    snapshotEvery: 0,
  });
  const region = new ShardRegion({
    nodeId: 'bench',
    placement: { shards, placementRes: 4 },
    log: new InProcessCommandLog({ shards, nodeId: 'bench' }),
    host,
    reminders: new MemoryReminderStore(),
    notifier,
    services: { nearest: nearestService(CELL_RES) },
    // Under a deliberate backlog a request waits its turn; the bench measures rates, not timeouts.
    askTimeoutMs: 300_000,
    retryMinMs: 5,
    retryMaxMs: 20,
    deadLetters: new MemoryDeadLetterStore(),
    maxAttempts: 1_000,
  });
  await region.start();
  return { region, host, notifier, stop: () => region.stop() };
}

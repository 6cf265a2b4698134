// The in-process node the nearest, fix and memory benches run on: the real shard host and
// region on the in-process command log (or the one given), like test/helpers/rig.ts, but
// sized for a benchmark (a million copies, 100k live actors), with the node's set of
// occupied cells kept from the cells' events as node.ts keeps it, and a journal that can
// keep nothing (a node's journal lives in PostgreSQL, not in its heap).

import { DEFAULT_BOOKING, makeBookingBehavior } from '../actors/booking.ts';
import { DEFAULT_CELL, makeCellBehavior } from '../actors/cell.ts';
import { makeDriverBehavior } from '../actors/driver.ts';
import { nearestService } from '../actors/index.ts';
import { InProcessCommandLog } from '../adapters/file/command-log.ts';
import { MemoryDeadLetterStore } from '../adapters/memory/dead-letters.ts';
import { MemoryJournal } from '../adapters/memory/journal.ts';
import { InProcessNotifier } from '../adapters/memory/notifier.ts';
import { MemoryReminderStore } from '../adapters/memory/reminders.ts';
import { InProcessOccupiedCells } from '../adapters/memory/occupied-cells.ts';
import { occupiedCellOf } from '../actors/cell.ts';
import { prepareOrigins, type OccupiedFilter } from '../actors/nearest.ts';
import type { CommandLog, Journal, ReminderStore } from '../runtime/ports.ts';
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

/** A reminder store that stores nothing: a node's reminders are rows in PostgreSQL, as its journal's are. */
export const discardingReminders: ReminderStore = {
  set: async () => undefined,
  clear: async () => undefined,
  forShards: async () => [],
};

export interface BenchRig {
  readonly region: ShardRegion;
  readonly host: ShardHost;
  readonly notifier: InProcessNotifier;
  /** The cells that ever held a driver, as the node's searches see them. */
  readonly occupied: OccupiedFilter;
  stop(): Promise<void>;
}

export interface RigOptions {
  maxActiveEntities?: number;
  journal?: Journal;
  /** Default: reminders kept in memory. */
  reminders?: ReminderStore;
  /** Default: the in-process log of an embedded node. */
  log?: (shards: number) => CommandLog;
  nodeId?: string;
  /**
   * Drivers' presence period; the fix bench sets it past the run, so every cell copy applied
   * was caused by a fix it sent (a presence tick re-sends a copy of its own).
   */
  presenceMs?: number;
}

export async function benchRig(options: RigOptions = {}): Promise<BenchRig> {
  const notifier = new InProcessNotifier();
  const shards = 32;
  const nodeId = options.nodeId ?? 'bench';
  const host = new ShardHost({
    journal: options.journal ?? new MemoryJournal(),
    behaviors: [
      makeDriverBehavior({ cellRes: CELL_RES, offerTimeoutMs: 15_000, presenceMs: options.presenceMs }),
      makeCellBehavior(DEFAULT_CELL),
      makeBookingBehavior({ ...DEFAULT_BOOKING, deadlineMs: 60_000 }),
    ] as never,
    passivateAfterMs: 600_000,
    maxActiveEntities: options.maxActiveEntities ?? 200_000,
    maxConcurrentRecoveries: 50,
    snapshotEvery: 0,
  });
  const region = new ShardRegion({
    nodeId,
    placement: { shards, placementRes: 4 },
    log: options.log?.(shards) ?? new InProcessCommandLog({ shards, nodeId }),
    host,
    reminders: options.reminders ?? new MemoryReminderStore(),
    notifier,
    services: { nearest: nearestService(CELL_RES) },
    // Under a deliberate backlog a request waits its turn; the bench measures rates, not timeouts.
    askTimeoutMs: 300_000,
    retryMinMs: 5,
    retryMaxMs: 20,
    deadLetters: new MemoryDeadLetterStore(),
    maxAttempts: 1_000,
  });
  const occupiedCells = new InProcessOccupiedCells();
  region.onDomainEvent((topic, event) => {
    const cell = occupiedCellOf(topic, event);
    if (cell) { occupiedCells.mark(cell); prepareOrigins(cell); }
  });
  await region.start();
  return { region, host, notifier, occupied: (cells) => occupiedCells.filter(cells), stop: () => region.stop() };
}

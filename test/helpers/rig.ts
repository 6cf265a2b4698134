// One in-process node for tests: in-process command log, in-memory journal and
// reminders, the real shard host and region.

import type { Behavior, Service } from '../../actors/behavior.ts';
import { InProcessCommandLog } from '../../adapters/file/command-log.ts';
import { MemoryJournal } from '../../adapters/memory/journal.ts';
import { InProcessNotifier } from '../../adapters/memory/notifier.ts';
import { MemoryReminderStore } from '../../adapters/memory/reminders.ts';
import { MemoryDeadLetterStore } from '../../adapters/memory/dead-letters.ts';
import { ShardRegion } from '../../runtime/region.ts';
import { ShardHost } from '../../runtime/shard-host.ts';
import type { CommandLog, Journal } from '../../runtime/ports.ts';

export interface Rig {
  readonly region: ShardRegion;
  readonly host: ShardHost;
  readonly journal: MemoryJournal;
  readonly reminders: MemoryReminderStore;
  readonly deadLetters: MemoryDeadLetterStore;
  readonly notifier: InProcessNotifier;
  readonly errors: string[];
  stop(): Promise<void>;
}

export interface RigOptions {
  readonly behaviors: readonly Behavior<any, any, any, any, any>[];
  readonly services?: Readonly<Record<string, Service>>;
  readonly journal?: MemoryJournal;
  /** A journal on real storage instead (PostgreSQL); `Rig.journal` is then an unused memory one. */
  readonly storage?: Journal;
  readonly reminders?: MemoryReminderStore;
  readonly passivateAfterMs?: number;
  readonly snapshotEvery?: number;
  readonly shards?: number;
  readonly askTimeoutMs?: number;
  readonly maxAttempts?: number;
  readonly keepTimersWithinMs?: number;
  readonly hibernateAfterMs?: number;
  readonly reminderScanMs?: number;
  /** Wraps the command log (fault injection). */
  readonly wrapLog?: (log: CommandLog) => CommandLog;
}

export async function startRig(options: RigOptions): Promise<Rig> {
  const journal = options.journal ?? new MemoryJournal();
  const reminders = options.reminders ?? new MemoryReminderStore();
  const notifier = new InProcessNotifier();
  const deadLetters = new MemoryDeadLetterStore();
  const errors: string[] = [];
  const shards = options.shards ?? 8;
  const host = new ShardHost({
    journal: options.storage ?? journal,
    behaviors: options.behaviors as never,
    passivateAfterMs: options.passivateAfterMs ?? 60_000,
    maxActiveEntities: 100_000,
    maxConcurrentRecoveries: 16,
    snapshotEvery: options.snapshotEvery ?? 0,
    keepTimersWithinMs: options.keepTimersWithinMs,
    hibernateAfterMs: options.hibernateAfterMs,
    onError: (_e, context) => errors.push(context),
  });
  const region = new ShardRegion({
    nodeId: 'n1',
    placement: { shards, placementRes: 4 },
    log: (options.wrapLog ?? ((l) => l))(new InProcessCommandLog({ shards, nodeId: 'n1' })),
    host,
    reminders,
    notifier,
    services: options.services,
    askTimeoutMs: options.askTimeoutMs ?? 5_000,
    retryMinMs: 5,
    retryMaxMs: 20,
    deadLetters,
    maxAttempts: options.maxAttempts ?? 1_000,
    reminderScanMs: options.reminderScanMs,
    onError: (_e, context) => errors.push(context),
  });
  await region.start();
  return { region, host, journal, reminders, deadLetters, notifier, errors, stop: () => region.stop() };
}

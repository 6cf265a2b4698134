// An in-memory Journal with the same uniqueness fence as the PostgreSQL one.
// For unit tests of the runtime and for benchmarks that isolate the runtime from storage.

import {
  DuplicateCommandError, JournalConflictError, type AppendOptions, type Journal, type JournalEntry, type SnapshotEntry,
} from '../../runtime/ports.ts';

export class MemoryJournal implements Journal {
  readonly #entries = new Map<string, JournalEntry[]>();
  readonly #snapshots = new Map<string, SnapshotEntry>();
  /** Set to make every call fail, as a storage outage would. */
  failing: Error | undefined;

  async append(entry: JournalEntry, options?: AppendOptions): Promise<void> {
    this.#check();
    const list = this.#entries.get(entry.persistenceKey) ?? [];
    const last = list.at(-1);
    const unless = options?.unlessCommand;
    if (unless !== undefined && list.some((e) => (e.data as { cmd?: unknown } | null)?.cmd === unless)) {
      throw new DuplicateCommandError(entry.persistenceKey, unless);
    }
    if (list.some((e) => e.sequenceNr === entry.sequenceNr)) {
      throw new JournalConflictError(entry.persistenceKey, entry.sequenceNr);
    }
    list.push(structuredClone(entry));
    if (last && last.sequenceNr > entry.sequenceNr) list.sort((a, b) => a.sequenceNr - b.sequenceNr);
    this.#entries.set(entry.persistenceKey, list);
  }

  async read(persistenceKey: string, afterSequenceNr: number, limit: number): Promise<JournalEntry[]> {
    this.#check();
    const list = this.#entries.get(persistenceKey) ?? [];
    return structuredClone(list.filter((e) => e.sequenceNr > afterSequenceNr).slice(0, limit));
  }

  async findCommand(persistenceKey: string, commandId: string): Promise<JournalEntry | undefined> {
    this.#check();
    const entry = this.#entries.get(persistenceKey)?.find((e) => (e.data as { cmd?: unknown } | null)?.cmd === commandId);
    return entry && structuredClone(entry);
  }

  async latestSnapshot(persistenceKey: string): Promise<SnapshotEntry | undefined> {
    this.#check();
    const snap = this.#snapshots.get(persistenceKey);
    return snap && structuredClone(snap);
  }

  async saveSnapshot(entry: SnapshotEntry): Promise<void> {
    this.#check();
    const current = this.#snapshots.get(entry.persistenceKey);
    if (!current || current.sequenceNr <= entry.sequenceNr) this.#snapshots.set(entry.persistenceKey, structuredClone(entry));
  }

  async ping(): Promise<void> {
    this.#check();
  }

  async close(): Promise<void> {}

  /** Number of journal entries for a key (for tests). */
  count(persistenceKey: string): number {
    return this.#entries.get(persistenceKey)?.length ?? 0;
  }

  #check(): void {
    if (this.failing) throw this.failing;
  }
}

// A nact persistence engine over the Journal port.
//
// nact's recovery calls `events(key, offset).reduce(...)` and keeps the whole
// result in memory if the engine returns an array; this engine returns a
// reducible that reads the journal page by page, so an entity with a long
// history recovers in bounded memory. Snapshot failures, which nact only logs,
// are counted here so they reach the metrics.

import type { AppendOptions, Journal, JournalEntry } from './ports.ts';

const PAGE_SIZE = 500;

interface NactPersistedEvent {
  readonly data: unknown;
  readonly sequenceNumber: number;
  readonly key: string;
  readonly tags: string[];
  readonly createdAt: number;
  readonly isDeleted?: boolean;
}

interface NactPersistedSnapshot {
  readonly data: unknown;
  readonly sequenceNumber: number;
  readonly key: string;
  readonly createdAt: number;
}

export interface EngineStats {
  eventsPersisted: number;
  eventsReplayed: number;
  snapshotsTaken: number;
  snapshotFailures: number;
}

type Reducer<T> = (acc: T, event: NactPersistedEvent, index: number) => T;

/** Reads a journal tail lazily; only `reduce` is part of nact's contract. */
class JournalTail {
  readonly #journal: Journal;
  readonly #key: string;
  readonly #after: number;
  readonly #stats: EngineStats;
  /** The first page, when recovery read it with the snapshot (Journal.recover). */
  #first: JournalEntry[] | undefined;

  constructor(journal: Journal, key: string, after: number, stats: EngineStats, first?: JournalEntry[]) {
    this.#journal = journal;
    this.#key = key;
    this.#after = after;
    this.#stats = stats;
    this.#first = first;
  }

  async reduce<T>(reducer: Reducer<T>, initial: T): Promise<T> {
    let acc = initial;
    let after = this.#after;
    let index = 0;
    for (;;) {
      const page = this.#first ?? await this.#journal.read(this.#key, after, PAGE_SIZE);
      this.#first = undefined;
      for (const entry of page) {
        // nact's reducer returns a promise chained on the previous one; awaiting
        // each step keeps the chain from growing with the journal.
        acc = await reducer(acc, toNactEvent(entry), index++);
        this.#stats.eventsReplayed++;
        after = entry.sequenceNr;
      }
      if (page.length < PAGE_SIZE) return acc;
    }
  }
}

function toNactEvent(entry: JournalEntry): NactPersistedEvent {
  return {
    data: entry.data,
    sequenceNumber: entry.sequenceNr,
    key: entry.persistenceKey,
    tags: [...entry.tags],
    createdAt: entry.createdAt,
  };
}

export class JournalPersistenceEngine {
  readonly journal: Journal;
  readonly stats: EngineStats = { eventsPersisted: 0, eventsReplayed: 0, snapshotsTaken: 0, snapshotFailures: 0 };

  constructor(journal: Journal) {
    this.journal = journal;
  }

  /**
   * The first page of entries read with the snapshot, per entity, until recovery asks for
   * them right after (nact calls latestSnapshot, then events from the snapshot's number):
   * one round trip to storage per activation instead of two, which on the embedded node's
   * one connection was a round trip per new booking and per new cell.
   */
  readonly #prefetched = new Map<string, { after: number; entries: JournalEntry[] }>();

  /**
   * Entities whose next recovery starts where their incarnation in memory is, without
   * reading storage (see resume), by key: the sequence number to start from.
   */
  readonly #resumes = new Map<string, number>();

  /**
   * The next recovery of this key (a new nact actor for an entity that hibernated, see
   * ShardHost) starts at `seq` with nothing to replay, and reads nothing: the node owns the
   * entity's shard and holds its incarnation, the latest state its journal has (nact only
   * needs the sequence number its next write continues from; the entity actor starts every
   * message from its own incarnation).
   */
  resume(persistenceKey: string, seq: number): void {
    this.#resumes.set(persistenceKey, seq);
  }

  events(persistenceKey: string, offset = 0): JournalTail {
    const prefetched = this.#prefetched.get(persistenceKey);
    this.#prefetched.delete(persistenceKey);
    const first = prefetched && prefetched.after === offset ? prefetched.entries : undefined;
    return new JournalTail(this.journal, persistenceKey, offset, this.stats, first);
  }

  async latestSnapshot(persistenceKey: string): Promise<NactPersistedSnapshot | undefined> {
    const resumeAt = this.#resumes.get(persistenceKey);
    if (resumeAt !== undefined) {
      this.#resumes.delete(persistenceKey);
      this.#prefetched.set(persistenceKey, { after: resumeAt, entries: [] });
      return { data: undefined, sequenceNumber: resumeAt, key: persistenceKey, createdAt: 0 };
    }
    let snap;
    if (this.journal.recover) {
      const read = await this.journal.recover(persistenceKey, PAGE_SIZE);
      snap = read.snapshot;
      // Bounded: an activation that never asked for its events (it failed) leaves one behind at most.
      if (this.#prefetched.size >= 10_000) this.#prefetched.clear();
      this.#prefetched.set(persistenceKey, { after: snap?.sequenceNr ?? 0, entries: read.entries });
    } else {
      snap = await this.journal.latestSnapshot(persistenceKey);
    }
    if (!snap) return undefined;
    return { data: snap.data, sequenceNumber: snap.sequenceNr, key: snap.persistenceKey, createdAt: snap.createdAt };
  }

  async takeSnapshot(snapshot: NactPersistedSnapshot): Promise<void> {
    try {
      await this.journal.saveSnapshot({
        persistenceKey: snapshot.key,
        sequenceNr: snapshot.sequenceNumber,
        data: snapshot.data,
        createdAt: snapshot.createdAt,
      });
      this.stats.snapshotsTaken++;
    } catch (error) {
      this.stats.snapshotFailures++;
      throw error;
    }
  }

  /** `options` is what the actor passed to nact's persist after the tags (nact hands it on). */
  async persist(event: NactPersistedEvent, options?: AppendOptions): Promise<void> {
    await this.journal.append({
      persistenceKey: event.key,
      sequenceNr: event.sequenceNumber,
      data: event.data,
      createdAt: event.createdAt,
      tags: event.tags,
    }, options);
    this.stats.eventsPersisted++;
  }
}

// Journal and snapshot rows as the runtime reads them: what pg answers (strings for
// bigints, jsonb as objects or, from the embedded node's driver, as text) made into
// runtime/ports.ts entries.

import type { JournalEntry, SnapshotEntry } from '../../runtime/ports.ts';

export interface JournalDbRow { persistence_key: string; sequence_nr: string | number; data: unknown; tags: unknown; created_at: Date | string }
export interface SnapshotDbRow { persistence_key: string; sequence_nr: string | number; data: unknown; created_at: Date | string }

/** pg answers booleans as booleans; the embedded node's driver may answer 't'/'f'. */
export function truthy(value: unknown): boolean {
  return value === true || value === 't' || value === 'true' || value === 1;
}

export function parseJson(value: unknown): unknown {
  return typeof value === 'string' ? JSON.parse(value) : value;
}

export function journalEntry(r: JournalDbRow): JournalEntry {
  return {
    persistenceKey: r.persistence_key, sequenceNr: Number(r.sequence_nr), data: parseJson(r.data),
    tags: (parseJson(r.tags) as string[] | null) ?? [], createdAt: new Date(r.created_at).getTime(),
  };
}

export function snapshotEntry(r: SnapshotDbRow): SnapshotEntry {
  return { persistenceKey: r.persistence_key, sequenceNr: Number(r.sequence_nr), data: parseJson(r.data), createdAt: new Date(r.created_at).getTime() };
}

// Shard offsets and epochs for in-process members of a test cluster: one table per topic,
// shared by the members as the nodes of a real cluster share PostgreSQL
// (adapters/memory/shard-offsets.ts, adapters/memory/shard-epochs.ts).

import { MemoryShardEpochs } from '../../adapters/memory/shard-epochs.ts';

const tables = new Map<string, Map<number, number>>();

export function offsetsOf(topic: string): Map<number, number> {
  let table = tables.get(topic);
  if (!table) tables.set(topic, (table = new Map()));
  return table;
}

const epochs = new Map<string, MemoryShardEpochs>();

/** Shard epochs for in-process members of a test cluster, one store per topic (shared, as PostgreSQL is). */
export function epochsOf(topic: string): MemoryShardEpochs {
  let store = epochs.get(topic);
  if (!store) epochs.set(topic, (store = new MemoryShardEpochs()));
  return store;
}

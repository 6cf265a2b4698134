// A command log that only places shards, for tests of a region's reads across two nodes:
// node `self` owns `owned`, `other` every other shard; nothing appended goes anywhere.

import type { ShardId } from '../../runtime/entity.ts';
import type { CommandLog } from '../../runtime/ports.ts';

export function placedLog(shards: number, owned: readonly ShardId[], self = 'a', other = 'b'): CommandLog {
  const all = Array.from({ length: shards }, (_, s) => s);
  return {
    shards,
    start: async (h) => h.onAssignment({ owned, placement: new Map(all.map((s) => [s, owned.includes(s) ? self : other])), nodes: [self, other] }, [], owned),
    append: async () => undefined, appendMany: async () => undefined, commit: async () => undefined, stop: async () => undefined,
  };
}

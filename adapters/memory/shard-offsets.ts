// Shard offsets in memory (runtime/ports.ts ShardOffsets), for one process: the command log's
// tests and benchmarks. Members of one test cluster share a table (as nodes share PostgreSQL);
// with a WriteFence a commit is refused unless this member holds the shard's current epoch
// (checked against `epochs`, as PostgreSQL checks it in the same statement).

import type { MemoryShardEpochs } from './shard-epochs.ts';
import type { ShardId, ShardOffsets, WriteFence } from '../../runtime/ports.ts';

export class MemoryShardOffsets implements ShardOffsets {
  readonly #next: Map<ShardId, number>;
  readonly #fenced: { fence: WriteFence; epochs: MemoryShardEpochs } | undefined;

  constructor(options: { table?: Map<ShardId, number>; fence?: WriteFence; epochs?: MemoryShardEpochs } = {}) {
    this.#next = options.table ?? new Map();
    this.#fenced = options.fence && options.epochs ? { fence: options.fence, epochs: options.epochs } : undefined;
  }

  async next(shards: readonly ShardId[]): Promise<ReadonlyMap<ShardId, number>> {
    return new Map(shards.flatMap((s) => (this.#next.has(s) ? [[s, this.#next.get(s)!] as const] : [])));
  }

  async commit(shard: ShardId, next: number): Promise<void> {
    if (this.#fenced) {
      const held = this.#fenced.fence.epochOf(shard);
      if (held === undefined || this.#fenced.epochs.current(shard)?.epoch !== held) {
        throw this.#fenced.fence.refused(shard, held, `offset of shard ${shard}`);
      }
    }
    if ((this.#next.get(shard) ?? -1) < next) this.#next.set(shard, next);
  }
}

// Shard epochs in memory (runtime/ports.ts ShardEpochs), for one process: the runtime's
// tests and benchmarks. Embedded and cluster nodes keep them in PostgreSQL.

import type { Epoch, EpochRecord, ShardEpochs, ShardId } from '../../runtime/ports.ts';
import type { NodeId } from '../../runtime/entity.ts';

export class MemoryShardEpochs implements ShardEpochs {
  readonly #rows = new Map<ShardId, EpochRecord>();

  async acquire(shards: readonly ShardId[], nodeId: NodeId): Promise<ReadonlyMap<ShardId, Epoch>> {
    const out = new Map<ShardId, Epoch>();
    for (const shard of shards) {
      const epoch = (this.#rows.get(shard)?.epoch ?? 0) + 1;
      this.#rows.set(shard, { epoch, owner: nodeId, released: false });
      out.set(shard, epoch);
    }
    return out;
  }

  async currentEpochs(shards: readonly ShardId[]): Promise<ReadonlyMap<ShardId, EpochRecord>> {
    const out = new Map<ShardId, EpochRecord>();
    for (const shard of shards) {
      const row = this.#rows.get(shard);
      if (row) out.set(shard, row);
    }
    return out;
  }

  async release(epochs: ReadonlyMap<ShardId, Epoch>): Promise<void> {
    for (const [shard, epoch] of epochs) {
      const row = this.#rows.get(shard);
      if (row?.epoch === epoch) this.#rows.set(shard, { ...row, released: true });
    }
  }

  current(shard: ShardId): EpochRecord | undefined {
    return this.#rows.get(shard);
  }
}

// Fencing tokens: the epochs this node holds for its shards.
//
// The command log's group decides who owns a shard, but a node paused long enough to be
// evicted still believes it owns its shards until it hears otherwise. So each node that
// gains a shard takes a new epoch for it in storage (ports.ts ShardEpochs, a
// compare-and-set), keeps it here, and every write of the shard (journal, snapshot,
// reminder, dead letter, projection offset) is conditional on it in the same statement or
// transaction. A refused write reports here: the shard is forgotten at once and the
// region, told by `onFenced`, stops it (no more timers, asks, activations).

import { ShardFencedError } from './errors.ts';
import type { Epoch, EpochRecord, ShardEpochs, ShardId, WriteFence } from './ports.ts';
import type { NodeId } from './entity.ts';

export class ShardFences implements WriteFence {
  readonly #epochs: ShardEpochs;
  readonly #held = new Map<ShardId, Epoch>();
  readonly #listeners = new Set<(shard: ShardId) => void>();
  #refused = 0;

  constructor(epochs: ShardEpochs) {
    this.#epochs = epochs;
  }

  /** Takes new epochs for gained shards; from now on their writes carry them. */
  async acquire(shards: readonly ShardId[], nodeId: NodeId): Promise<void> {
    if (shards.length === 0) return;
    const taken = await this.#epochs.acquire(shards, nodeId);
    for (const shard of shards) {
      const epoch = taken.get(shard);
      if (epoch === undefined) throw new Error(`no epoch taken for shard ${shard}`);
      this.#held.set(shard, epoch);
    }
  }

  /** A shard handed over in an orderly way: its writes are refused from now on. */
  release(shards: Iterable<ShardId>): void {
    for (const shard of shards) this.#held.delete(shard);
  }

  /**
   * The shards among `shards` this node holds no current epoch for: never taken, dropped,
   * or taken by another node since (a node that was out of its group while another was
   * given its shards and then got them back). Their entities may hold what is no longer true.
   */
  async stale(shards: readonly ShardId[]): Promise<ShardId[]> {
    if (shards.length === 0) return [];
    const current = await this.#epochs.currentEpochs(shards);
    return shards.filter((shard) => {
      const held = this.#held.get(shard);
      return held === undefined || current.get(shard)?.epoch !== held;
    });
  }

  /** Who holds each shard's current epoch, and whether they let it go (for a hand-off). */
  holders(shards: readonly ShardId[]): Promise<ReadonlyMap<ShardId, EpochRecord>> {
    return this.#epochs.currentEpochs(shards);
  }

  /**
   * A shard handed over in an orderly way (drained: its last commit made, its entities
   * stopped): its epoch is marked released in storage, so its next owner takes it at once,
   * and forgotten here, so its writes are refused from now on. Marking is best effort: a
   * next owner that does not see it waits until this node is out of its group.
   */
  async letGo(shards: readonly ShardId[]): Promise<void> {
    const epochs = new Map(shards.flatMap((s) => (this.#held.has(s) ? [[s, this.#held.get(s)!] as const] : [])));
    this.release(shards);
    await this.#epochs.release(epochs);
  }

  epochOf(shard: ShardId): Epoch | undefined {
    return this.#held.get(shard);
  }

  holds(shard: ShardId): boolean {
    return this.#held.has(shard);
  }

  refused(shard: ShardId, epoch: Epoch | undefined, what: string): ShardFencedError {
    this.#refused++;
    // Only the epoch the write carried is dropped: one taken again meanwhile stays.
    if (epoch !== undefined && this.#held.get(shard) === epoch) {
      this.#held.delete(shard);
      for (const listener of this.#listeners) listener(shard);
    }
    return new ShardFencedError(shard, epoch, what);
  }

  /** Called once per lost epoch, synchronously, when a write of the shard is first refused. */
  onFenced(listener: (shard: ShardId) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Writes refused since start (for /metrics). */
  get refusedWrites(): number {
    return this.#refused;
  }
}

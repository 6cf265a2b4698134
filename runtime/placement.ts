// Placement of shards on nodes: rendezvous hashing, balanced and sticky.
//
// Pure rendezvous (each shard on the node with the highest hash(shard, node))
// moves the minimum on paper, but with 32 shards its loads are lumpy (20/12 on
// two nodes, measured) and one join can move twice its share. So placement keeps
// every shard where it is while its owner stays and is within its fair share
// (floor or ceil of S/N), releases only the excess, and gives released or
// orphaned shards to the members below their share in rendezvous order. Adding
// a node therefore moves exactly the shards the new node needs, all to it;
// removing one moves only its shards; no shard moves between two nodes that
// both stay. Every member computes the same map from the same inputs.

import { hash64, type NodeId, type ShardId } from './entity.ts';

export type ShardMap = ReadonlyMap<ShardId, NodeId>;

const MASK_64 = 0xffffffffffffffffn;

/** MurmurHash3's 64-bit finalizer: FNV alone barely mixes its high bits, which decide the comparison. */
function mix64(h: bigint): bigint {
  h = ((h ^ (h >> 33n)) * 0xff51afd7ed558ccdn) & MASK_64;
  h = ((h ^ (h >> 33n)) * 0xc4ceb9fe1a85ec53n) & MASK_64;
  return h ^ (h >> 33n);
}

function score(shard: ShardId, node: NodeId): bigint {
  return mix64(hash64(`${node}\u0000${shard}`));
}

function byScoreDesc(shard: ShardId) {
  return (a: string, b: string) => {
    const d = score(shard, b) - score(shard, a);
    return d > 0n ? 1 : d < 0n ? -1 : a < b ? -1 : 1;
  };
}

/**
 * Places `shards` shards on `nodes`. `previous` is the map before the membership
 * change (what each member reports owning); without it placement is balanced rendezvous.
 */
export function placeShards(shards: number, nodes: readonly NodeId[], previous: ShardMap = new Map()): Map<ShardId, NodeId> {
  const members = [...new Set(nodes)].sort();
  const map = new Map<ShardId, NodeId>();
  if (members.length === 0) return map;

  const kept = new Map<NodeId, ShardId[]>(members.map((m) => [m, []]));
  for (let shard = 0; shard < shards; shard++) {
    const owner = previous.get(shard);
    if (owner !== undefined) kept.get(owner)?.push(shard);
  }

  // Fair shares: floor(S/N) each, and one more for the `S mod N` members holding most now.
  const base = Math.floor(shards / members.length);
  let extra = shards % members.length;
  const target = new Map<NodeId, number>();
  for (const m of [...members].sort((a, b) => kept.get(b)!.length - kept.get(a)!.length || (a < b ? -1 : 1))) {
    target.set(m, base + (extra-- > 0 ? 1 : 0));
  }

  const orphans: number[] = [];
  for (let shard = 0; shard < shards; shard++) if (!members.includes(previous.get(shard) ?? '')) orphans.push(shard);
  for (const m of members) {
    // An over-full member releases the shards it scores lowest on.
    const mine = kept.get(m)!.sort((a, b) => (score(b, m) > score(a, m) ? 1 : -1));
    for (const shard of mine.slice(0, target.get(m)!)) map.set(shard, m);
    orphans.push(...mine.slice(target.get(m)!));
  }

  const load = new Map(members.map((m) => [m, kept.get(m)!.filter((s) => map.get(s) === m).length]));
  for (const shard of orphans.sort((a, b) => a - b)) {
    const owner = [...members].sort(byScoreDesc(shard)).find((m) => load.get(m)! < target.get(m)!)!;
    map.set(shard, owner);
    load.set(owner, load.get(owner)! + 1);
  }
  return map;
}

export function shardsOf(map: ShardMap, node: NodeId): ShardId[] {
  return [...map].filter(([, owner]) => owner === node).map(([shard]) => shard).sort((a, b) => a - b);
}

/** Shards whose owner differs between two maps. */
export function movedShards(before: ShardMap, after: ShardMap): number[] {
  const moved: number[] = [];
  for (const [shard, owner] of after) if (before.get(shard) !== owner) moved.push(shard);
  return moved;
}

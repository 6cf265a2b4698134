// Entities and their placement on shards.
//
// shardOf is a jump consistent hash (Lamping & Veach) of a stable 64-bit FNV-1a
// hash of the entity's placement key. Both are pure integer arithmetic, so every
// process, node and version agrees on the shard of a key. Cells are placed by
// their parent at a coarser resolution so that a neighbourhood query usually
// stays on one node.

import { cellToParent, getResolution, isValidCell } from 'h3-js';
import type { EntityRef } from '../actors/behavior.ts';

export type { EntityRef };

// Named identities, as Pekko's sharding names them: plain aliases, so every signature says
// which number is a shard and which string a node or an entity, at no cost at run time.

/** A shard: one partition of the command log, owned by one node at a time. */
export type ShardId = number;
/** A cluster member (`NODE_ID`; the pod name in Kubernetes). */
export type NodeId = string;
/** An entity's identity as text, `kind:id`: the journal's key, and the key of every map of entities. */
export type EntityKey = string;

const SEPARATOR = ':';

export function entityKey(ref: EntityRef): EntityKey {
  return `${ref.kind}${SEPARATOR}${ref.id}`;
}

export function parseEntityKey(key: EntityKey): EntityRef {
  const at = key.indexOf(SEPARATOR);
  if (at <= 0) throw new Error(`not an entity key: ${key}`);
  return { kind: key.slice(0, at), id: key.slice(at + 1) };
}

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const MASK_64 = 0xffffffffffffffffn;

/**
 * The halves of the last hash fnvHalves() took (module state): shardOf reads them with no
 * array and no BigInt per message.
 */
let hashHi = 0;
let hashLo = 0;

/** FNV-1a over the UTF-8 bytes of `text`, as an unsigned 64-bit bigint. */
export function hash64(text: string): bigint {
  fnvHalves(text);
  return (BigInt(hashHi) << 32n) | BigInt(hashLo);
}

/** hash64 of `text` into hashHi and hashLo. */
function fnvHalves(text: string): void {
  // Keys are ASCII (kinds, ids the edge accepts, H3 cells): hashed in two 32-bit halves, with
  // no encoder and no BigInt; it was most of what routing a message cost.
  let hi = 0xcbf29ce4;
  let lo = 0x84222325;
  for (let i = 0; i < text.length; i++) {
    const byte = text.charCodeAt(i);
    if (byte > 0x7f) {
      const h = hash64Utf8(text);
      hashHi = Number(h >> 32n);
      hashLo = Number(h & 0xffffffffn);
      return;
    }
    lo = (lo ^ byte) >>> 0;
    // h * (2^40 + 0x1b3) mod 2^64, in halves: every product stays below 2^53, so exact.
    const low = lo * 0x1b3;
    const carry = Math.floor(low / 0x1_0000_0000);
    hi = (hi * 0x1b3 + carry + ((lo << 8) >>> 0)) % 0x1_0000_0000;
    lo = low % 0x1_0000_0000;
  }
  hashHi = hi;
  hashLo = lo;
}

/** The same hash over any text's UTF-8 bytes (the reference the fast path must equal). */
export function hash64Utf8(text: string): bigint {
  let h = FNV_OFFSET;
  for (const byte of new TextEncoder().encode(text)) {
    h ^= BigInt(byte);
    h = (h * FNV_PRIME) & MASK_64;
  }
  return h;
}

/** Jump consistent hash: maps a 64-bit key to one of `buckets`, moving only 1/n keys when n grows. */
export function jumpHash(key: bigint, buckets: number): number {
  const k = key & MASK_64;
  return jump(Number(k >> 32n), Number(k & 0xffffffffn), buckets);
}

// Jump hash's multiplier, 2862933555777941757, in 32-bit halves.
const JUMP_HI = 0x27bb2ee6;
const JUMP_LO = 0x87b0b0fd;

/**
 * Jump hash of the key hi * 2^32 + lo, its 64-bit step in 32-bit halves: the BigInt version
 * made several BigInts per step, a few steps per message, and was a sender's largest cost of
 * routing a fix to another node's shard. Equal to it for every key (test/shard-of.test.ts).
 */
function jump(hi: number, lo: number, buckets: number): number {
  if (!Number.isInteger(buckets) || buckets < 1) throw new RangeError(`buckets must be a positive integer, got ${buckets}`);
  let b = -1;
  let j = 0;
  while (j < buckets) {
    b = j;
    // k = k * multiplier + 1 mod 2^64. The low halves' full product in 16-bit pieces (each
    // below 2^32, their sums exact in a double); the cross products only matter mod 2^32.
    const a0 = lo & 0xffff;
    const a1 = lo >>> 16;
    const p00 = a0 * (JUMP_LO & 0xffff);
    const p01 = a0 * (JUMP_LO >>> 16);
    const p10 = a1 * (JUMP_LO & 0xffff);
    const p11 = a1 * (JUMP_LO >>> 16);
    const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    const low = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
    const high = p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16);
    const cross = Math.imul(hi, JUMP_LO) + Math.imul(lo, JUMP_HI);
    lo = (low + 1) >>> 0;
    hi = (high + cross + (lo === 0 ? 1 : 0)) >>> 0;
    // (k >> 33) + 1, as the reference divides by.
    j = Math.floor(((b + 1) * 2 ** 31) / ((hi >>> 1) + 1));
  }
  return b;
}

export interface Placement {
  readonly shards: number;
  /** Cells (and areas) are placed by their parent at this resolution. */
  readonly placementRes: number;
}

/**
 * Cells are placed by their parent, so neighbours share a shard and a search stays on one
 * node. An area (batched dispatch: the H3 parent its bookings batch in) goes with its cells
 * when it is finer than the placement resolution, so its batch's searches are local too.
 */
export function placementKey(ref: EntityRef, placementRes: number): string {
  if ((ref.kind === 'cell' || ref.kind === 'area') && isValidCell(ref.id) && getResolution(ref.id) > placementRes) {
    return `cell${SEPARATOR}${cellToParent(ref.id, placementRes)}`;
  }
  return entityKey(ref);
}

export function shardOf(ref: EntityRef, placement: Placement): ShardId {
  fnvHalves(placementKey(ref, placement.placementRes));
  return jump(hashHi, hashLo, placement.shards);
}

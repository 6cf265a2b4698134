// Seeded random numbers for the simulator, so that two runs with the same SEED see the same
// city: the same drivers' starts, the same booking stream, the same answers to the same offer.
// mulberry32: 32 bits of state, fast, and good enough for a simulation (not for secrets).
// Each purpose draws from a stream of its own (streamOf), so one stream's draws never shift
// another's: a driver that cruised longer in one mode does not change the next booking.

export type Random = () => number;

/** A generator of floats in [0, 1) from a 32-bit seed. */
export function mulberry32(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Mixes numbers into one 32-bit seed (a murmur3-style finaliser per part), so nearby inputs give unrelated seeds. */
export function mix(...parts: readonly number[]): number {
  let h = 0x9e3779b9;
  for (const part of parts) {
    let k = Math.imul(part >>> 0, 0xcc9e2d51);
    k = Math.imul((k << 15) | (k >>> 17), 0x1b873593);
    h = Math.imul(((h ^ k) << 13) | ((h ^ k) >>> 19), 5) + 0xe6546b64;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The stream of one purpose (a fixed tag) and one subject (a driver's number, say) under a seed. */
export const streamOf = (seed: number, tag: number, subject = 0): Random => mulberry32(mix(seed, tag, subject));


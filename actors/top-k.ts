// The k best of a stream of (distance, driver) pairs: the k held in order on an array of
// distances beside an array of the drivers, so an offer allocates nothing and costs one
// comparison when it does not enter, and moving the ones behind it when it does (k is tens
// at most; a search offers a few dozen). Order is distance, then driverId, the order every
// nearest answer uses (so answers equal a sort-all). Held in order rather than in a heap:
// the answer needs no sort, and the code a search runs is less (between queries it falls out
// of the CPU's caches with the data: a search runs cold, and each line of code it runs costs).
//
// One top-k serves a whole search across cells (actors/nearest.ts), so a driver may be
// offered twice: crossing a cell boundary, it sits in both cells until the old one hears
// of it. A driver is held once, at its newest copy (by `seenAt`) among those offered while
// it is held; nothing is allocated to know it (the k held are compared, only on entry).
//
// Held drivers are compared by a hash of their id first (`idHash`; a cell index keeps each
// driver's), and their ids only when the hashes are equal: an offer that does not enter then
// reads nothing of the driver's copy. A search measures twice as many drivers as it keeps,
// and between queries their copies fall out of the CPU's caches.

interface Ranked {
  readonly driverId: string;
  readonly seenAt?: number;
}

export interface Entry<T extends Ranked> {
  readonly km: number;
  readonly driver: T;
}

export class TopK<T extends Ranked = Ranked> {
  readonly k: number;
  // Plain arrays: a search makes one top-k, and two typed arrays cost more to make than to use.
  readonly #km: number[];
  readonly #items: (T | undefined)[];
  /** idHash of each held driver's id. */
  readonly #ids: number[];
  #size = 0;

  constructor(k: number) {
    this.k = Math.max(0, Math.floor(k));
    this.#km = new Array<number>(this.k).fill(0);
    this.#ids = new Array<number>(this.k).fill(0);
    this.#items = new Array<T | undefined>(this.k).fill(undefined);
  }

  get size(): number {
    return this.#size;
  }

  /** Empties it, holding no driver's copy, for another search. */
  clear(): void {
    this.#items.fill(undefined, 0, this.#size);
    this.#size = 0;
  }

  /** Distance a driver must not exceed to enter (ties enter by driverId): Infinity until k are held. */
  get bound(): number {
    return this.#size < this.k ? Number.POSITIVE_INFINITY : this.#km[this.k - 1]!;
  }

  /**
   * Whether an offer at `km` of the driver whose idHash is `id` could change what is held: false
   * when the top-k is full, the distance beyond the worst held and no held driver has that hash
   * (what `offer` would ignore), so a caller can skip reading the driver's copy. Ties say true.
   */
  admits(km: number, id: number): boolean {
    if (this.#size < this.k) return true;
    if (km <= this.#km[this.k - 1]!) return this.k > 0;
    for (let i = 0; i < this.#size; i++) if (this.#ids[i] === id) return true;
    return false;
  }

  /** `id`: idHash(driver.driverId), when the caller has it at hand. */
  offer(km: number, driver: T, id = idHash(driver.driverId)): void {
    const k = this.k;
    if (k === 0) return;
    const held = this.#indexOf(id, driver);
    if (held >= 0) {
      // A driver already held: its newer copy takes its place (wherever that ranks); an older one is ignored.
      if (!((driver.seenAt ?? 0) > (this.#items[held]!.seenAt ?? 0))) return;
      this.#removeAt(held);
    } else if (this.#size === k) {
      // The common case: farther than the worst held.
      const last = k - 1;
      if (km > this.#km[last]! || (km === this.#km[last]! && driver.driverId >= this.#items[last]!.driverId)) return;
      this.#size = last;
    }
    this.#insert(km, driver, id);
  }

  /** The held entries, best first (they are held in that order). */
  sorted(): Entry<T>[] {
    const out = new Array<Entry<T>>(this.#size);
    for (let i = 0; i < this.#size; i++) out[i] = { km: this.#km[i]!, driver: this.#items[i]! };
    return out;
  }

  /** Where the driver is held (an offer beyond the bound may still be its newer copy), or -1. */
  #indexOf(id: number, driver: T): number {
    for (let i = 0; i < this.#size; i++) if (this.#ids[i] === id && this.#items[i]!.driverId === driver.driverId) return i;
    return -1;
  }

  #removeAt(i: number): void {
    const size = --this.#size;
    for (let j = i; j < size; j++) {
      this.#km[j] = this.#km[j + 1]!;
      this.#ids[j] = this.#ids[j + 1]!;
      this.#items[j] = this.#items[j + 1];
    }
    this.#items[size] = undefined;
  }

  /** Into its place by distance, then driverId, with room for it: entries behind it move one on. */
  #insert(km: number, driver: T, id: number): void {
    let j = this.#size;
    for (; j > 0; j--) {
      const before = this.#km[j - 1]!;
      if (before < km || (before === km && this.#items[j - 1]!.driverId < driver.driverId)) break;
      this.#km[j] = before;
      this.#ids[j] = this.#ids[j - 1]!;
      this.#items[j] = this.#items[j - 1];
    }
    this.#km[j] = km;
    this.#ids[j] = id;
    this.#items[j] = driver;
    this.#size++;
  }
}

/** A 32-bit hash of a driver id (FNV-1a over its UTF-16 units): equal ids, equal hashes. */
export function idHash(driverId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < driverId.length; i++) h = Math.imul(h ^ driverId.charCodeAt(i), 0x01000193);
  return h | 0;
}

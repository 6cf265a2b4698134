// The k best of a stream of (distance, driver) pairs: a max-heap of k on an array of
// distances beside an array of the drivers, so an offer allocates nothing and costs
// O(log k) when it enters (and one comparison when it does not). Order is distance, then
// driverId, the order every nearest answer uses (so answers equal a sort-all).
//
// One heap serves a whole search across cells (actors/nearest.ts), so a driver may be
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

  /** Distance a driver must not exceed to enter (ties enter by driverId): Infinity until k are held. */
  get bound(): number {
    return this.#size < this.k ? Number.POSITIVE_INFINITY : this.#km[0]!;
  }

  /** `id`: idHash(driver.driverId), when the caller has it at hand. */
  offer(km: number, driver: T, id = idHash(driver.driverId)): void {
    const k = this.k;
    if (k === 0) return;
    const size = this.#size;
    const held = this.#indexOf(id, driver);
    if (held >= 0) return this.#replace(held, km, driver);
    // The common case, and allocation-free: farther than the worst held.
    if (size === k && (km > this.#km[0]! || (km === this.#km[0]! && driver.driverId >= this.#items[0]!.driverId))) return;
    if (size < k) {
      this.#km[size] = km;
      this.#ids[size] = id;
      this.#items[size] = driver;
      this.#size = size + 1;
      this.#up(size);
      return;
    }
    this.#km[0] = km;
    this.#ids[0] = id;
    this.#items[0] = driver;
    this.#down(0);
  }

  /**
   * The held entries, best first. Up to INSERTION_AT_MOST by insertion as they are made: for
   * a search's ten, a sort with a comparator cost more than its search's last cell.
   */
  sorted(): Entry<T>[] {
    const out: Entry<T>[] = [];
    if (this.#size > INSERTION_AT_MOST) {
      for (let i = 0; i < this.#size; i++) out.push({ km: this.#km[i]!, driver: this.#items[i]! });
      return out.sort((a, b) => a.km - b.km || (a.driver.driverId > b.driver.driverId ? 1 : -1));
    }
    for (let i = 0; i < this.#size; i++) {
      const entry = { km: this.#km[i]!, driver: this.#items[i]! };
      let j = i;
      out.push(entry);
      for (; j > 0 && ranksBefore(entry, out[j - 1]!); j--) out[j] = out[j - 1]!;
      out[j] = entry;
    }
    return out;
  }

  /** Where the driver is held (an offer beyond the bound may still be its newer copy), or -1. */
  #indexOf(id: number, driver: T): number {
    for (let i = 0; i < this.#size; i++) if (this.#ids[i] === id && this.#items[i]!.driverId === driver.driverId) return i;
    return -1;
  }

  /** A driver already held: its newer copy takes its place (wherever that ranks); an older one is ignored. */
  #replace(i: number, km: number, driver: T): void {
    const held = this.#items[i]!;
    if (!((driver.seenAt ?? 0) > (held.seenAt ?? 0))) return;
    this.#km[i] = km;
    this.#items[i] = driver;
    this.#up(i);
    this.#down(i);
  }

  /** Entry i ranks worse than entry j: the drivers' ids (their copies, often out of the CPU's caches) are read only on a tie. */
  #worse(i: number, j: number): boolean {
    const a = this.#km[i]!;
    const b = this.#km[j]!;
    return a > b || (a === b && this.#items[i]!.driverId > this.#items[j]!.driverId);
  }

  #swap(i: number, j: number): void {
    const km = this.#km[i]!;
    this.#km[i] = this.#km[j]!;
    this.#km[j] = km;
    const id = this.#ids[i]!;
    this.#ids[i] = this.#ids[j]!;
    this.#ids[j] = id;
    const item = this.#items[i];
    this.#items[i] = this.#items[j];
    this.#items[j] = item;
  }

  #up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#worse(i, parent)) return;
      this.#swap(i, parent);
      i = parent;
    }
  }

  #down(i: number): void {
    const size = this.#size;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let top = i;
      if (l < size && this.#worse(l, top)) top = l;
      if (r < size && this.#worse(r, top)) top = r;
      if (top === i) return;
      this.#swap(i, top);
      i = top;
    }
  }
}

const INSERTION_AT_MOST = 32;

/** The order of `sorted`: distance, then driverId (the held drivers' ids differ). */
function ranksBefore(a: Entry<Ranked>, b: Entry<Ranked>): boolean {
  return a.km < b.km || (a.km === b.km && a.driver.driverId < b.driver.driverId);
}

/** A 32-bit hash of a driver id (FNV-1a over its UTF-16 units): equal ids, equal hashes. */
export function idHash(driverId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < driverId.length; i++) h = Math.imul(h ^ driverId.charCodeAt(i), 0x01000193);
  return h | 0;
}

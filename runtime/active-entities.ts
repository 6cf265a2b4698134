// The entities active on a node, by kind and then by id.
//
// A lookup needs no key string: every soft message (a fix, a cell's copy) names its entity
// by a ref made for it, and building `kind:id` from it, then flattening and hashing that
// new string for one Map lookup, was about 5% of a fix's CPU (profile of the embedded fix
// bench). An id's string is hashed once per message either way.

import type { EntityRef } from '../actors/behavior.ts';

export class ActiveEntities<A extends { readonly self: EntityRef }> {
  readonly #byKind = new Map<string, Map<string, A>>();
  #size = 0;

  get(ref: EntityRef): A | undefined {
    return this.#byKind.get(ref.kind)?.get(ref.id);
  }

  has(ref: EntityRef): boolean {
    return this.get(ref) !== undefined;
  }

  /** Holds `entity` under its own ref, in place of any other with that ref. */
  set(entity: A): void {
    const { kind, id } = entity.self;
    let ids = this.#byKind.get(kind);
    if (!ids) this.#byKind.set(kind, (ids = new Map()));
    if (!ids.has(id)) this.#size++;
    ids.set(id, entity);
  }

  /** Forgets `entity`, only if it is the one held under its ref (a newer one stays). */
  delete(entity: A): boolean {
    const ids = this.#byKind.get(entity.self.kind);
    if (ids?.get(entity.self.id) !== entity) return false;
    ids.delete(entity.self.id);
    this.#size--;
    return true;
  }

  get size(): number {
    return this.#size;
  }

  /** Calls `visit` for every entity held, with no iterator or entry made per entity. */
  forEach(visit: (entity: A) => void): void {
    for (const ids of this.#byKind.values()) ids.forEach(visit);
  }

  *values(): IterableIterator<A> {
    for (const ids of this.#byKind.values()) yield* ids.values();
  }
}

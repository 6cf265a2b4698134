// What the shard host trims of nact's actor objects, which keep more per actor than an entity
// needs (a node holds one per online driver). nact exports no way to reach an actor object
// from its reference, so this reads its registry of systems; each trim checks the shape it
// expects and leaves anything else alone.

import { createRequire } from 'node:module';
import type { dispatch } from 'nact';

type NactRef = Parameters<typeof dispatch>[0];

/** The fields of nact's actor object trimmed here. */
interface NactActor {
  children?: Map<string, unknown>;
  childReferences?: Map<string, unknown>;
}

/** nact's registry of systems, to reach an actor object from its reference. */
const nactSystems = createRequire(import.meta.url)('nact/lib/system-map.js') as {
  find(system: string, ref: unknown): NactActor | undefined;
};

const actorOf = (ref: NactRef) => nactSystems.find((ref as unknown as { system: { name: string } }).system.name, ref);

/** A map nothing may be added to: what an entity actor's children are (see withoutChildMaps). */
class NoChildren extends Map<string, unknown> {
  override set(): this {
    throw new Error('an entity actor spawns no child actors');
  }
}
const NO_CHILDREN = new NoChildren();

/**
 * nact gives every actor two maps of its children, each an object and a table of its own
 * (367 bytes of heap per entity in all, measured), and an entity actor never has a child:
 * one empty map that refuses additions stands for both in every entity actor (nact reads
 * them only to find, stop or list children, and copies one into each message's context).
 */
export function withoutChildMaps(ref: NactRef): void {
  const actor = actorOf(ref);
  if (!actor || actor.children?.size !== 0 || actor.childReferences?.size !== 0) return;
  actor.children = NO_CHILDREN;
  actor.childReferences = NO_CHILDREN;
}

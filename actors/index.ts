// The entity kinds a dispatch node hosts.

import type { Behavior } from './behavior.ts';

export interface DomainSettings {
  readonly dispatch: { readonly cellRes: number; readonly offerTimeoutMs: number; readonly surgeCap: number };
}

export function dispatchBehaviors(_settings: DomainSettings): Behavior<unknown, unknown, unknown, unknown, unknown>[] {
  return [];
}

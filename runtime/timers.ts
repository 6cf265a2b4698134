// Timers, as commands. An entity's timer is journaled with the command that set it
// and armed in memory while the entity is active; when it is due, the node appends
// a *fire* command to the entity's shard in the command log, with an id derived
// from the entity, the timer's name and its due time. From there it is a command
// like any other: retried while storage fails, dead-lettered if it never can be
// handled, redelivered after a crash and dropped as a duplicate once handled (its
// tells re-sent). Reminders (the durable note that an entity has a timer) bring
// the entity back after a restart or a shard move, and are re-scanned periodically.

import type { EntityRef } from '../actors/behavior.ts';
import { entityKey, type EntityKey } from './entity.ts';

/** The message of a fire command. The `$` keeps it apart from every domain message. */
export interface TimerFire {
  readonly $timer: string;
  readonly at: number;
}

export function isTimerFire(message: unknown): message is TimerFire {
  const m = message as Partial<TimerFire> | null;
  return typeof m === 'object' && m !== null && typeof m.$timer === 'string' && typeof m.at === 'number';
}

/** The same timer firing twice (two nodes, a retry) is one command. */
export function timerCommandId(self: EntityRef, name: string, at: number): string {
  return `timer:${entityKey(self)}/${name}/${at}`;
}

/** One armed timer of an entity. */
interface Armed {
  readonly name: string;
  readonly handle: NodeJS.Timeout;
  readonly at: number;
}

/**
 * The in-memory side of timers: one timeout per (entity, timer name), armed while the entity
 * is active. An entity's timers are a short list (one or two: a driver's presence, a
 * booking's offer and deadline), not a map each: a node holds one per online driver.
 */
export class EntityTimers {
  readonly #byEntity = new Map<EntityKey, Armed[]>();
  readonly #now: () => number;

  constructor(now: () => number) {
    this.#now = now;
  }

  arm(key: string, name: string, at: number, fire: () => void): void {
    this.disarm(key, name);
    // setTimeout holds at most ~24.8 days; a later timer is re-armed when that passes.
    const delay = Math.min(Math.max(0, at - this.#now()), 2 ** 31 - 1);
    const armed: Armed = {
      name, at,
      handle: setTimeout(() => {
        this.#drop(key, armed);
        if (this.#now() < at) this.arm(key, name, at, fire);
        else fire();
      }, delay),
    };
    const list = this.#byEntity.get(key);
    if (list) list.push(armed); else this.#byEntity.set(key, [armed]);
  }

  disarm(key: string, name: string): void {
    const armed = this.#byEntity.get(key)?.find((a) => a.name === name);
    if (!armed) return;
    clearTimeout(armed.handle);
    this.#drop(key, armed);
  }

  #drop(key: string, armed: Armed): void {
    const list = this.#byEntity.get(key);
    const i = list ? list.indexOf(armed) : -1;
    if (i < 0) return;
    list!.splice(i, 1);
    if (list!.length === 0) this.#byEntity.delete(key);
  }

  disarmAll(key: string): void {
    for (const name of this.names(key)) this.disarm(key, name);
  }

  names(key: string): string[] {
    return (this.#byEntity.get(key) ?? []).map((a) => a.name);
  }

  /** When the entity's next armed timer is due; undefined when it has none. */
  nextAt(key: string): number | undefined {
    const armed = this.#byEntity.get(key) ?? [];
    return armed.length === 0 ? undefined : Math.min(...armed.map((a) => a.at));
  }
}

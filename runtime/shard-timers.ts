// Timers and reminders of the entities of the shards this node serves.
//
// A due timer becomes a command in its entity's shard (timers.ts), appended to the log so it
// is handled like any other; one whose outcome only re-arms it in memory and re-sends soft
// state (a driver's presence) is run at once instead (ShardHost.fireNow). A reminder
// (ports.ts ReminderStore) is the durable note that an entity has a timer, so the shard's
// next owner (or this node after a restart) activates the entity and it arms its timers
// again: every reminder on a shard being set up, and from time to time those already due
// whose entity is not active (its timer was lost). Reminder writes
// of one entity are applied in the order the entity made them: a clear left to run beside
// the next command's set could land after it and lose the reminder.

import type { EntityRef } from '../actors/behavior.ts';
import { entityKey, parseEntityKey, type EntityKey } from './entity.ts';
import type { CommandLog, Reminder, ReminderStore, ShardId } from './ports.ts';
import type { ShardHost } from './shard-host.ts';
import { sleep } from './backoff.ts';
import { timerCommandId, type TimerFire } from './timers.ts';

export interface ShardTimersOptions {
  readonly log: Pick<CommandLog, 'append'>;
  readonly reminders: ReminderStore;
  readonly host: Pick<ShardHost, 'knows' | 'isActive' | 'activate' | 'armedTimers'> & Partial<Pick<ShardHost, 'fireNow'>>;
  readonly shardOf: (ref: EntityRef) => ShardId;
  /** Whether this node serves the shard now (shard-handoff.ts). */
  readonly holds: (shard: ShardId) => boolean;
  /** Whether the shard is this node's but paused: a fire due meanwhile waits for it. */
  readonly paused: (shard: ShardId) => boolean;
  readonly stopping: () => boolean;
  readonly now: () => number;
  readonly backoff: () => Generator<number, never>;
  readonly onError?: (error: unknown, context: string) => void;
}

export class ShardTimers {
  readonly #o: ShardTimersOptions;
  /** Timers that came due on paused shards: fired when the shard is served again. */
  #deferred: { self: EntityRef; name: string; at: number }[] = [];
  /** Per entity, the tail of its reminder writes (remember and forget run in order). */
  readonly #writes = new Map<EntityKey, Promise<void>>();
  #scan: NodeJS.Timeout | undefined;

  constructor(options: ShardTimersOptions) {
    this.#o = options;
  }

  /**
   * Re-scans the reminders of `owned()` every `everyMs`, looking one interval ahead, so an
   * entity passivated with a far-off timer is back before it is due, and one whose timer was
   * missed (a failed fire, a poisoned incarnation passivated) comes back.
   */
  startScan(owned: () => readonly ShardId[], everyMs: number): void {
    this.#scan = setInterval(() => void this.#activateReminded(owned(), this.#o.now() + everyMs), everyMs);
    this.#scan.unref();
  }

  stopScan(): void {
    if (this.#scan) clearInterval(this.#scan);
  }

  /** Every entity with a reminder on shards being set up is activated; reminders that cannot be read fail the step. */
  async setUp(shards: readonly ShardId[]): Promise<void> {
    await this.#activate(await this.#o.reminders.forShards(shards));
  }

  /** Writes an entity's reminder, after its earlier reminder writes. */
  remember(self: EntityRef, name: string, dueAt: number): Promise<void> {
    const shard = this.#o.shardOf(self);
    return this.#inOrder(entityKey(self), () => this.#o.reminders.set({ shard, entityKey: entityKey(self), name, dueAt }));
  }

  /** Clears an entity's reminder, after its earlier reminder writes; not waited for (a failure leaves a harmless extra one). */
  forget(self: EntityRef, name: string): void {
    const key = entityKey(self);
    this.#inOrder(key, () => this.#o.reminders.clear(key, name, this.#o.shardOf(self)))
      .catch((e) => this.#o.onError?.(e, `clear reminder ${name}`));
  }

  #inOrder(key: EntityKey, write: () => Promise<void>): Promise<void> {
    const run = (this.#writes.get(key) ?? Promise.resolve()).then(write);
    const tail = run.catch(() => undefined);
    this.#writes.set(key, tail);
    void tail.then(() => { if (this.#writes.get(key) === tail) this.#writes.delete(key); });
    return run;
  }

  /**
   * A due timer becomes a command in its entity's shard. Not a promise: most fires of an
   * idle node are presence firings run at once, and an async call made one per fire.
   */
  fire(self: EntityRef, name: string, at: number): void {
    if (this.#o.stopping()) return; // the reminder brings it back on the next owner
    // A fire that only re-arms itself in memory and re-sends soft state needs no log. Its
    // shard is its activation's: hashing the ref (shardOf's BigInt FNV) was a third of what
    // an idle driver's presence firing allocated (heap sampling of an idle node).
    if (this.#o.host.fireNow?.(self, name, at, this.#o.holds)) return;
    const shard = this.#o.shardOf(self);
    if (!this.#o.holds(shard)) {
      // Paused (a rebalance, an epoch check): fired when the shard is served again; else the new owner re-arms it.
      if (this.#o.paused(shard)) this.#deferred.push({ self, name, at });
      return;
    }
    void this.#append(self, shard, name, at);
  }

  /** The fire command into the log, retried while this node serves the shard. */
  async #append(self: EntityRef, shard: ShardId, name: string, at: number): Promise<void> {
    const fire: TimerFire = { $timer: name, at };
    for (const delay of this.#o.backoff()) {
      try {
        await this.#o.log.append(shard, { id: timerCommandId(self, name, at), to: self, message: fire, at: this.#o.now() });
        return;
      } catch (error) {
        // The reminder would bring it back after a restart; while this node runs, keep trying.
        if (!this.#o.holds(shard) || this.#o.stopping()) return;
        this.#o.onError?.(error, `timer ${name} of ${entityKey(self)}: the log refused the fire command; retrying`);
        await sleep(delay);
      }
    }
  }

  /** Shards may be served again: deferred fires of served shards go, those of shards no longer this node's are dropped. */
  resume(): void {
    if (this.#deferred.length === 0) return;
    const waiting = this.#deferred;
    this.#deferred = [];
    for (const f of waiting) {
      const shard = this.#o.shardOf(f.self);
      if (this.#o.holds(shard)) this.fire(f.self, f.name, f.at);
      else if (this.#o.paused(shard)) this.#deferred.push(f);
    }
  }

  async #activateReminded(shards: readonly ShardId[], dueBy: number): Promise<void> {
    if (shards.length === 0) return;
    // The scan comes again: a failure here is only reported.
    const reminders = await this.#o.reminders.forShards(shards)
      .catch((e) => { this.#o.onError?.(e, 'reading reminders'); return []; });
    await this.#activate(reminders, dueBy);
  }

  /**
   * Entities with timers are activated so their timers are armed again: every reminder given
   * (a shard being set up), or with `dueBy` (the periodic scan) those due by then whose entity
   * is not active.
   */
  async #activate(reminders: readonly Reminder[], dueBy?: number): Promise<void> {
    const host = this.#o.host;
    const byKey = new Map<EntityKey, { ref: EntityRef; names: string[] }>();
    for (const r of reminders) {
      if (dueBy !== undefined && r.dueAt > dueBy) continue;
      const wanted = byKey.get(r.entityKey);
      if (wanted) { wanted.names.push(r.name); continue; }
      const ref = parseEntityKey(r.entityKey);
      // The scan passes over active entities here, not one promise each: an online driver's
      // presence reminder keeps its first due time (re-armed in memory since), so every scan
      // finds every online driver's reminder due.
      if (!host.knows(ref.kind) || (dueBy !== undefined && host.isActive(ref))) continue;
      byKey.set(r.entityKey, { ref, names: [r.name] });
    }
    await Promise.all([...byKey].map(async ([key, { ref, names }]) => {
      const shard = this.#o.shardOf(ref);
      // A shard lost (fenced, revoked) since the reminders were read is not woken here.
      if (!this.#o.holds(shard)) return;
      try {
        await host.activate(ref, shard);
        // A reminder whose timer the entity no longer has was left by a lost delete: drop it,
        // or every scan would wake the entity again.
        const armed = new Set(host.armedTimers(ref));
        for (const name of names) {
          if (!armed.has(name)) await this.#inOrder(key, () => this.#o.reminders.clear(key, name, shard));
        }
      } catch (e) {
        this.#o.onError?.(e, `activating ${key} for its timers`);
      }
    }));
  }
}

// A test entity that records every message it handles, and a memory journal that can hold
// its writes: for the tests of soft messages around the mailbox and of hibernation.

import type { Behavior } from '../../actors/behavior.ts';
import { MemoryJournal } from '../../adapters/memory/journal.ts';
import type { JournalEntry } from '../../runtime/ports.ts';

export interface Log { readonly seen: readonly string[] }
export type Note = { readonly type: 'note'; readonly v: string } | { readonly type: 'mark'; readonly v: string };

/** Every message it handles is appended to `seen`: soft notes change state only, marks are journaled. */
export const recorder: Behavior<Log, Note, { readonly type: 'marked'; readonly v: string }, { readonly type: 'get' }, Log> = {
  kind: 'recorder',
  eventVersion: 1,
  initial: () => ({ seen: [] }),
  handle(s, m) {
    if (m.type === 'note') return { state: { seen: [...s.seen, m.v] }, events: [], effects: [] };
    const event = { type: 'marked' as const, v: m.v };
    return { state: recorder.apply(s, event), events: [event], effects: [] };
  },
  apply: (s, e) => ({ seen: [...s.seen, e.v] }),
  query: (s) => s,
};

/** A memory journal whose appends wait while it is held; it counts appends waiting and reads. */
export class GatedJournal extends MemoryJournal {
  #held: Promise<void> | undefined;
  #release: (() => void) | undefined;
  waiting = 0;
  reads = 0;
  hold(): void {
    this.#held = new Promise((r) => { this.#release = r; });
  }
  release(): void {
    this.#held = undefined;
    this.#release?.();
  }
  override async append(entry: JournalEntry, options?: Parameters<MemoryJournal['append']>[1]): Promise<void> {
    if (this.#held) { this.waiting++; await this.#held; this.waiting--; }
    return super.append(entry, options);
  }
  override async read(key: string, after: number, limit: number): Promise<JournalEntry[]> {
    this.reads++;
    return super.read(key, after, limit);
  }
  override async latestSnapshot(key: string) {
    this.reads++;
    return super.latestSnapshot(key);
  }
}

/** Polls `check` every 10 ms for up to a minute. */
export const until = async (check: () => boolean) => {
  for (let i = 0; i < 6_000 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  return check();
};

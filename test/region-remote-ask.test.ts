// An ask from another node (the remote channel's handler) to an entity active here is answered
// from its activation, its shard not hashed again; one not active here is found by its shard,
// activated and answered; one of a shard not served here is refused as before.

import test from 'ava';
import { InProcessNotifier } from '../adapters/memory/notifier.ts';
import { MemoryJournal } from '../adapters/memory/journal.ts';
import { MemoryReminderStore } from '../adapters/memory/reminders.ts';
import type { Behavior, EntityRef } from '../actors/behavior.ts';
import { shardOf, type Placement } from '../runtime/entity.ts';
import type { RemoteChannel } from '../runtime/ports.ts';
import { ShardRegion } from '../runtime/region.ts';
import { ShardHost } from '../runtime/shard-host.ts';
import { placedLog } from './helpers/placed-log.ts';

const P: Placement = { shards: 8, placementRes: 4 };
const counter: Behavior<{ n: number }, { type: 'add' }, never, { type: 'n' }> = {
  kind: 'counter',
  initial: () => ({ n: 0 }),
  handle: (state: { n: number }) => ({ state: { n: state.n + 1 }, events: [] as never[] }),
  query: (state: { n: number }) => state.n,
} as never;

test('an ask from another node to an entity active here is answered without hashing its key again', async (t) => {
  const idHere = Array.from({ length: 100 }, (_, i) => `c${i}`).find((id) => shardOf({ kind: 'counter', id }, P) === 0)!;
  const idAway = Array.from({ length: 100 }, (_, i) => `c${i}`).find((id) => shardOf({ kind: 'counter', id }, P) === 1)!;
  let handlers: Parameters<RemoteChannel['serve']>[0] | undefined;
  const remote: RemoteChannel = {
    ask: async () => { throw new Error('not asked'); }, reply: async () => undefined,
    serve: async (h) => { handlers = h; },
  };
  const log = placedLog(P.shards, [0]);
  const host = new ShardHost({
    journal: new MemoryJournal(), behaviors: [counter as never], passivateAfterMs: 60_000, maxActiveEntities: 100, maxConcurrentRecoveries: 4, snapshotEvery: 0,
  });
  const region = new ShardRegion({
    nodeId: 'a', placement: P, host, log, remote, reminders: new MemoryReminderStore(), notifier: new InProcessNotifier(), askTimeoutMs: 2_000,
  });
  await region.start();
  t.teardown(() => region.stop());
  const here: EntityRef = { kind: 'counter', id: idHere };
  let hashed = 0;
  const shardOfRef = region.shardOf.bind(region);
  region.shardOf = (ref) => { hashed++; return shardOfRef(ref); };

  // Not active yet: found by its shard, activated, answered.
  t.is(await handlers!.ask(here, { type: 'n' }), 0);
  t.true(hashed > 0, 'an entity not active here is found by its shard');
  // Active now: answered from its activation.
  hashed = 0;
  t.is(await handlers!.ask(here, { type: 'n' }), 0);
  t.is(hashed, 0, 'the shard of an active entity was computed again');
  // A shard another node serves: refused, so the asker looks for its owner.
  const refused = await t.throwsAsync(handlers!.ask({ kind: 'counter', id: idAway }, { type: 'n' }));
  t.is(refused?.name, 'NotOwnerError');
});

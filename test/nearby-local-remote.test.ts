// The nearby search on a node that serves some of a search's cells and not others: the cells
// it serves answer in process (askNow, straight into the search's top-k), the others are asked
// of their owner over the remote channel, and the answer is the brute-force one either way.

import test from 'ava';
import { gridDisk, latLngToCell } from 'h3-js';
import { DEFAULT_CELL, makeCellBehavior, type Candidate, type CellState, type DriverCopy } from '../actors/cell.ts';
import { distanceKm, type Point } from '../actors/geo.ts';
import { DEFAULT_SEARCH, searchNearest } from '../actors/nearest.ts';
import { InProcessNotifier } from '../adapters/memory/notifier.ts';
import { MemoryJournal } from '../adapters/memory/journal.ts';
import { MemoryReminderStore } from '../adapters/memory/reminders.ts';
import { findNearby } from '../http/routes/discovery.ts';
import { shardOf, type Placement } from '../runtime/entity.ts';
import type { RemoteChannel } from '../runtime/ports.ts';
import { ShardRegion } from '../runtime/region.ts';
import { NOT_NOW, ShardHost } from '../runtime/shard-host.ts';
import { placedLog } from './helpers/placed-log.ts';

const RES = 7;
const P: Placement = { shards: 16, placementRes: 4 };
const cells = makeCellBehavior(DEFAULT_CELL);

function seeded(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

/** A point whose 3 km search meets cells of two shards at least: where two res-4 parents meet. */
function borderPoint(): { point: Point; here: number } {
  const rand = seeded(5);
  for (;;) {
    const point = { lat: 40 + rand() * 5, lng: -80 + rand() * 5 };
    const origin = latLngToCell(point.lat, point.lng, RES);
    const shards = new Set(gridDisk(origin, 3).map((id) => shardOf({ kind: 'cell', id }, P)));
    if (shards.size >= 2) return { point, here: shardOf({ kind: 'cell', id: origin }, P) };
  }
}

test('a node answers the cells it serves in process and asks the owner of the others: brute-force answers either way, and the same as asking every cell', async (t) => {
  const { point, here } = borderPoint();
  const now = Date.now();
  const rand = seeded(9);
  const drivers: DriverCopy[] = Array.from({ length: 600 }, (_, i) => ({
    driverId: `d${i}`, lat: point.lat + (rand() - 0.5) * 0.07, lng: point.lng + (rand() - 0.5) * 0.09,
    status: i % 7 === 0 ? 'offline' : 'available', vehicleType: i % 3 === 0 ? 'comfort' : 'economy', rating: 5, acceptanceRate: 1,
    lastTripEndedAt: 0, maintenance: [], seenAt: now,
  }));
  const cellOf = (d: DriverCopy) => latLngToCell(d.lat, d.lng, RES);
  const served = (cell: string) => shardOf({ kind: 'cell', id: cell }, P) === here;

  // Node b: the cells of every other shard, as its cell actors hold them.
  const elsewhere = new Map<string, CellState>();
  for (const d of drivers.filter((x) => !served(cellOf(x)))) {
    const id = cellOf(d);
    elsewhere.set(id, cells.handle(elsewhere.get(id) ?? cells.initial(id), { type: 'driver.upsert', driver: d }, { self: { kind: 'cell', id }, now, commandId: 'x' }).state);
  }
  const remoteAsks: string[] = [];
  let remoteTotal = 0;
  const remote: RemoteChannel = {
    ask: async (node, to, query) => {
      t.is(node, 'b');
      remoteAsks.push(to.id);
      remoteTotal++;
      return cells.query!(elsewhere.get(to.id) ?? cells.initial(to.id), query as never, { self: to, now: Date.now() });
    },
    reply: async () => undefined,
    serve: async () => undefined,
  };

  // Node a: the shard of the search's origin; b owns the rest.
  const log = placedLog(P.shards, [here]);
  const host = new ShardHost({
    journal: new MemoryJournal(), behaviors: [cells as never], passivateAfterMs: 60_000, maxActiveEntities: 10_000, maxConcurrentRecoveries: 4, snapshotEvery: 0,
  });
  const region = new ShardRegion({
    nodeId: 'a', placement: P, host, log, remote, reminders: new MemoryReminderStore(), notifier: new InProcessNotifier(), askTimeoutMs: 5_000,
  });
  await region.start();
  t.teardown(() => region.stop());
  // What cells offered into a search in process.
  const offeredHere: string[] = [];
  const queryServed = host.queryServed.bind(host);
  host.queryServed = (self, serves, query) => {
    const answer = queryServed(self, serves, query);
    if ((query as { type?: string }).type === 'nearest.offer' && answer !== NOT_NOW) offeredHere.push(self.id);
    return answer;
  };
  for (const d of drivers.filter((x) => served(cellOf(x)))) t.is(await region.tellSoft({ kind: 'cell', id: cellOf(d) }, { type: 'driver.upsert', driver: d }), 'applied');

  const oracle = (q: { point: Point; k: number; radiusKm: number; vehicleType?: string }) => drivers
    .filter((d) => d.status === 'available' && (!q.vehicleType || d.vehicleType === q.vehicleType))
    .map((d) => ({ id: d.driverId, km: distanceKm(q.point, d) }))
    .filter((x) => x.km <= q.radiusKm)
    .sort((a, b) => a.km - b.km || (a.id < b.id ? -1 : 1))
    .slice(0, q.k).map((x) => x.id);

  let searched = 0;
  for (let i = 0; i < 30; i++) {
    const q = { point: { lat: point.lat + (rand() - 0.5) * 0.03, lng: point.lng + (rand() - 0.5) * 0.04 }, k: [1, 10, 50][i % 3]!, radiusKm: 3, vehicleType: i % 2 ? 'comfort' : undefined };
    remoteAsks.length = 0;
    offeredHere.length = 0;
    const found = await findNearby(region, RES, DEFAULT_SEARCH, undefined, q);
    t.deepEqual(found.map((f) => f.driver.driverId), oracle(q));
    t.true(remoteAsks.every((id) => !served(id)), 'a cell served here was asked of another node');
    t.true(offeredHere.every(served), 'a cell served elsewhere answered here');
    t.true(offeredHere.length > 0, 'the search\'s cells served here offered in process');
    searched += remoteAsks.length;
    // Every cell asked the ask way (no in-process offer): the same answer.
    const asked = await searchNearest(q, RES, (id) => region.ask<Candidate[]>({ kind: 'cell', id }, { type: 'nearest', ...q }));
    t.deepEqual(asked.map((c) => c.driverId), oracle(q));
  }
  t.true(elsewhere.size > 0);
  t.true(searched > 0, 'no search asked a cell of the other node');
  t.true(remoteTotal > searched, 'the ask way asked the other node too');
});

// Dispatch benchmarks, each side by side on the same data in one run:
// - nearest (k=10, 3 km) over 100k online drivers in one metro: cell actors vs
//   Redis GEOSEARCH ... ASC COUNT 10 vs a brute-force scan, with agreement;
// - GPS fixes per second through driver and cell actors vs Redis GEOADD pipelined;
// - booking-to-offer latency.
// The runtime is the real one in this process (in-process log, in-memory journal:
// fixes and cell state are never journaled, so storage is not what is measured).

import { latLngToCell } from 'h3-js';
import { Redis } from 'ioredis';
import { DEFAULT_BOOKING, makeBookingBehavior } from '../actors/booking.ts';
import { DEFAULT_CELL, makeCellBehavior, type Candidate, type DriverCopy } from '../actors/cell.ts';
import { makeDriverBehavior } from '../actors/driver.ts';
import { distanceKm } from '../actors/geo.ts';
import { nearestService } from '../actors/index.ts';
import { searchNearest } from '../actors/nearest.ts';
import { createBooking } from '../test/fixtures/booking-request.ts';
import { startRig } from '../test/helpers/rig.ts';
import { percentile, type Row } from './stats.ts';

const CELL_RES = 7;
const CENTER = { lat: 40.73, lng: -73.99 };

function seeded(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

const round = (x: number) => Math.round(x * 1000) / 1000;

async function rig() {
  return startRig({
    shards: 32,
    // Under a deliberate backlog a request waits its turn; the bench measures rates, not timeouts.
    askTimeoutMs: 120_000,
    behaviors: [
      makeDriverBehavior({ cellRes: CELL_RES, offerTimeoutMs: 15_000 }),
      makeCellBehavior(DEFAULT_CELL),
      makeBookingBehavior({ ...DEFAULT_BOOKING, deadlineMs: 60_000 }),
    ],
    services: { nearest: nearestService(CELL_RES) },
  });
}

function timeSeries(samples: number[], name: string, note: string): Row[] {
  return [
    { bench: 'dispatch', case: `${name} p50`, value: round(percentile(samples, 50)), unit: 'ms', note },
    { bench: 'dispatch', case: `${name} p99`, value: round(percentile(samples, 99)), unit: 'ms', note },
  ];
}

export async function dispatchBench(options: { redisUrl?: string; quick?: boolean }): Promise<Row[]> {
  const rows: Row[] = [];
  const n = options.quick ? 20_000 : 100_000;
  const queries = options.quick ? 200 : 1_000;
  const rand = seeded(11);
  const now = Date.now();
  // About 30 x 30 km: one metro.
  const drivers: DriverCopy[] = Array.from({ length: n }, (_, i) => ({
    driverId: `d${i}`, lat: CENTER.lat + (rand() - 0.5) * 0.27, lng: CENTER.lng + (rand() - 0.5) * 0.36, status: 'available',
    vehicleType: 'economy', rating: 5, acceptanceRate: 1, lastTripEndedAt: 0, maintenance: [], seenAt: now + 3_600_000,
  }));
  const points = Array.from({ length: queries }, () => ({ lat: CENTER.lat + (rand() - 0.5) * 0.25, lng: CENTER.lng + (rand() - 0.5) * 0.33 }));

  // Cell actors, filled with the drivers' copies as driver actors would send them.
  const r = await rig();
  const loadStart = performance.now();
  for (let i = 0; i < drivers.length; i += 5_000) {
    await Promise.all(drivers.slice(i, i + 5_000).map((d) =>
      r.region.tell({ kind: 'cell', id: latLngToCell(d.lat, d.lng, CELL_RES) }, { type: 'driver.upsert', driver: d })));
  }
  // A request to every cell queues behind that cell's upserts: when all answer, all are in.
  const cellIds = [...new Set(drivers.map((d) => latLngToCell(d.lat, d.lng, CELL_RES)))];
  await Promise.all(cellIds.map((id) => r.region.request({ kind: 'cell', id }, { type: 'driver.remove', driverId: 'none', at: 0 }, { timeoutMs: 300_000 })));
  const loadSeconds = (performance.now() - loadStart) / 1000;
  rows.push({ bench: 'dispatch', case: 'cell updates/s (driver copies into cell actors)', value: Math.round(n / loadSeconds), unit: 'msg/s', note: `${n} upserts through the command log` });

  const actorTimes: number[] = [];
  const actorAnswers: string[][] = [];
  for (const point of points) {
    const t0 = performance.now();
    const found = await searchNearest({ point, k: 10, radiusKm: 3, vehicleType: 'economy' }, CELL_RES,
      (cell) => r.region.ask<Candidate[]>({ kind: 'cell', id: cell }, { type: 'nearest', point, k: 10, radiusKm: 3, vehicleType: 'economy' }));
    actorTimes.push(performance.now() - t0);
    actorAnswers.push(found.map((c) => c.driverId));
  }

  const bruteTimes: number[] = [];
  const bruteAnswers: string[][] = [];
  for (const point of points) {
    const t0 = performance.now();
    const best: { id: string; km: number }[] = [];
    for (const d of drivers) {
      const km = distanceKm(point, d);
      if (km > 3 || (best.length === 10 && km >= best[9]!.km)) continue;
      best.push({ id: d.driverId, km });
      best.sort((a, b) => a.km - b.km);
      if (best.length > 10) best.pop();
    }
    bruteTimes.push(performance.now() - t0);
    bruteAnswers.push(best.map((b) => b.id));
  }

  const qps = (times: number[]) => Math.round(times.length / (times.reduce((a, b) => a + b, 0) / 1000));
  rows.push(...timeSeries(actorTimes, `nearest k=10 3 km over ${n} drivers, cell actors`, `${queries} queries; rings of H3 res ${CELL_RES} cells`));
  rows.push({ bench: 'dispatch', case: 'nearest queries/s, cell actors (one at a time)', value: qps(actorTimes), unit: 'q/s' });
  rows.push({ bench: 'dispatch', case: 'nearest queries/s, brute force (one at a time)', value: qps(bruteTimes), unit: 'q/s' });
  rows.push(...timeSeries(bruteTimes, `nearest k=10 3 km over ${n} drivers, brute force`, 'one linear scan per query'));
  const agreeBrute = actorAnswers.filter((a, i) => a.join() === bruteAnswers[i]!.join()).length / queries;
  rows.push({ bench: 'dispatch', case: 'nearest: cell actors agree with brute force', value: round(agreeBrute), unit: 'fraction', note: 'same ids in the same order' });

  if (options.redisUrl) {
    const redis = new Redis(options.redisUrl);
    const key = `bench:drivers:${process.pid}`;
    await redis.del(key);
    const geoStart = performance.now();
    for (let i = 0; i < drivers.length; i += 5_000) {
      const pipe = redis.pipeline();
      for (const d of drivers.slice(i, i + 5_000)) pipe.geoadd(key, d.lng, d.lat, d.driverId);
      await pipe.exec();
    }
    const geoSeconds = (performance.now() - geoStart) / 1000;
    rows.push({ bench: 'dispatch', case: 'Redis GEOADD pipelined/s (same drivers)', value: Math.round(n / geoSeconds), unit: 'msg/s', note: 'pipelines of 5,000' });
    const redisTimes: number[] = [];
    const redisAnswers: string[][] = [];
    for (const point of points) {
      const t0 = performance.now();
      const ids = await redis.call('GEOSEARCH', key, 'FROMLONLAT', point.lng, point.lat, 'BYRADIUS', 3, 'km', 'ASC', 'COUNT', 10) as string[];
      redisTimes.push(performance.now() - t0);
      redisAnswers.push(ids);
    }
    await redis.del(key);
    redis.disconnect();
    rows.push(...timeSeries(redisTimes, `nearest k=10 3 km over ${n} drivers, Redis GEOSEARCH`, 'GEOSEARCH FROMLONLAT BYRADIUS 3 km ASC COUNT 10'));
    rows.push({ bench: 'dispatch', case: 'nearest queries/s, Redis GEOSEARCH (one at a time)', value: qps(redisTimes), unit: 'q/s' });
    const setAgree = actorAnswers.filter((a, i) => new Set(a).size === new Set([...a, ...redisAnswers[i]!]).size && a.length === redisAnswers[i]!.length).length / queries;
    rows.push({ bench: 'dispatch', case: 'nearest: cell actors agree with Redis (same set)', value: round(setAgree), unit: 'fraction', note: 'Redis measures on its own earth radius and geohash cells; ties at the edge may differ' });
    rows.push({ bench: 'dispatch', case: 'nearest p50 ratio Redis / cell actors', value: round(percentile(redisTimes, 50) / percentile(actorTimes, 50)), unit: '×', note: '>1: actors faster' });
  }

  await r.stop();

  // Fixes and dispatch on a city of real driver actors (the 100k copies above have no
  // driver actors behind them, so they would only refuse offers).
  const city = await rig();
  const fleet = Array.from({ length: options.quick ? 500 : 2_000 }, (_, i) => `fx${i}`);
  await Promise.all(fleet.map((id) => city.region.request({ kind: 'driver', id }, { type: 'online', vehicleType: 'economy' })));
  await Promise.all(fleet.map((id) => city.region.request({ kind: 'driver', id }, {
    type: 'location', fix: { lat: CENTER.lat + (rand() - 0.5) * 0.2, lng: CENTER.lng + (rand() - 0.5) * 0.2, at: now - 1 },
  })));
  const fixes = options.quick ? 10_000 : 50_000;
  const fixStart = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: 500 }, async () => {
    while (next < fixes) {
      const i = next++;
      await city.region.request({ kind: 'driver', id: fleet[i % fleet.length]! }, {
        type: 'location', fix: { lat: CENTER.lat + (rand() - 0.5) * 0.2, lng: CENTER.lng + (rand() - 0.5) * 0.2, at: now + i },
      });
    }
  }));
  rows.push({ bench: 'dispatch', case: 'GPS fixes/s through driver actors', value: Math.round(fixes / ((performance.now() - fixStart) / 1000)), unit: 'fix/s', note: `${fixes} fixes from ${fleet.length} driver actors, each also updating its cell actor; 500 in flight` });

  // Booking to offer: drivers decline at once, so the pool stays free; only the first offer is timed.
  const offerAt = new Map<string, number>();
  city.notifier.subscribe((userId, message) => {
    const m = message as { type: string; bookingId: string };
    if (m.type !== 'offer') return;
    if (!offerAt.has(m.bookingId)) offerAt.set(m.bookingId, performance.now());
    city.region.tell({ kind: 'driver', id: userId }, { type: 'offer.decline', bookingId: m.bookingId }).catch(() => undefined);
  });
  let seq = 0;
  for (const rate of options.quick ? [10, 100] : [10, 100, 1000]) {
    const createdAt = new Map<string, number>();
    const bookings = Math.min(options.quick ? 100 : 300, rate * 3);
    const startedAt = performance.now();
    for (let i = 0; i < bookings; i++) {
      const pickup = { lat: CENTER.lat + (rand() - 0.5) * 0.1, lng: CENTER.lng + (rand() - 0.5) * 0.1 };
      const id = `bk${seq++}`;
      createdAt.set(id, performance.now());
      void city.region.tell({ kind: 'booking', id }, createBooking({ riderId: `r${i}`, pickup, dropoff: { lat: pickup.lat + 0.02, lng: pickup.lng }, cellRes: CELL_RES }));
      // Paced against the clock, so the rate holds even when a tick runs late.
      const due = startedAt + ((i + 1) * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((res) => setTimeout(res, wait));
    }
    const until = Date.now() + 20_000;
    while ([...createdAt.keys()].some((id) => !offerAt.has(id)) && Date.now() < until) await new Promise((res) => setTimeout(res, 50));
    const latencies = [...createdAt].filter(([id]) => offerAt.has(id)).map(([id, at]) => offerAt.get(id)! - at);
    rows.push(...timeSeries(latencies, `booking → first offer at ${rate}/s`, `${latencies.length}/${bookings} offered; ${fleet.length} driver actors who decline at once`));
  }

  // Fix to visible: a fix told to a driver until the cell's nearest query shows the new position.
  const visible: number[] = [];
  for (let i = 0; i < (options.quick ? 50 : 200); i++) {
    const id = fleet[i % fleet.length]!;
    const at = { lat: CENTER.lat + (rand() - 0.5) * 0.2, lng: CENTER.lng + (rand() - 0.5) * 0.2 };
    const t0 = performance.now();
    await city.region.tell({ kind: 'driver', id }, { type: 'location', fix: { ...at, at: Date.now() + 1_000_000 + i } });
    const cell = { kind: 'cell', id: latLngToCell(at.lat, at.lng, CELL_RES) };
    const giveUp = t0 + 5_000;
    while (performance.now() < giveUp) {
      const seen = await city.region.ask<DriverCopy[]>(cell, { type: 'drivers' });
      if (seen.some((c) => c.driverId === id && c.lat === at.lat && c.lng === at.lng)) { visible.push(performance.now() - t0); break; }
    }
  }
  rows.push(...timeSeries(visible, 'fix → visible in the cell (embedded)', 'tell to the driver actor until the cell answers with the new position'));
  await city.stop();
  return rows;
}

/** Heap per live driver actor, per cell actor, and per driver copy held in a cell. */
export async function memoryBench(options: { quick?: boolean }): Promise<Row[]> {
  const { setFlagsFromString } = await import('node:v8');
  const { runInNewContext } = await import('node:vm');
  setFlagsFromString('--expose_gc');
  const gc = runInNewContext('gc') as () => void;
  const heap = () => { gc(); gc(); return process.memoryUsage().heapUsed; };
  const r = await rig();
  const n = options.quick ? 2_000 : 10_000;
  const before = heap();
  for (let i = 0; i < n; i += 1_000) {
    await Promise.all(Array.from({ length: 1_000 }, (_, k) => r.region.request({ kind: 'driver', id: `mem-d${i + k}` }, { type: 'online', vehicleType: 'economy' })));
  }
  const afterDrivers = heap();
  const cells = Array.from({ length: n / 10 }, (_, i) => `mem-cell-${i}`);
  await Promise.all(cells.map((id) => r.region.request({ kind: 'cell', id }, { type: 'driver.remove', driverId: 'none', at: 0 })));
  const afterCells = heap();
  const copies = 20_000;
  const now = Date.now();
  for (let i = 0; i < copies; i += 2_000) {
    await Promise.all(Array.from({ length: 2_000 }, (_, k) => r.region.request({ kind: 'cell', id: cells[(i + k) % cells.length]! }, {
      type: 'driver.upsert', driver: { driverId: `copy${i + k}`, lat: 40.7, lng: -74, status: 'available', vehicleType: 'economy', rating: 5, acceptanceRate: 1, lastTripEndedAt: 0, maintenance: [], seenAt: now + 3_600_000 },
    })));
  }
  const afterCopies = heap();
  await r.stop();
  const kb = (bytes: number) => Math.round(bytes / 102.4) / 10;
  return [
    { bench: 'memory', case: 'heap per online driver actor', value: kb((afterDrivers - before) / n), unit: 'KiB', note: `${n} driver actors (nact actor, state, registry entry)` },
    { bench: 'memory', case: 'heap per cell actor (empty)', value: kb((afterCells - afterDrivers) / cells.length), unit: 'KiB', note: `${cells.length} cell actors` },
    { bench: 'memory', case: 'heap per driver copy in a cell', value: kb((afterCopies - afterCells) / copies), unit: 'KiB', note: `${copies} copies across ${cells.length} cells` },
  ];
}

/** GPS fixes through driver actors with Kafka as the command log (one node, in this process). */
export async function kafkaIngestBench(brokers: string, options: { quick?: boolean }): Promise<Row[]> {
  const { createKafka } = await import('../adapters/kafka/client.ts');
  const { KafkaCommandLog } = await import('../adapters/kafka/command-log.ts');
  const { MemoryJournal } = await import('../adapters/memory/journal.ts');
  const { MemoryReminderStore } = await import('../adapters/memory/reminders.ts');
  const { InProcessNotifier } = await import('../adapters/memory/notifier.ts');
  const { ShardHost } = await import('../runtime/shard-host.ts');
  const { ShardRegion } = await import('../runtime/region.ts');
  const topic = `bench${Date.now().toString(36)}`;
  const host = new ShardHost({
    journal: new MemoryJournal(), behaviors: [makeDriverBehavior({ cellRes: CELL_RES, offerTimeoutMs: 15_000 }), makeCellBehavior(DEFAULT_CELL)] as never,
    passivateAfterMs: 600_000, maxActiveEntities: 1_000_000, maxConcurrentRecoveries: 50, snapshotEvery: 0,
  });
  const region = new ShardRegion({
    nodeId: 'bench', placement: { shards: 32, placementRes: 4 }, host, reminders: new MemoryReminderStore(), notifier: new InProcessNotifier(), askTimeoutMs: 120_000,
    log: new KafkaCommandLog({ kafka: createKafka({ brokers: brokers.split(','), clientId: topic }), topic: `${topic}.commands`, groupId: `${topic}.nodes`, shards: 32, nodeId: 'bench' }),
  });
  await region.start();
  const fleet = Array.from({ length: 500 }, (_, i) => `kd${i}`);
  await Promise.all(fleet.map((id) => region.request({ kind: 'driver', id }, { type: 'online', vehicleType: 'economy' })));
  const fixes = options.quick ? 3_000 : 20_000;
  const latencies: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 500 }, async () => {
    while (next < fixes) {
      const i = next++;
      const s = performance.now();
      await region.request({ kind: 'driver', id: fleet[i % fleet.length]! }, { type: 'location', fix: { lat: 40.7 + (i % 100) * 0.001, lng: -74, at: Date.now() + i } });
      latencies.push(performance.now() - s);
    }
  }));
  const seconds = (performance.now() - t0) / 1000;
  await region.stop();
  return [
    { bench: 'dispatch', case: 'GPS fixes/s through driver actors, Kafka command log', value: Math.round(fixes / seconds), unit: 'fix/s', note: `${fixes} fixes, 500 in flight, one node` },
    ...timeSeries(latencies, 'fix handled by its driver actor, through Kafka', '500 in flight'),
  ];
}

// Dispatch benchmarks, each side by side on the same data in one run:
// - nearest (k=10, 3 km) over 100k online drivers in one metro, and over 1M: cell actors
//   vs Redis GEOSEARCH ... ASC COUNT 10 vs a brute-force scan, with agreement;
// - GPS fixes per second through driver and cell actors vs Redis GEOADD pipelined;
// - booking-to-offer latency; fix to visible;
// - heap per online driver (driver actor, its state and its copy in a cell).
// The runtime is the real one in this process (in-process log, in-memory journal:
// fixes and cell state are never journaled, so storage is not what is measured).

import { latLngToCell } from 'h3-js';
import { Redis } from 'ioredis';
import type { Candidate, DriverCopy } from '../actors/cell.ts';
import { distanceKm, type Point } from '../actors/geo.ts';
import { searchNearest } from '../actors/nearest.ts';
import type { ShardRegion } from '../runtime/region.ts';
import { createBooking } from '../test/fixtures/booking-request.ts';
import { GOALS } from './goals.ts';
import { CELL_RES, benchRig, discardingJournal } from './rig.ts';
import { percentile, type Goal, type Row } from './stats.ts';

const CENTER = { lat: 40.73, lng: -73.99 };

/**
 * Every call this bench makes into the actors, in one place. When a fast path lands
 * (a soft path for fixes, a batch of copies into a cell, a faster nearest query),
 * switch it here: the measurements below only go through these.
 */
export const calls = {
  /** A driver's copy into its cell actor, as the driver actor sends it. */
  upsertCopy: (region: ShardRegion, d: DriverCopy) =>
    region.tellSoft({ kind: 'cell', id: latLngToCell(d.lat, d.lng, CELL_RES) }, { type: 'driver.upsert', driver: d }),
  /** Answers once every message told to these cells before it is handled (a request queues behind them). */
  settleCells: (region: ShardRegion, cellIds: readonly string[]) =>
    Promise.all(cellIds.map((id) => region.request({ kind: 'cell', id }, { type: 'driver.remove', driverId: 'none', at: 0 }, { timeoutMs: 600_000 }))),
  /** Nearest k within radiusKm, ring by ring over the cell actors (what the nearest service does). */
  nearest: (region: ShardRegion, point: Point, k: number, radiusKm: number) =>
    searchNearest({ point, k, radiusKm, vehicleType: 'economy' }, CELL_RES,
      (cell) => region.askSoon<Candidate[]>({ kind: 'cell', id: cell }, { type: 'nearest', point, k, radiusKm, vehicleType: 'economy' })),
  online: (region: ShardRegion, driverId: string) => region.request({ kind: 'driver', id: driverId }, { type: 'online', vehicleType: 'economy' }),
  /**
   * One GPS fix by the soft path, as the WebSocket gateway sends it: on the node that serves
   * the driver's shard it resolves once the driver actor has handled it (and told its cell).
   */
  fix: (region: ShardRegion, driverId: string, fix: { lat: number; lng: number; at: number }) =>
    region.tellSoft({ kind: 'driver', id: driverId }, { type: 'location', fix }),
  /** The same fix, for fix → visible (timed until the cell shows it). */
  fixTold: (region: ShardRegion, driverId: string, fix: { lat: number; lng: number; at: number }) =>
    region.tellSoft({ kind: 'driver', id: driverId }, { type: 'location', fix }),
  /** The copies a cell holds now. */
  cellDrivers: (region: ShardRegion, cellId: string) => region.ask<DriverCopy[]>({ kind: 'cell', id: cellId }, { type: 'drivers' }),
  declineOffer: (region: ShardRegion, driverId: string, bookingId: string) =>
    region.tell({ kind: 'driver', id: driverId }, { type: 'offer.decline', bookingId }),
  book: (region: ShardRegion, bookingId: string, request: ReturnType<typeof createBooking>) => region.tell({ kind: 'booking', id: bookingId }, request),
};

function seeded(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

const round = (x: number) => Math.round(x * 1000) / 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fmt = (n: number) => n >= 1_000_000 && n % 1_000_000 === 0 ? `${n / 1_000_000}M` : n >= 1_000 && n % 1_000 === 0 ? `${n / 1_000}k` : String(n);

function timeSeries(samples: number[], name: string, note: string, goals: { p50?: Goal; p99?: Goal } = {}): Row[] {
  return [
    { bench: 'dispatch', case: `${name} p50`, value: round(percentile(samples, 50)), unit: 'ms', note, goal: goals.p50 },
    { bench: 'dispatch', case: `${name} p99`, value: round(percentile(samples, 99)), unit: 'ms', note, goal: goals.p99 },
  ];
}
const us = (ms: number) => Math.round(ms * 10_000) / 10;
function microSeries(samples: number[], name: string, note: string, p50Goal?: Goal): Row[] {
  return [
    { bench: 'dispatch', case: `${name} p50`, value: us(percentile(samples, 50)), unit: 'µs', note, goal: p50Goal },
    { bench: 'dispatch', case: `${name} p99`, value: us(percentile(samples, 99)), unit: 'µs', note },
  ];
}

/** Drivers kept compactly (two float arrays; ids and copies are made when sent), so 1M fit beside their cells. */
interface Fleet { readonly n: number; readonly lat: Float64Array; readonly lng: Float64Array }
const NO_MAINTENANCE: DriverCopy['maintenance'] = [];

function metro(n: number, rand: () => number): Fleet {
  // About 30 x 30 km: one metro.
  const lat = new Float64Array(n);
  const lng = new Float64Array(n);
  for (let i = 0; i < n; i++) { lat[i] = CENTER.lat + (rand() - 0.5) * 0.27; lng[i] = CENTER.lng + (rand() - 0.5) * 0.36; }
  return { n, lat, lng };
}

const copyOf = (f: Fleet, i: number, seenAt: number): DriverCopy => ({
  driverId: `d${i}`, lat: f.lat[i]!, lng: f.lng[i]!, status: 'available', vehicleType: 'economy', rating: 5, acceptanceRate: 1,
  lastTripEndedAt: 0, maintenance: NO_MAINTENANCE, seenAt,
});

/** The brute-force peer: one linear scan of every driver per query, by the same distance as the cells. */
function bruteNearest(f: Fleet, point: Point, k: number, radiusKm: number): string[] {
  const best: { i: number; km: number }[] = [];
  const p = { lat: 0, lng: 0 };
  for (let i = 0; i < f.n; i++) {
    p.lat = f.lat[i]!; p.lng = f.lng[i]!;
    const km = distanceKm(point, p);
    if (km > radiusKm || (best.length === k && km >= best[k - 1]!.km)) continue;
    best.push({ i, km });
    best.sort((a, b) => a.km - b.km);
    if (best.length > k) best.pop();
  }
  return best.map((b) => `d${b.i}`);
}

/**
 * Nearest k=10 within 3 km over `n` drivers: cell actors, brute force and Redis on the
 * same drivers and the same query points, with agreement. Brute force answers only the
 * first `bruteQueries` points (a scan of 1M drivers per query is slow); agreement is over those.
 */
async function nearestBench(options: {
  n: number; queries: number; bruteQueries: number; redisUrl?: string; seed: number; quickNote?: string;
  goals: { p50: Goal; agree: Goal; ratio?: Goal; load?: Goal };
}): Promise<Row[]> {
  const { n, queries } = options;
  const rows: Row[] = [];
  const rand = seeded(options.seed);
  const fleet = metro(n, rand);
  const seenAt = Date.now() + 3_600_000;
  const points = Array.from({ length: queries }, () => ({ lat: CENTER.lat + (rand() - 0.5) * 0.25, lng: CENTER.lng + (rand() - 0.5) * 0.33 }));
  const label = `nearest k=10 3 km over ${fmt(n)} drivers`;

  // Cell actors, filled with the drivers' copies as driver actors would send them.
  const r = await benchRig();
  const loadStart = performance.now();
  const cellIds = new Set<string>();
  for (let i = 0; i < n; i += 5_000) {
    const sent: Promise<unknown>[] = [];
    for (let j = i; j < Math.min(n, i + 5_000); j++) {
      const copy = copyOf(fleet, j, seenAt);
      cellIds.add(latLngToCell(copy.lat, copy.lng, CELL_RES));
      sent.push(calls.upsertCopy(r.region, copy));
    }
    await Promise.all(sent);
  }
  await calls.settleCells(r.region, [...cellIds]);
  const loadSeconds = (performance.now() - loadStart) / 1000;
  rows.push({
    bench: 'dispatch', case: `cell updates/s (driver copies into cell actors), ${fmt(n)} drivers`, value: Math.round(n / loadSeconds), unit: 'msg/s',
    note: `${n} upserts through the command log into ${cellIds.size} cells`, goal: options.goals.load,
  });

  const warmup = Math.min(50, queries);
  for (const point of points.slice(0, warmup)) await calls.nearest(r.region, point, 10, 3);
  const actorTimes: number[] = [];
  const actorAnswers: string[][] = [];
  for (const point of points) {
    const t0 = performance.now();
    const found = await calls.nearest(r.region, point, 10, 3);
    actorTimes.push(performance.now() - t0);
    actorAnswers.push(found.map((c) => c.driverId));
  }
  await r.stop();

  const bruteTimes: number[] = [];
  const bruteAnswers: string[][] = [];
  for (const point of points.slice(0, options.bruteQueries)) {
    const t0 = performance.now();
    bruteAnswers.push(bruteNearest(fleet, point, 10, 3));
    bruteTimes.push(performance.now() - t0);
  }

  const qps = (times: number[]) => Math.round(times.length / (times.reduce((a, b) => a + b, 0) / 1000));
  rows.push(...microSeries(actorTimes, `${label}, cell actors`, `${queries} queries after ${warmup} warm-up; rings of H3 res ${CELL_RES} cells${options.quickNote ?? ''}`, options.goals.p50));
  rows.push({ bench: 'dispatch', case: `nearest queries/s over ${fmt(n)}, cell actors (one at a time)`, value: qps(actorTimes), unit: 'q/s' });
  rows.push(...microSeries(bruteTimes, `${label}, brute force`, `${bruteTimes.length} queries; one linear scan per query`));
  const agreeBrute = bruteAnswers.filter((b, i) => b.join() === actorAnswers[i]!.join()).length / bruteAnswers.length;
  rows.push({
    bench: 'dispatch', case: `nearest over ${fmt(n)}: cell actors agree with brute force`, value: round(agreeBrute), unit: 'fraction',
    note: `same ids in the same order, ${bruteAnswers.length} queries`, goal: options.goals.agree,
  });

  if (options.redisUrl) {
    const redis = new Redis(options.redisUrl);
    const key = `bench:drivers:${process.pid}:${n}`;
    await redis.del(key);
    const geoStart = performance.now();
    for (let i = 0; i < n; i += 5_000) {
      const pipe = redis.pipeline();
      for (let j = i; j < Math.min(n, i + 5_000); j++) pipe.geoadd(key, fleet.lng[j]!, fleet.lat[j]!, `d${j}`);
      await pipe.exec();
    }
    const geoSeconds = (performance.now() - geoStart) / 1000;
    rows.push({ bench: 'dispatch', case: `Redis GEOADD pipelined/s (same ${fmt(n)} drivers)`, value: Math.round(n / geoSeconds), unit: 'msg/s', note: 'pipelines of 5,000' });
    const redisTimes: number[] = [];
    const redisAnswers: string[][] = [];
    for (const point of points.slice(0, warmup)) await redis.call('GEOSEARCH', key, 'FROMLONLAT', point.lng, point.lat, 'BYRADIUS', 3, 'km', 'ASC', 'COUNT', 10);
    for (const point of points) {
      const t0 = performance.now();
      const ids = await redis.call('GEOSEARCH', key, 'FROMLONLAT', point.lng, point.lat, 'BYRADIUS', 3, 'km', 'ASC', 'COUNT', 10) as string[];
      redisTimes.push(performance.now() - t0);
      redisAnswers.push(ids);
    }
    await redis.del(key);
    redis.disconnect();
    rows.push(...microSeries(redisTimes, `${label}, Redis GEOSEARCH`, `${queries} queries; GEOSEARCH FROMLONLAT BYRADIUS 3 km ASC COUNT 10, one at a time`));
    rows.push({ bench: 'dispatch', case: `nearest queries/s over ${fmt(n)}, Redis GEOSEARCH (one at a time)`, value: qps(redisTimes), unit: 'q/s' });
    const setAgree = actorAnswers.filter((a, i) => new Set(a).size === new Set([...a, ...redisAnswers[i]!]).size && a.length === redisAnswers[i]!.length).length / queries;
    rows.push({ bench: 'dispatch', case: `nearest over ${fmt(n)}: cell actors agree with Redis (same set)`, value: round(setAgree), unit: 'fraction', note: 'Redis measures on its own earth radius and geohash cells; ties at the edge may differ' });
    rows.push({
      bench: 'dispatch', case: `nearest over ${fmt(n)}: p50 ratio Redis / cell actors`, value: round(percentile(redisTimes, 50) / percentile(actorTimes, 50)), unit: '×',
      note: '>1: actors faster', goal: options.goals.ratio,
    });
  } else {
    rows.push({ bench: 'dispatch', case: `nearest over ${fmt(n)}: p50 ratio Redis / cell actors`, value: Number.NaN, unit: '×', note: 'REDIS_URL unset: no Redis peer', goal: options.goals.ratio, skipped: true });
  }
  return rows;
}

export async function dispatchBench(options: { redisUrl?: string; quick?: boolean }): Promise<Row[]> {
  const rows: Row[] = [];
  const quick = options.quick ?? false;
  rows.push(...await nearestBench({
    n: quick ? 20_000 : 100_000, queries: quick ? 200 : 1_000, bruteQueries: quick ? 200 : 1_000, redisUrl: options.redisUrl, seed: 11,
    quickNote: quick ? '; --quick: 20k drivers, the goal is for 100k' : undefined,
    goals: { p50: GOALS.nearest100kP50, agree: GOALS.nearestAgree, ratio: GOALS.nearestVsRedis, load: GOALS.cellUpdates },
  }));
  if (quick) {
    const note = 'not measured with --quick (loading 1M copies takes minutes); npm run bench measures it';
    rows.push(
      { bench: 'dispatch', case: 'nearest k=10 3 km over 1M drivers, cell actors p50', value: Number.NaN, unit: 'µs', note, goal: GOALS.nearest1mP50, skipped: true },
      { bench: 'dispatch', case: 'nearest over 1M: cell actors agree with brute force', value: Number.NaN, unit: 'fraction', note, goal: GOALS.nearestAgree, skipped: true },
    );
  } else {
    rows.push(...await nearestBench({
      n: 1_000_000, queries: 1_000, bruteQueries: 100, redisUrl: options.redisUrl, seed: 12,
      goals: { p50: GOALS.nearest1mP50, agree: GOALS.nearestAgree },
    }));
  }
  rows.push(...await cityBench(quick));
  return rows;
}

/** Fixes and dispatch on a city of real driver actors (the copies above have no driver actors behind them). */
async function cityBench(quick: boolean): Promise<Row[]> {
  const rows: Row[] = [];
  const rand = seeded(13);
  const now = Date.now();
  const city = await benchRig();
  const fleet = Array.from({ length: quick ? 500 : 2_000 }, (_, i) => `fx${i}`);
  const somewhere = () => ({ lat: CENTER.lat + (rand() - 0.5) * 0.2, lng: CENTER.lng + (rand() - 0.5) * 0.2 });
  await Promise.all(fleet.map((id) => calls.online(city.region, id)));
  await Promise.all(fleet.map((id) => calls.fix(city.region, id, { ...somewhere(), at: now - 1 })));
  const fixes = quick ? 10_000 : 50_000;
  const fixStart = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: 500 }, async () => {
    while (next < fixes) {
      const i = next++;
      // Each driver's fixes newer than its last, and all within the clock skew a driver believes.
      await calls.fix(city.region, fleet[i % fleet.length]!, { ...somewhere(), at: now + 1 + Math.floor(i / fleet.length) });
    }
  }));
  rows.push({
    bench: 'dispatch', case: 'GPS fixes/s through driver and cell actors, embedded', value: Math.round(fixes / ((performance.now() - fixStart) / 1000)), unit: 'fix/s',
    note: `${fixes} fixes from ${fleet.length} driver actors, each also updating its cell actor; 500 in flight`, goal: GOALS.fixesEmbedded,
  });

  // Fix to visible: a fix told to a driver until the cell's drivers show the new position,
  // once the cell copies the flat-out run left queued are in.
  await sleep(2_000);
  const visible: number[] = [];
  for (let i = 0; i < (quick ? 50 : 200); i++) {
    const id = fleet[i % fleet.length]!;
    const at = somewhere();
    const t0 = performance.now();
    await calls.fixTold(city.region, id, { ...at, at: Date.now() });
    const cell = latLngToCell(at.lat, at.lng, CELL_RES);
    const giveUp = t0 + 5_000;
    while (performance.now() < giveUp) {
      const seen = await calls.cellDrivers(city.region, cell);
      if (seen.some((c) => c.driverId === id && c.lat === at.lat && c.lng === at.lng)) { visible.push(performance.now() - t0); break; }
      // A local ask answers without a macrotask: yield, or the cell copy never gets its turn.
      await new Promise((res) => setImmediate(res));
    }
  }
  rows.push(...timeSeries(visible, 'fix → visible in the cell, embedded', `${visible.length} fixes, one at a time on the idle city (before the booking runs, whose backlog would be timed too); tell to the driver actor until the cell answers with the new position`, { p99: GOALS.fixVisibleP99 }));

  // Booking to offer: drivers decline at once, so the pool stays free; only the first offer is timed.
  const offerAt = new Map<string, number>();
  city.notifier.subscribe((userId, message) => {
    const m = message as { type: string; bookingId: string };
    if (m.type !== 'offer') return;
    if (!offerAt.has(m.bookingId)) offerAt.set(m.bookingId, performance.now());
    calls.declineOffer(city.region, userId, m.bookingId).catch(() => undefined);
  });
  let seq = 0;
  for (const rate of quick ? [100, 1000] : [10, 100, 1000]) {
    const createdAt = new Map<string, number>();
    const bookings = quick ? Math.min(100, rate) : Math.min(rate === 1000 ? 1_000 : 300, rate * 3);
    const startedAt = performance.now();
    for (let i = 0; i < bookings; i++) {
      const pickup = { lat: CENTER.lat + (rand() - 0.5) * 0.1, lng: CENTER.lng + (rand() - 0.5) * 0.1 };
      const id = `bk${seq++}`;
      // Paced against the clock, so the rate holds even when a tick runs late; latency counts from when it was due.
      const due = startedAt + (i * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      createdAt.set(id, due);
      void calls.book(city.region, id, createBooking({ riderId: `r${i}`, pickup, dropoff: { lat: pickup.lat + 0.02, lng: pickup.lng }, cellRes: CELL_RES }));
    }
    const until = Date.now() + 20_000;
    while ([...createdAt.keys()].some((id) => !offerAt.has(id)) && Date.now() < until) await sleep(50);
    const latencies = [...createdAt].filter(([id]) => offerAt.has(id)).map(([id, at]) => offerAt.get(id)! - at);
    rows.push(...timeSeries(latencies, `booking → first offer at ${rate.toLocaleString('en-US')}/s, embedded`, `${latencies.length}/${bookings} offered; ${fleet.length} driver actors who decline at once; timed from when each was due`,
      rate === 1000 ? { p99: GOALS.offerAt1000P99 } : {}));
  }

  await city.stop();
  return rows;
}

/**
 * Heap per online driver: its driver actor online (actor, state, registry entry) plus its
 * copy in a cell after one fix (cell actors included, shared among their drivers). The
 * journal keeps nothing here: a node's journal rows are in PostgreSQL, not its heap.
 */
export async function memoryBench(options: { quick?: boolean }): Promise<Row[]> {
  const { setFlagsFromString } = await import('node:v8');
  const { runInNewContext } = await import('node:vm');
  setFlagsFromString('--expose_gc');
  const gc = runInNewContext('gc') as () => void;
  const heap = async () => { await sleep(50); gc(); gc(); return process.memoryUsage().heapUsed; };
  const n = options.quick ? 10_000 : 100_000;
  const r = await benchRig({ maxActiveEntities: n * 2 + 10_000, journal: discardingJournal });
  const rand = seeded(14);
  const now = Date.now();
  // Settles the runtime's own lazily made structures before the baseline.
  await calls.online(r.region, 'mem-warm');
  await calls.fix(r.region, 'mem-warm', { lat: CENTER.lat, lng: CENTER.lng, at: now });
  const before = await heap();
  for (let i = 0; i < n; i += 2_000) {
    await Promise.all(Array.from({ length: Math.min(2_000, n - i) }, (_, k) => calls.online(r.region, `mem-d${i + k}`)));
  }
  const afterOnline = await heap();
  const cells = new Set<string>();
  for (let i = 0; i < n; i += 2_000) {
    await Promise.all(Array.from({ length: Math.min(2_000, n - i) }, (_, k) => {
      const at = { lat: CENTER.lat + (rand() - 0.5) * 0.27, lng: CENTER.lng + (rand() - 0.5) * 0.36 };
      cells.add(latLngToCell(at.lat, at.lng, CELL_RES));
      return calls.fix(r.region, `mem-d${i + k}`, { ...at, at: now + 1 });
    }));
  }
  await calls.settleCells(r.region, [...cells]);
  const afterFix = await heap();
  const active = r.host.stats().activeByKind;
  await r.stop();
  const kb = (bytes: number) => Math.round(bytes / 102.4) / 10;
  const note = `${n} driver actors online with one fix each, in ${cells.size} cells; ${JSON.stringify(active)} live`;
  return [
    { bench: 'memory', case: `heap per online driver (actor + state + its copy in a cell), ${fmt(n)} drivers`, value: kb((afterFix - before) / n), unit: 'KiB', note, goal: GOALS.heapPerOnlineDriver },
    { bench: 'memory', case: '… of which the driver actor online', value: kb((afterOnline - before) / n), unit: 'KiB', note: 'nact actor, state, registry entry' },
    { bench: 'memory', case: '… of which its fix and its copy in a cell', value: kb((afterFix - afterOnline) / n), unit: 'KiB', note: 'the newest fix in the driver, the copy in the cell, the cell actors' },
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
  const { makeDriverBehavior } = await import('../actors/driver.ts');
  const { DEFAULT_CELL, makeCellBehavior } = await import('../actors/cell.ts');
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
  await Promise.all(fleet.map((id) => calls.online(region, id)));
  // Each driver's fixes newer than its last, and all within the clock skew a driver believes.
  const base = Date.now();
  const fixAt = (i: number) => ({ lat: 40.7 + (i % 100) * 0.001, lng: -74, at: base + 1 + Math.floor(i / fleet.length) });

  // Flat out: 500 in flight.
  const fixes = options.quick ? 3_000 : 20_000;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 500 }, async () => {
    while (next < fixes) {
      const i = next++;
      await calls.fix(region, fleet[i % fleet.length]!, fixAt(i));
    }
  }));
  const seconds = (performance.now() - t0) / 1000;

  // Paced at 10k/s: each fix sent when due (in batches per timer tick), timed from when it was due to handled.
  const rate = 10_000;
  const paced = options.quick ? 10_000 : 50_000;
  const latencies: number[] = [];
  const pending: Promise<void>[] = [];
  const start = performance.now();
  for (let i = 0; i < paced;) {
    const dueNow = Math.min(paced, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
    for (; i < dueNow; i++) {
      const due = start + (i * 1000) / rate;
      pending.push(calls.fix(region, fleet[i % fleet.length]!, fixAt(fixes + i)).then(() => { latencies.push(performance.now() - due); }));
    }
    await sleep(1);
  }
  await Promise.all(pending);
  const achieved = paced / ((performance.now() - start) / 1000);
  await region.stop();
  return [
    {
      bench: 'dispatch', case: 'GPS fixes/s through driver and cell actors, Kafka-mode node', value: Math.round(fixes / seconds), unit: 'fix/s',
      note: `${fixes} fixes, 500 in flight; one node owns every shard, so the soft path applies them without a log record (a fix for another node's shard goes as one Kafka record per shard per tick, not timed here)`,
      goal: GOALS.fixesKafka,
    },
    ...timeSeries(latencies, 'fix handled by its driver actor, Kafka-mode node, paced at 10k/s', `${paced} fixes offered at ${rate}/s (${Math.round(achieved)}/s until the last was handled); from when each was due; soft path, local shards`, { p99: GOALS.fixKafkaPacedP99 }),
  ];
}

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
import { DEFAULT_PRICING, quote } from '../actors/pricing.ts';
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

  rows.push(...timeSeries(actorTimes, `nearest k=10 3 km over ${n} drivers, cell actors`, `${queries} queries; rings of H3 res ${CELL_RES} cells`));
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
  const createdAt = new Map<string, number>();
  const bookings = options.quick ? 100 : 500;
  for (let i = 0; i < bookings; i++) {
    const pickup = { lat: CENTER.lat + (rand() - 0.5) * 0.1, lng: CENTER.lng + (rand() - 0.5) * 0.1 };
    const dropoff = { lat: pickup.lat + 0.02, lng: pickup.lng };
    const q = quote({ pickup, dropoff, vehicleType: 'economy', surge: 1, now: Date.now() }, DEFAULT_PRICING);
    const id = `bk${i}`;
    createdAt.set(id, performance.now());
    await city.region.tell({ kind: 'booking', id }, {
      type: 'create', riderId: `r${i}`, vehicleType: 'economy', pickup, dropoff, pickupCell: latLngToCell(pickup.lat, pickup.lng, CELL_RES),
      price: q.price, surge: 1, distanceKm: q.distanceKm, durationMin: q.durationMin,
    });
    await new Promise((res) => setTimeout(res, 2));
  }
  const until = Date.now() + 20_000;
  while (offerAt.size < bookings && Date.now() < until) await new Promise((res) => setTimeout(res, 50));
  const latencies = [...offerAt].map(([id, at]) => at - createdAt.get(id)!);
  rows.push(...timeSeries(latencies, 'booking → first offer', `${latencies.length}/${bookings} bookings, one every 2 ms, ${fleet.length} driver actors who decline at once`));
  await city.stop();
  return rows;
}

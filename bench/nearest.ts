// Nearest k=10 within 3 km, over the bench's city (bench/city.ts): 100k drivers over one
// metro and 1M over a region ten times its area. Ours is the production path a rider's
// nearby search takes (http/routes/discovery.ts findNearby: the node's occupied-cell
// filter, the cell cap, the cells' availability, freshness, vehicle type and maintenance
// rules), over cell actors filled with the drivers' copies as driver actors send them.
// The peers (bench/nearest-peers.ts) answer the same queries, interleaved query by query
// with ours (the order rotating), so a busy moment of the machine falls on all of them.
// Every answer is checked against a brute-force scan of the city, fewer-than-k included.

import { latLngToCell } from 'h3-js';
import type { DriverCopy } from '../actors/cell.ts';
import { DEFAULT_CELL } from '../actors/cell.ts';
import { DEFAULT_SEARCH } from '../actors/nearest.ts';
import { findNearby } from '../http/routes/discovery.ts';
import { bruteNearest, city, clockAt, copyOf, queries, type CityShape, type Query } from './city.ts';
import { GOALS } from './goals.ts';
import { postgisPeer, redisPeer, staticIndexPeer, WIDENING_KM, type Peer, type PostgisPeer, type RedisPeer } from './nearest-peers.ts';
import { CELL_RES, benchRig } from './rig.ts';
import { notRun, percentile, type Goal, type Row } from './stats.ts';

const K = 10;
const RADIUS_KM = 3;
const us = (ms: number) => Math.round(ms * 10_000) / 10;
const round = (x: number) => Math.round(x * 1000) / 1000;
const fmt = (n: number) => (n >= 1_000_000 ? `${n / 1_000_000}M` : `${n / 1_000}k`);

export interface NearestOptions {
  readonly shape: CityShape;
  readonly n: number;
  readonly queries: number;
  readonly seed: number;
  readonly redisUrl?: string;
  readonly databaseUrl?: string;
  /** Services missing from this run (--allow-missing): their peers' rows say "not run". */
  readonly missing: ReadonlySet<string>;
  readonly goals: { p50?: Goal; p99?: Goal; copies?: Goal; vsRedis?: Goal; vsStatic?: Goal; agree: Goal };
  readonly note?: string;
}

/** Driver copies into cell actors by the soft path, as driver actors send them, counted once each cell applied it. */
async function loadCells(rig: Awaited<ReturnType<typeof benchRig>>, copies: DriverCopy[]): Promise<{ seconds: number; cells: number }> {
  const cells = new Set<string>();
  const t0 = performance.now();
  for (let i = 0; i < copies.length; i += 5_000) {
    const sent: Promise<string>[] = [];
    for (const copy of copies.slice(i, i + 5_000)) {
      const cell = latLngToCell(copy.lat, copy.lng, CELL_RES);
      cells.add(cell);
      sent.push(rig.region.tellSoft({ kind: 'cell', id: cell }, { type: 'driver.upsert', driver: copy }));
    }
    const outcomes = await Promise.all(sent);
    const notApplied = outcomes.filter((o) => o !== 'applied').length;
    if (notApplied > 0) throw new Error(`${notApplied} driver copies were not applied by their cells (${[...new Set(outcomes)].join(', ')})`);
  }
  return { seconds: (performance.now() - t0) / 1000, cells: cells.size };
}

/** Rounds of the drivers' next copies timed for the steady rate. */
const STEADY_ROUNDS = 3;

const idleLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

interface Timed { readonly name: string; readonly times: number[]; readonly answers: string[][] }

export async function nearestBench(o: NearestOptions): Promise<Row[]> {
  const label = `nearest k=10 3 km, ${fmt(o.n)} drivers over ${o.shape.name}`;
  const fleet = city(o.shape, o.n, o.seed);
  const clock = clockAt(Date.now());
  const qs = queries(o.shape, fleet, o.queries, o.seed + 1);
  // Another draw of as many queries from the same city, untimed: a node that has served a city
  // for a while has its searches' ring geometry cached and its code compiled, Redis and
  // PostgreSQL their pages in memory; every runner gets the same warm-up, none the timed queries.
  const warmUp = queries(o.shape, fleet, o.queries, o.seed + 2);
  const copies: DriverCopy[] = [];
  for (let i = 0; i < fleet.n; i++) { const c = copyOf(fleet, i, clock); if (c) copies.push(c); }

  const rig = await benchRig({ maxActiveEntities: 200_000 });
  const rows: Row[] = [];
  const peers: Peer[] = [];
  try {
    // The first load activates every cell actor (and warms the code); the drivers' next copies
    // are what a running node applies all day, and carry the goal. Both are reported.
    const load = await loadCells(rig, copies);
    // Three rounds of every driver's next copy, timed together: one round is half a second
    // here, and a collection or another process's burst in it moved the figure by a third.
    let steadySeconds = 0;
    let steadyCopies = 0;
    const rounds: number[] = [];
    for (let round = 1; round <= STEADY_ROUNDS; round++) {
      const next = copies.map((c) => ({ ...c, seenAt: c.seenAt + round }));
      const steady = await loadCells(rig, next);
      steadySeconds += steady.seconds;
      steadyCopies += next.length;
      rounds.push(Math.round(next.length / steady.seconds / 1000));
    }
    const how = `by the soft path into ${load.cells} cells, each counted once its cell applied it; one at a time per sender, 5,000 in flight`;
    rows.push({
      bench: 'nearest', case: `driver copies applied in cell actors/s, ${fmt(o.n)} drivers`, value: Math.round(steadyCopies / steadySeconds), unit: 'copy/s',
      note: `${steadyCopies} copies (${STEADY_ROUNDS} rounds of each online driver's next copy, cells active; rounds ${rounds.map((r) => `${r}k`).join(', ')}/s) ${how}`,
      goal: o.goals.copies,
    }, {
      bench: 'nearest', case: `driver copies applied in cell actors/s, ${fmt(o.n)} drivers, first load into idle cells`,
      value: Math.round(copies.length / load.seconds), unit: 'copy/s',
      note: `${copies.length} copies (the online drivers) ${how}; every cell actor activated by its first copy`,
    });

    const staticIndex = staticIndexPeer(fleet);
    peers.push(staticIndex);
    let redis: RedisPeer | undefined;
    if (o.redisUrl && !o.missing.has('Redis')) { redis = await redisPeer(o.redisUrl, fleet); peers.push(redis); }
    let postgis: PostgisPeer | undefined;
    if (o.databaseUrl && !o.missing.has('PostGIS')) { postgis = await postgisPeer(o.databaseUrl, fleet, clock, DEFAULT_CELL.driverTtlMs); peers.push(postgis); }

    const ours = (q: Query) => findNearby(rig.region, CELL_RES, DEFAULT_SEARCH, rig.occupied, { point: q.point, k: K, radiusKm: RADIUS_KM, vehicleType: q.vehicleType })
      .then((found) => found.map((f) => f.driver.driverId));
    const runners: { name: string; run: (q: Query) => Promise<string[]> | string[] }[] = [
      { name: 'ours', run: ours }, ...peers.map((p) => ({ name: p.name, run: (q: Query) => p.query(q, K, RADIUS_KM) })),
    ];
    // Warm-up, then the timed queries, interleaved: query i asks each in a rotated order.
    for (const q of warmUp) for (const r of runners) await r.run(q);
    const serverBefore = await redis?.serverStats();
    const searchesBefore = redis?.searches ?? 0;
    const timed: Timed[] = runners.map((r) => ({ name: r.name, times: [], answers: [] }));
    for (let i = 0; i < qs.length; i++) {
      for (let j = 0; j < runners.length; j++) {
        const at = (i + j) % runners.length;
        // Each starts on a quiet event loop: what a peer's client still had to do for its last
        // answer (a socket's last bytes, a parser's callbacks) is not timed as the next one's.
        await idleLoop();
        const t0 = performance.now();
        const answer = await runners[at]!.run(qs[i]!);
        timed[at]!.times.push(performance.now() - t0);
        timed[at]!.answers[i] = answer;
      }
    }
    const serverAfter = await redis?.serverStats();

    const bruteTimes: number[] = [];
    const truth = qs.map((q) => {
      const t0 = performance.now();
      const found = bruteNearest(fleet, q, K, RADIUS_KM).map((d) => d.id);
      bruteTimes.push(performance.now() - t0);
      return found;
    });
    const fewer = truth.filter((t) => t.length < K).length;
    const kinds = [...Map.groupBy(qs, (q) => q.kind)].map(([kind, list]) => `${list.length} ${kind}`).join(', ');
    const queryNote = `${qs.length} queries after ${warmUp.length} untimed warm-up queries (another draw from the city) for every runner (${kinds}; ${qs.filter((q) => q.vehicleType !== 'economy').length} for comfort); ${fewer} have fewer than 10 eligible drivers within 3 km`;
    const agreeing = (answers: string[][]) => answers.filter((a, i) => a.join() === truth[i]!.join()).length;
    const sameSet = (answers: string[][]) => answers.filter((a, i) => a.length === truth[i]!.length && new Set([...a, ...truth[i]!]).size === a.length).length;
    const p = (t: Timed, q: number) => us(percentile(t.times, q));

    const [oursTimed, ...peerTimed] = timed;
    rows.push(
      { bench: 'nearest', case: `${label}: ours p50`, value: p(oursTimed!, 50), unit: 'µs', goal: o.goals.p50,
        note: `${queryNote}; the production path (findNearby: occupied cells, at most ${DEFAULT_SEARCH.maxCells} cells, cells' rules), cell actors of H3 res ${CELL_RES}${o.note ?? ''}` },
      { bench: 'nearest', case: `${label}: ours p99`, value: p(oursTimed!, 99), unit: 'µs', goal: o.goals.p99 },
    );
    const oursAgree = agreeing(oursTimed!.answers);
    const fewerAgree = oursTimed!.answers.filter((a, i) => truth[i]!.length < K && a.join() === truth[i]!.join()).length;
    rows.push({
      bench: 'nearest', case: `${label}: ours agree with brute force`, value: round(oursAgree / qs.length), unit: 'fraction', goal: o.goals.agree,
      note: `same ids in the same order for ${oursAgree} of ${qs.length} queries, ${fewerAgree} of the ${fewer} with fewer than 10; brute force: one scan of the city per query (p50 ${us(percentile(bruteTimes, 50))} µs)`,
    });
    for (const t of peerTimed) {
      const peer = peers.find((x) => x.name === t.name)!;
      const extra = peer === redis ? `; ${((redis.searches - searchesBefore) / qs.length).toFixed(2)} GEOSEARCH per query (radii ${WIDENING_KM.join(', ')} km until 10 are found); only available drivers in a set per vehicle type, GEOADD ${redis.loadRate.toLocaleString('en-US')}/s pipelined`
        : peer === postgis ? `; every driver in one table, rules in the WHERE clause, prepared statement over one connection; loaded and indexed at ${postgis.loadRate.toLocaleString('en-US')} rows/s`
          : '; one index per vehicle type over its available drivers, built once';
      const agreeNote = `same ids in the same order as brute force: ${agreeing(t.answers)} of ${qs.length}; same set: ${sameSet(t.answers)}`;
      rows.push(
        { bench: 'nearest', case: `${label}: ${peer.name} p50`, value: p(t, 50), unit: 'µs', note: `${peer.version}; ${peer === staticIndex ? 'an in-process call' : 'client round trip'}, interleaved with ours${extra}` },
        { bench: 'nearest', case: `${label}: ${peer.name} p99`, value: p(t, 99), unit: 'µs', note: agreeNote },
      );
    }
    if (redis && serverBefore && serverAfter) {
      const calls = serverAfter.calls - serverBefore.calls;
      const usec = serverAfter.usec - serverBefore.usec;
      rows.push({
        bench: 'nearest', case: `${label}: Redis server time per query (mean)`, value: Math.round((usec / qs.length) * 10) / 10, unit: 'µs',
        note: `INFO commandstats over the timed queries: ${calls} GEOSEARCH calls, ${Math.round((usec / Math.max(1, calls)) * 10) / 10} µs each on the server; the rest of the client p50 is the round trip`,
      });
    }
    const redisTimed = peerTimed.find((t) => t.name === redis?.name);
    const staticTimed = peerTimed.find((t) => t.name === staticIndex.name)!;
    rows.push(redisTimed
      ? { bench: 'nearest', case: `${label}: Redis (widening radius) p50 / ours p50`, value: round(percentile(redisTimed.times, 50) / percentile(oursTimed!.times, 50)), unit: '×', goal: o.goals.vsRedis, note: '> 1: ours faster; client round trip against an in-process call (ours)' }
      : notRun(o.missing.has('Redis') ? 'Redis' : 'REDIS_URL', { bench: 'nearest', case: `${label}: Redis (widening radius) p50 / ours p50`, unit: '×', goal: o.goals.vsRedis }));
    if (!postgis) rows.push(notRun(o.missing.has('PostGIS') ? 'PostGIS' : 'DATABASE_URL', { bench: 'nearest', case: `${label}: PostGIS KNN (GiST) p50`, unit: 'µs' }));
    rows.push({
      bench: 'nearest', case: `${label}: ours p50 / in-process static index p50`, value: round(percentile(oursTimed!.times, 50) / percentile(staticTimed.times, 50)), unit: '×',
      goal: o.goals.vsStatic, note: '> 1: the static index is faster; what the actor layer (cells, asks, rules) costs over the best in-process structure',
    });
    return rows;
  } finally {
    for (const peer of peers) await peer.close().catch(() => undefined);
    await rig.stop();
  }
}

export async function nearestBenches(o: { redisUrl?: string; databaseUrl?: string; quick: boolean; missing: ReadonlySet<string> }): Promise<Row[]> {
  const { METRO, REGION } = await import('./city.ts');
  const rows = await nearestBench({
    shape: METRO, n: o.quick ? 20_000 : 100_000, queries: o.quick ? 200 : 1_000, seed: 11, redisUrl: o.redisUrl, databaseUrl: o.databaseUrl, missing: o.missing,
    note: o.quick ? '; --quick: 20k drivers and 200 queries (the goal is for 100k)' : undefined,
    goals: o.quick ? { agree: GOALS.nearestAgree } : {
      p50: GOALS.nearest100kP50, p99: GOALS.nearest100kP99, copies: GOALS.cellCopies, vsRedis: GOALS.nearestVsRedis,
      vsStatic: GOALS.nearestVsStatic, agree: GOALS.nearestAgree,
    },
  });
  if (o.quick) {
    const note = 'not measured with --quick (a 1M city takes minutes to load); npm run bench measures it';
    const skip = (c: string, unit: string, goal?: Goal): Row => ({ bench: 'nearest', case: c, value: Number.NaN, unit, note, goal, skipped: true });
    return [
      ...rows,
      skip('nearest k=10 3 km, 100k drivers: ours p50', 'µs', GOALS.nearest100kP50), skip('nearest k=10 3 km, 100k drivers: ours p99', 'µs', GOALS.nearest100kP99),
      skip('nearest k=10 3 km, 100k drivers: Redis (widening radius) p50 / ours p50', '×', GOALS.nearestVsRedis),
      skip('nearest k=10 3 km, 100k drivers: ours p50 / in-process static index p50', '×', GOALS.nearestVsStatic),
      skip('driver copies applied in cell actors/s, 100k drivers', 'copy/s', GOALS.cellCopies),
      skip('nearest k=10 3 km, 1M drivers: ours p50', 'µs', GOALS.nearest1mP50), skip('nearest k=10 3 km, 1M drivers: ours p99', 'µs', GOALS.nearest1mP99),
    ];
  }
  return [...rows, ...await nearestBench({
    shape: REGION, n: 1_000_000, queries: 1_000, seed: 12, redisUrl: o.redisUrl, databaseUrl: o.databaseUrl, missing: o.missing,
    goals: { p50: GOALS.nearest1mP50, p99: GOALS.nearest1mP99, agree: GOALS.nearestAgree },
  })];
}

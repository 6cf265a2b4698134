// The cluster path on real Kafka, PostgreSQL and Redis with 1, 2 and 3 dispatch node
// processes (main.ts, MODE=cluster, a database and topic prefix of their own): the
// dispatch command mix a city makes (quote, book, offer, accept or decline, arrive,
// start, complete), riders over HTTP and drivers on WebSocket sessions spread over the
// nodes. For each cluster size: commands per second with the riders in a closed loop,
// and CPU per command of the nodes with each node's idle CPU over the same time taken
// off (measured just before, same drivers connected), beside the Kafka broker's and the
// database's CPU per command (their processes on this machine, idle taken off too).
// With one node: each command's round trip with the mix paced at 1,000 commands/s, and
// booking → first offer frame at 100/s and 1,000/s in cluster mode.

import { randomUUID } from 'node:crypto';
import { cpus } from 'node:os';
import { TEST_CLUSTER_KEY as BENCH_CLUSTER_KEY, TEST_DATA_KEYS as BENCH_DATA_KEYS } from '../test/helpers/services.ts';
import { movedShards, placeShards } from '../runtime/placement.ts';
import { GOALS } from './goals.ts';
import { allowEconomy, connectDrivers, OPEN_LIMITS, rider, startBenchNode, tokenFor, type BenchDriver, type BenchNode, type Tally } from './node-client.ts';
import { downtown, offerRun } from './offers.ts';
import { cpuSeconds, kafkaBroker, postgresPids } from './proc.ts';
import { offsetKm } from './city.ts';
import { percentile, type Row } from './stats.ts';
import { scratchDatabase } from './scratch-database.ts';

export const SHARDS = 32;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (x: number) => Math.round(x * 1000) / 1000;

export interface Services { kafka: string; database: string; redis: string }


export const nodeEnv = (s: Services, db: string, prefix: string, nodeId: string): Record<string, string> => ({
  MODE: 'cluster', KAFKA_BROKERS: s.kafka, DATABASE_URL: db, REDIS_URL: s.redis, KAFKA_TOPIC_PREFIX: prefix, SHARDS: String(SHARDS),
  QUOTE_SECRET: 'bench-quote-key-shared-by-every-node', ...BENCH_DATA_KEYS, ...BENCH_CLUSTER_KEY, KAFKA_SESSION_TIMEOUT_MS: '6000', NODE_ID: nodeId,
  // Development tokens are refused in cluster mode: the bench signs its tokens itself (tokenFor).
  ...OPEN_LIMITS, AUTH_DEV_TOKENS: 'false',
});

/** Waits until every shard is placed on one of `count` nodes, as a node's admin view shows it. */
export async function settled(node: BenchNode, count: number): Promise<void> {
  const admin = await tokenFor('bench-admin', 'admin');
  const until = Date.now() + 120_000;
  for (;;) {
    const res = await fetch(`${node.url}/v1/admin/cluster`, { headers: { authorization: `Bearer ${admin}` } }).catch(() => undefined);
    const view = res?.ok ? await res.json() as { shards: { node: string | null }[] } : undefined;
    const nodes = new Set(view?.shards.map((s) => s.node));
    if (view && !nodes.has(null) && nodes.size === count) return;
    if (Date.now() > until) throw new Error(`the ${count} cluster nodes did not settle on the shards within 120 s`);
    await sleep(500);
  }
}

interface CpuReading { nodes: number[]; broker: number; database: Map<number, number>; at: number }

export function readCpu(nodes: readonly BenchNode[], brokerPid: number | undefined): CpuReading {
  return {
    nodes: nodes.map((n) => cpuSeconds(n.pid)), broker: brokerPid ? cpuSeconds(brokerPid) : Number.NaN,
    database: new Map(postgresPids().map((pid) => [pid, cpuSeconds(pid)])), at: performance.now(),
  };
}

/**
 * CPU seconds between two readings: each node's, the broker's, the database's (per process:
 * a backend that started meanwhile counts from 0, one that ended meanwhile is lost), and the
 * seconds between.
 */
export function cpuBetween(a: CpuReading, b: CpuReading) {
  let database = 0;
  for (const [pid, cpu] of b.database) database += cpu - (a.database.get(pid) ?? 0);
  return { nodes: b.nodes.map((c, i) => c - a.nodes[i]!), broker: b.broker - a.broker, database, seconds: (b.at - a.at) / 1000 };
}

/**
 * Riders in a closed loop for `seconds`: quote, book with the quote, wait until the ride is
 * completed by the driver who accepted it (or 30 s), again. Drivers accept 70% of offers.
 */
export async function closedLoop(nodes: readonly BenchNode[], drivers: readonly BenchDriver[], riders: number, seconds: number, tally: Tally): Promise<number> {
  const waiting = new Map<string, () => void>();
  for (const d of drivers) {
    d.policy = { accept: 0.7 }; d.tally = tally;
    d.onDone = (bookingId) => { waiting.get(bookingId)?.(); };
  }
  const end = performance.now() + seconds * 1000;
  const pickups = downtown(riders * 50, 51);
  await Promise.all(Array.from({ length: riders }, async (_, r) => {
    const token = await tokenFor(`bench-loop-rider-${r}`, 'rider');
    for (let i = 0; performance.now() < end; i++) {
      const url = nodes[(r + i) % nodes.length]!.url;
      const pickup = pickups[(r * 50 + i) % pickups.length]!;
      const quote = await rider.quote(url, token, pickup, offsetKm(pickup, 1.5, 1.5));
      if (quote.status !== 201 || !quote.quoteId) { tally.set(`quote refused: ${quote.error}`, (tally.get(`quote refused: ${quote.error}`) ?? 0) + 1); await sleep(100); continue; }
      tally.set('quote', (tally.get('quote') ?? 0) + 1);
      const booked = await rider.book(url, token, { quoteId: quote.quoteId });
      if (booked.status !== 201 || !booked.id) { tally.set(`book refused: ${booked.error}`, (tally.get(`book refused: ${booked.error}`) ?? 0) + 1); await sleep(100); continue; }
      tally.set('book', (tally.get('book') ?? 0) + 1);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 30_000);
        waiting.set(booked.id!, () => { clearTimeout(timer); waiting.delete(booked.id!); resolve(); });
      });
    }
  }));
  for (const d of drivers) d.onDone = undefined;
  return seconds;
}

const COMMANDS = ['quote', 'book', 'offer', 'accept', 'decline', 'trip.arrived', 'trip.start', 'trip.complete'] as const;
export const commandsIn = (t: Tally) => COMMANDS.reduce((s, c) => s + (t.get(c) ?? 0), 0);
const mixOf = (t: Tally) => [...t].map(([c, n]) => `${n} ${c}`).join(', ');

/** The mix paced at `rate` commands/s (rides started at rate / commands per ride): every command's round trip. */
async function pacedMix(nodes: readonly BenchNode[], drivers: readonly BenchDriver[], rate: number, perRide: number, seconds: number): Promise<{ latencies: number[]; failed: number; sent: number; reasons: string }> {
  const timings: number[] = [];
  for (const d of drivers) { d.timings = timings; d.tally = undefined; d.policy = { accept: 0.7 }; }
  const rides = Math.round((rate / perRide) * seconds);
  const pickups = downtown(rides, 61);
  const tokens = await Promise.all(pickups.map((_, i) => tokenFor(`bench-paced-rider-${i}`, 'rider')));
  let failed = 0;
  const reasons = new Map<string, number>();
  const refuse = (why: string) => { failed++; reasons.set(why, (reasons.get(why) ?? 0) + 1); };
  const pending: Promise<void>[] = [];
  const start = performance.now() + 20;
  for (let i = 0; i < rides;) {
    const now = performance.now();
    for (; i < rides && start + (i * seconds * 1000) / rides <= now; i++) {
      const due = start + (i * seconds * 1000) / rides;
      const url = nodes[i % nodes.length]!.url;
      const pickup = pickups[i]!;
      const token = tokens[i]!;
      pending.push((async () => {
        const quote = await rider.quote(url, token, pickup, offsetKm(pickup, 1.5, 1.5));
        timings.push(performance.now() - due);
        if (!quote.quoteId) { refuse(`quote ${quote.error}`); return; }
        const t0 = performance.now();
        const booked = await rider.book(url, token, { quoteId: quote.quoteId });
        timings.push(performance.now() - t0);
        if (booked.status !== 201) refuse(`book ${booked.error}`);
      })());
    }
    await sleep(1);
  }
  await Promise.all(pending);
  await sleep(5_000); // the rides' driver commands
  for (const d of drivers) d.timings = undefined;
  return { latencies: timings, failed, sent: timings.length, reasons: [...reasons].map(([r, n]) => `${n} ${r}`).join(', ') };
}

export async function clusterBench(s: Services, o: { quick: boolean }): Promise<Row[]> {
  const rows: Row[] = [];
  const cpuPerCommand = new Map<number, number>();
  const broker = kafkaBroker();
  const plural = (n: number) => `${n} node${n > 1 ? 's' : ''}`;
  const driverCount = o.quick ? 150 : 600;
  const idleSeconds = o.quick ? 3 : 10;
  const loadSeconds = o.quick ? 8 : 30;
  // Riders in the closed loop: enough that the nodes, not the riders' waiting, bound the rate.
  const riders = o.quick ? 32 : 256;
  for (const count of [1, 2, 3]) {
    const db = await scratchDatabase(s.database, 'bench_cluster');
    const prefix = `bench${randomUUID().slice(0, 6)}`;
    const nodes: BenchNode[] = [];
    let drivers: BenchDriver[] = [];
    try {
      for (let i = 1; i <= count; i++) nodes.push(await startBenchNode(nodeEnv(s, db.url, prefix, `b${i}`)));
      await settled(nodes[0]!, count);
      await allowEconomy(nodes[0]!.url, Array.from({ length: driverCount }, (_, n) => `${prefix}-driver-${n}`));
      drivers = await connectDrivers(nodes.map((n) => n.url), `${prefix}-driver`, downtown(driverCount, 71));
      await sleep(2_000);
      const idleA = readCpu(nodes, broker?.pid);
      await sleep(idleSeconds * 1000);
      const idle = cpuBetween(idleA, readCpu(nodes, broker?.pid));
      const tally: Tally = new Map();
      const loadA = readCpu(nodes, broker?.pid);
      await closedLoop(nodes, drivers, riders, loadSeconds, tally);
      await sleep(2_000); // the last rides' driver commands
      const load = cpuBetween(loadA, readCpu(nodes, broker?.pid));
      const commands = commandsIn(tally);
      const net = (busy: number, quiet: number) => busy - (quiet / idle.seconds) * load.seconds;
      const nodesNet = load.nodes.reduce((sum, c, i) => sum + net(c, idle.nodes[i]!), 0);
      const perCommand = (cpu: number) => round((cpu * 1000) / Math.max(1, commands));
      cpuPerCommand.set(count, nodesNet / Math.max(1, commands));
      const idleNote = `idle (same drivers connected, no riders, ${idleSeconds} s): nodes ${idle.nodes.map((c) => `${Math.round((c / idle.seconds) * 100)}%`).join(', ')} of a core`;
      rows.push(
        {
          bench: 'cluster', case: `dispatch commands/s end to end through Kafka and PostgreSQL, ${plural(count)}`, value: Math.round(commands / load.seconds), unit: 'cmd/s',
          goal: count === 1 ? GOALS.clusterCommands1 : undefined,
          note: `${riders} riders in a closed loop (quote, book, wait for the ride) for ${loadSeconds} s over ${plural(count)}, ${driverCount} drivers on WebSocket sessions accepting 70% of offers; ${commands} commands answered: ${mixOf(tally)}`,
        },
        { bench: 'cluster', case: `node CPU per dispatch command, ${plural(count)}, idle taken off`, value: perCommand(nodesNet), unit: 'ms', note: `all nodes' CPU (/proc/<pid>/stat) over the load less each node's idle CPU over the same time; ${idleNote}` },
        {
          bench: 'cluster', case: `Kafka broker CPU per dispatch command, ${plural(count)}, idle taken off`, value: broker ? perCommand(net(load.broker, idle.broker)) : Number.NaN, unit: 'ms',
          note: broker ? `the broker's JVM (pid ${broker.pid}); idle ${Math.round((idle.broker / idle.seconds) * 100)}% of a core` : 'the broker does not run on this machine: not measured',
        },
        { bench: 'cluster', case: `PostgreSQL CPU per dispatch command, ${plural(count)}, idle taken off`, value: perCommand(net(load.database, idle.database)), unit: 'ms', note: `every postgres process on this machine (the server is shared: other databases' work counts too, and a backend that ended during a window is lost); idle ${Math.round((idle.database / idle.seconds) * 100)}% of a core` },
      );
      if (count === 1) {
        const perRide = commands / Math.max(1, tally.get('book') ?? 1);
        const paced = await pacedMix(nodes, drivers, 1_000, perRide, o.quick ? 2 : 10);
        const note = `the mix paced at 1,000 commands/s (rides started at ${Math.round(1_000 / perRide)}/s, ${round(perRide)} commands per ride as in the closed loop) for ${o.quick ? 2 : 10} s: ${paced.sent} round trips timed (quote from when due, book, each driver command to its ack)${paced.failed ? `, ${paced.failed} refused (${paced.reasons})` : ''}`;
        rows.push(
          { bench: 'cluster', case: 'dispatch command round trip paced at 1,000/s, 1 node p50', value: round(percentile(paced.latencies, 50)), unit: 'ms', note },
          { bench: 'cluster', case: 'dispatch command round trip paced at 1,000/s, 1 node p99', value: round(percentile(paced.latencies, 99)), unit: 'ms', goal: GOALS.clusterPacedP99, note },
        );
        const where = 'cluster node on Kafka and PostgreSQL, a node process';
        for (const [i, run] of (o.quick ? [{ rate: 100, bookings: 100, accept: 0.7 }] : [{ rate: 100, bookings: 1_000, accept: 0.7 }, { rate: 1_000, bookings: 2_000, accept: 0.7 }]).entries()) {
          rows.push(...(await offerRun(nodes.map((n) => n.url), drivers, run, where, 200 + i)).rows);
          await sleep(3_000);
        }
      }
    } finally {
      for (const d of drivers) d.close();
      await Promise.all(nodes.map((n) => n.stop()));
      await db.drop().catch(() => undefined);
    }
  }
  rows.push({
    bench: 'cluster', case: 'node CPU per dispatch command, 3 nodes / 1 node', value: round(cpuPerCommand.get(3)! / cpuPerCommand.get(1)!), unit: '×',
    note: `nodes' CPU per command handled, idle taken off, same mix; the nodes, PostgreSQL, the broker and the load share this machine's ${cpus().length} cores, so three nodes also contend with each other for them`,
    goal: GOALS.cpuPerCommand3vs1,
  });
  for (const n of [2, 3, 4]) {
    const names = (k: number) => Array.from({ length: k }, (_, i) => `node-${i}`);
    const before = placeShards(SHARDS, names(n));
    const sticky = movedShards(before, placeShards(SHARDS, names(n + 1), before)).length;
    const rr = (k: number) => new Map(Array.from({ length: SHARDS }, (_, sh) => [sh, `node-${sh % k}`]));
    const naive = movedShards(rr(n), rr(n + 1)).length;
    rows.push({ bench: 'cluster', case: `shards moved ${n}→${n + 1} nodes, sticky rendezvous vs round-robin`, value: round(sticky / SHARDS), unit: 'fraction', note: `${sticky}/${SHARDS} vs ${naive}/${SHARDS} (${round(naive / SHARDS)})` });
  }
  return rows;
}

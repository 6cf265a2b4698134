// GPS fixes through driver and cell actors, counted when the work is done: a fix counts
// once its driver applied it and every cell copy it caused (an upsert where the driver is,
// and a remove where it was when it crossed into another cell) was applied too. The bench
// knows how many copies each fix causes (it moves the fleet), reads the nodes' soft-message
// counters, and asserts at the end of every run that applied = fixes + copies sent, with
// nothing dropped and nothing turned into a command.
//
// The fleet moves as drivers do: from the city's positions (bench/city.ts), 5-15 m/s on a
// wandering heading, one fix every 4 s of its time. The same fleet and the same fixes run
// on one embedded node and on two Kafka-mode nodes, each node a worker thread
// (bench/fix-node.ts) that holds the sockets of half the drivers, wherever their shards
// are served, so about half the fixes cross Kafka to the other node (and so do the copies
// of cells the other node serves).

import { randomUUID } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { latLngToCell } from 'h3-js';
import { CELL_RES } from './rig.ts';
import { city, METRO, offsetKm, seeded } from './city.ts';
import type { FixNodeData, FromNode, GcPauses, ToNode } from './fix-node.ts';
import { machineCpuSeconds } from './proc.ts';
import { GOALS } from './goals.ts';
import { percentile, type Goal, type Row } from './stats.ts';

const round = (x: number) => Math.round(x * 1000) / 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface MovingFleet {
  readonly drivers: number;
  readonly steps: number;
  readonly lat: Float64Array;
  readonly lng: Float64Array;
  /** Copies fix (step s >= 1) of driver d causes: copies[s * drivers + d] (1 in the same cell, 2 across a boundary). */
  readonly copies: Uint8Array;
}

function movingFleet(drivers: number, steps: number, seed: number): MovingFleet {
  const start = city(METRO, drivers, seed);
  const rand = seeded(seed + 1);
  const shared = (n: number) => new Float64Array(new SharedArrayBuffer(n * 8));
  const lat = shared(drivers * steps);
  const lng = shared(drivers * steps);
  const copies = new Uint8Array(drivers * steps);
  for (let d = 0; d < drivers; d++) {
    let p = { lat: start.lat[d]!, lng: start.lng[d]! };
    let heading = rand() * 2 * Math.PI;
    const kmPerFix = ((5 + rand() * 10) * 4) / 1000;
    let cell = '';
    for (let s = 0; s < steps; s++) {
      if (s > 0) {
        heading += (rand() - 0.5) * 0.6;
        p = offsetKm(p, kmPerFix * Math.sin(heading), kmPerFix * Math.cos(heading));
      }
      lat[s * drivers + d] = p.lat; lng[s * drivers + d] = p.lng;
      const now = latLngToCell(p.lat, p.lng, CELL_RES);
      copies[s * drivers + d] = s === 0 || now === cell ? 1 : 2;
      cell = now;
    }
  }
  return { drivers, steps, lat, lng, copies };
}

class Cluster {
  readonly workers: Worker[] = [];
  readonly counters: Int32Array;
  readonly #waiters: ((m: FromNode, from: number) => boolean)[] = [];
  readonly owned: (readonly number[])[];
  failure: string | undefined;
  readonly nodes: number;

  constructor(nodes: number, fleet: MovingFleet, kafka?: { brokers: string; topic: string }) {
    this.nodes = nodes;
    this.counters = new Int32Array(new SharedArrayBuffer(nodes * 4 * 4));
    this.owned = Array.from({ length: nodes }, () => []);
    for (let index = 0; index < nodes; index++) {
      const data: FixNodeData = { index, nodes, drivers: fleet.drivers, lat: fleet.lat, lng: fleet.lng, counters: this.counters, kafka };
      const worker = new Worker(new URL('./fix-node.ts', import.meta.url), { workerData: data });
      worker.on('message', (m: FromNode) => {
        if (m.type === 'owned') this.owned[index] = m.shards;
        if (m.type === 'failed') this.failure = m.error;
        for (let i = this.#waiters.length - 1; i >= 0; i--) if (this.#waiters[i]!(m, index)) this.#waiters.splice(i, 1);
      });
      worker.on('error', (e) => { this.failure = String(e?.stack ?? e); });
      this.workers.push(worker);
    }
  }

  /** Sends `m` to every node and waits for each one's answer of type `answer`. */
  async all<T extends FromNode['type']>(m: ToNode | ((index: number) => ToNode), answer: T, timeoutMs = 600_000): Promise<Extract<FromNode, { type: T }>[]> {
    const got = new Map<number, Extract<FromNode, { type: T }>>();
    const done = new Promise<void>((resolve) => {
      this.#waiters.push((reply, from) => {
        if (reply.type !== answer) return false;
        got.set(from, reply as Extract<FromNode, { type: T }>);
        if (got.size === this.nodes) { resolve(); return true; }
        return false;
      });
    });
    this.workers.forEach((w, i) => w.postMessage(typeof m === 'function' ? m(i) : m));
    const until = Date.now() + timeoutMs;
    while (got.size < this.nodes) {
      if (this.failure) throw new Error(`a fix node failed: ${this.failure}`);
      if (Date.now() > until) throw new Error(`fix nodes did not answer ${answer} within ${timeoutMs / 1000} s`);
      await Promise.race([done, sleep(100)]);
    }
    return [...got.values()];
  }

  total(slot: 0 | 1 | 2 | 3): number {
    let sum = 0;
    for (let i = 0; i < this.nodes; i++) sum += Atomics.load(this.counters, i * 4 + slot);
    return sum;
  }

  /** Every shard served by exactly one node, each node serving some (the group has settled). */
  settled(): boolean {
    const all = this.owned.flat();
    return all.length === 32 && new Set(all).size === 32 && this.owned.every((o) => o.length > 0);
  }

  async stop(): Promise<void> {
    await this.all({ type: 'stop' }, 'stopped', 60_000).catch(() => undefined);
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** Fixes from..to of the fleet, their driver and copies: how many applies they make in all. */
function appliesOf(fleet: MovingFleet, from: number, to: number, firstStep: number): number {
  let n = 0;
  for (let i = from; i < to; i++) n += 1 + fleet.copies[(firstStep + Math.floor((i - from) / fleet.drivers)) * fleet.drivers + (i % fleet.drivers)]!;
  return n;
}

interface Snapshot { applied: number; forwarded: number; dropped: number; durable: number }
const snapshot = (c: Cluster): Snapshot => ({ applied: c.total(0), forwarded: c.total(1), dropped: c.total(2), durable: c.total(3) });

/** Waits until `expected` more applies than `before` are counted; asserts nothing dropped or journaled. */
async function applied(c: Cluster, before: Snapshot, expected: number, what: string, timeoutMs = 300_000): Promise<Snapshot> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const now = snapshot(c);
    if (now.dropped > before.dropped || now.durable > before.durable) {
      throw new Error(`${what}: ${now.dropped - before.dropped} soft messages dropped and ${now.durable - before.durable} sent as commands (the bench asserts none)`);
    }
    if (now.applied - before.applied >= expected) {
      if (now.applied - before.applied > expected) throw new Error(`${what}: ${now.applied - before.applied} applied, more than the ${expected} fixes and copies sent`);
      return now;
    }
    if (c.failure) throw new Error(`${what}: a node failed: ${c.failure}`);
    if (Date.now() > until) throw new Error(`${what}: ${now.applied - before.applied} of ${expected} fixes and copies applied after ${timeoutMs / 1000} s`);
    await sleep(1);
  }
}

/** Cores the machine's other processes used since `before` (its CPU less this process's), over `seconds`. */
function otherCores(before: { machine: number; ours: NodeJS.CpuUsage }, seconds: number): string {
  const ours = process.cpuUsage(before.ours);
  const others = (machineCpuSeconds() - before.machine - (ours.user + ours.system) / 1e6) / seconds;
  return Number.isNaN(others) ? 'unknown (no /proc/stat)' : Math.max(0, others).toFixed(2);
}

/** What stopped the nodes while the paced fixes were sent: a fix due during a pause waits for it. */
function gcNote(gc: readonly GcPauses[]): string {
  const ms = (x: number) => `${x.toFixed(1)} ms`;
  const each = gc.map((g) => `${g.scavenges} scavenges (${ms(g.scavengeMs)} in all, the longest ${ms(g.scavengeMaxMs)}), ${g.fulls} mark-compacts${g.fulls > 0 ? ` (the longest ${ms(g.fullMaxMs)})` : ''}`);
  return `GC pauses while they were sent: ${gc.length === 1 ? each[0] : each.map((e, i) => `node ${i}: ${e}`).join('; ')}`;
}

interface FixRun { label: string; nodes: number; kafka?: string; drivers: number; flat: number; paced: number; rate: number; goals: { rate: Goal; p99: Goal }; perNode: boolean }

async function fixRun(fleet: MovingFleet, r: FixRun): Promise<Row[]> {
  const kafka = r.kafka ? { brokers: r.kafka, topic: `benchfix${randomUUID().slice(0, 6)}` } : undefined;
  const c = new Cluster(r.nodes, fleet, kafka);
  try {
    const settleBy = Date.now() + 120_000;
    while (!c.settled()) {
      if (c.failure) throw new Error(`a fix node failed: ${c.failure}`);
      if (Date.now() > settleBy) throw new Error(`the ${r.nodes} fix nodes did not settle on the shards within 120 s (${JSON.stringify(c.owned)})`);
      await sleep(200);
    }
    if (r.nodes > 1) await sleep(3_000); // a last rebalance after the second join
    const onlined = (await c.all({ type: 'online' }, 'online.done')).reduce((s, m) => s + m.count, 0);
    if (onlined !== fleet.drivers) throw new Error(`${onlined} of ${fleet.drivers} drivers went online`);
    // Warm-up: every driver's first fix (step 0) puts it in its cell.
    let before = snapshot(c);
    await c.all({ type: 'send', from: 0, to: fleet.drivers, firstStep: 0 }, 'sent');
    before = await applied(c, before, fleet.drivers * 2, 'warm-up');

    // Flat out: the nodes' gateways send as fast as fixes are taken.
    const flatSteps = { from: 0, to: r.flat, firstStep: 1 };
    const flatExpected = appliesOf(fleet, 0, r.flat, 1);
    const forwardedBefore = before.forwarded;
    const t0 = performance.now();
    await c.all({ type: 'send', ...flatSteps }, 'sent');
    const sentSeconds = (performance.now() - t0) / 1000;
    const afterFlat = await applied(c, before, flatExpected, 'flat out');
    const seconds = (performance.now() - t0) / 1000;
    const crossed = afterFlat.forwarded - forwardedBefore;

    // Paced at `rate`/s: fix i due at start + i/rate; it counts as done once everything sent up to it is applied.
    const firstStep = 1 + Math.ceil(r.flat / fleet.drivers);
    const cumulative = new Float64Array(r.paced);
    for (let i = 0, sum = 0; i < r.paced; i++) {
      sum += 1 + fleet.copies[(firstStep + Math.floor(i / fleet.drivers)) * fleet.drivers + (i % fleet.drivers)]!;
      cumulative[i] = sum;
    }
    const pacedBefore = snapshot(c);
    const cpuBefore = { machine: machineCpuSeconds(), ours: process.cpuUsage() };
    const start = Date.now() + 50;
    const latencies = new Float64Array(r.paced);
    const sending = c.all({ type: 'send', from: 0, to: r.paced, firstStep, rate: r.rate, start }, 'sent');
    let done = 0;
    const until = Date.now() + 300_000;
    while (done < r.paced) {
      const appliedNow = c.total(0) - pacedBefore.applied;
      const t = Date.now();
      while (done < r.paced && cumulative[done]! <= appliedNow) { latencies[done] = t - (start + (done * 1000) / r.rate); done++; }
      if (c.failure) throw new Error(`paced: a node failed: ${c.failure}`);
      if (t > until) throw new Error(`paced: ${done} of ${r.paced} fixes done after 300 s`);
      await sleep(1);
    }
    const gc = (await sending).map((m) => m.gc!);
    const afterPaced = await applied(c, pacedBefore, cumulative[r.paced - 1]!, 'paced');
    const achieved = r.paced / ((Date.now() - start) / 1000);
    const others = otherCores(cpuBefore, (Date.now() - start + 50) / 1000);
    const moved = (from: number, count: number, step: number) => {
      let n = 0;
      for (let i = from; i < from + count; i++) if (fleet.copies[(step + Math.floor(i / fleet.drivers)) * fleet.drivers + (i % fleet.drivers)] === 2) n++;
      return n;
    };
    const pace = `paced at ${r.rate.toLocaleString('en-US')}/s${r.nodes > 1 ? ` in all (${(r.rate / r.nodes).toLocaleString('en-US')}/s per node)` : ''}`;
    const where = `${r.nodes === 1 ? 'one embedded node (in-process log)' : `${r.nodes} Kafka-mode nodes, each a worker thread with its own consumer in the group`}`;
    const fleetNote = `${fleet.drivers.toLocaleString('en-US')} drivers moving at 5-15 m/s, a fix every 4 s of theirs; ${moved(0, r.flat, 1)} of ${r.flat} fixes crossed into another cell (2 copies: remove and upsert)`;
    const rate = Math.round(r.flat / seconds / (r.perNode ? r.nodes : 1));
    const crossNote = r.nodes > 1 ? `; ${crossed} of the fixes and copies crossed Kafka to the node serving their shard (${Math.round((crossed / flatExpected) * 100)}% of them)` : '';
    const pacedNote = `${r.paced.toLocaleString('en-US')} fixes offered at ${r.rate.toLocaleString('en-US')}/s (${Math.round(achieved).toLocaleString('en-US')}/s until the last was applied), from when each was due until as many fixes and copies as were sent up to it were applied (order across nodes not tracked); applied = sent, 0 dropped (${afterPaced.applied - pacedBefore.applied} applies); the ${fleet.drivers.toLocaleString('en-US')} drivers each send every ${round(fleet.drivers / r.rate)} s of wall time${fleet.drivers < r.rate * 4 ? `, where a city sending this rate at one fix per 4 s has ${(r.rate * 4).toLocaleString('en-US')} drivers: here a driver's previous state dies young, there it survives to the next scavenge, so this collector's share flatters us` : ''}; ${gcNote(gc)}; other processes of the machine used ${others} cores meanwhile`;
    return [
      {
        bench: 'fixes', case: `GPS fixes/s${r.perNode ? ' per node' : ''}, ${r.label}, counted when every cell copy is applied`, value: rate, unit: 'fix/s', goal: r.goals.rate,
        note: `${r.flat.toLocaleString('en-US')} fixes on ${where}, 2,000 in flight per node; sent in ${round(sentSeconds)} s, all applied in ${round(seconds)} s; applied = ${flatExpected} fixes and copies sent, 0 dropped${crossNote}; ${fleetNote}`,
      },
      { bench: 'fixes', case: `fix → every copy applied (visible), ${r.label}, ${pace} p50`, value: round(percentile([...latencies], 50)), unit: 'ms', note: pacedNote },
      { bench: 'fixes', case: `fix → every copy applied (visible), ${r.label}, ${pace} p99`, value: round(percentile([...latencies], 99)), unit: 'ms', goal: r.goals.p99, note: pacedNote },
    ];
  } finally {
    await c.stop();
  }
}

export async function fixBench(o: { quick: boolean; kafka?: string; missing: ReadonlySet<string> }): Promise<Row[]> {
  // A city's fleet for the paced embedded rate: 50,000 fixes/s at one fix per 4 s of each
  // driver is 200,000 drivers. With 20,000 each sent every 0.4 s and its previous state died
  // before the next scavenge, where a real fleet's survives it (the collector's share flattered).
  const drivers = o.quick ? 2_000 : 200_000;
  const flat = o.quick ? 20_000 : 200_000;
  // Half the goal rate (issue 23: fix → visible p99 at half of 100k/s; Kafka: half of 30k/s per node, two nodes).
  const paced = { embedded: o.quick ? 10_000 : 100_000, kafka: o.quick ? 6_000 : 60_000 };
  const fleet = movingFleet(drivers, 2 + Math.ceil(flat / drivers) + Math.ceil(Math.max(paced.embedded, paced.kafka) / drivers), 21);
  const quickNote = o.quick ? ' (--quick: smaller fleet and runs)' : '';
  const rows = await fixRun(fleet, {
    label: `embedded${quickNote}`, nodes: 1, drivers, flat, paced: paced.embedded, rate: 50_000, perNode: false,
    goals: { rate: GOALS.fixesEmbedded, p99: GOALS.fixVisibleP99 },
  });
  if (!o.kafka) {
    const { notRun } = await import('./stats.ts');
    return [...rows,
      notRun('Kafka', { bench: 'fixes', case: 'GPS fixes/s per node, two Kafka-mode nodes, counted when every cell copy is applied', unit: 'fix/s', goal: GOALS.fixesKafka }),
      notRun('Kafka', { bench: 'fixes', case: 'fix → every copy applied (visible), two Kafka-mode nodes, paced at 30,000/s in all (15,000/s per node) p99', unit: 'ms', goal: GOALS.fixKafkaP99 })];
  }
  return [...rows, ...await fixRun(fleet, {
    label: `two Kafka-mode nodes${quickNote}`, nodes: 2, kafka: o.kafka, drivers, flat: flat / 2, paced: paced.kafka, rate: 30_000, perNode: true,
    goals: { rate: GOALS.fixesKafka, p99: GOALS.fixKafkaP99 },
  })];
}

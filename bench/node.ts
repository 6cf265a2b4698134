// One embedded node as users run it: main.ts in a process of its own, with its file
// command log and PGlite under a fresh DATA_DIR (the shared services of
// .ci/with-services.sh left out), run with --expose-gc and an inspector so the bench can
// make it collect before reading its memory. Measured from outside, in this order:
// 1. idle: CPU over a quiet window with no client connected, and RSS, right after start;
// 2. memory per connected driver: heap and RSS after forced collections at 1k, 2k and 3k
//    drivers on WebSocket sessions (online, one fix), and the slope between them;
// 3. node CPU per GPS fix from driver sockets (frame, parse, validate, meter, apply), for
//    single fixes and location.batch of 10, less the node's idle CPU over the same time;
// 4. booking → first offer frame at 100/s and 1,000/s with realistic acceptance, then the
//    all-decline storm (last: its bookings keep searching until their deadline);
// 5. idle after the load: every socket closed, once the storm's bookings reached their deadline;
//    the first presence period shown as the load's tail (the load's garbage collected), the next read.

import { cpuSeconds, cpuSplit, rssBytes } from './proc.ts';
import { GOALS } from './goals.ts';
import { VARIABLES } from '../config/variables.ts';
import { connectDrivers, OPEN_LIMITS, startBenchNode, type BenchDriver, type BenchNode } from './node-client.ts';
import { downtown, offerRun } from './offers.ts';
import type { Row } from './stats.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (x: number, d = 10) => Math.round(x * d) / d;
const KiB = (b: number) => round(b / 1024);
const MB = (b: number) => Math.round(b / 1e6);

/** CPU share of one core a process spends over `seconds` (0-100 per core). */
async function cpuPercent(pid: number, seconds: number): Promise<number> {
  const c0 = cpuSeconds(pid);
  const t0 = performance.now();
  await sleep(seconds * 1000);
  return ((cpuSeconds(pid) - c0) / ((performance.now() - t0) / 1000)) * 100;
}

/** Least-squares slope of y over x. */
function slope(xs: readonly number[], ys: readonly number[]): number {
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let num = 0, den = 0;
  for (let i = 0; i < xs.length; i++) { num += (xs[i]! - mx) * (ys[i]! - my); den += (xs[i]! - mx) ** 2; }
  return num / den;
}

async function idle(node: BenchNode, seconds: number, quick: boolean): Promise<Row[]> {
  await sleep(5_000); // past start-up's own work (migrations, the first sweeps)
  const tail = await cpuPercent(node.pid, seconds);
  // Start-up's tail (V8 compiling and collecting on its own threads, PGlite's first
  // statements) runs on for seconds after /ready, longer on a busy machine: the goal is read
  // once it is over, and the tail is shown beside it.
  await sleep(quick ? 0 : SETTLE_S * 1000 - 5_000 - seconds * 1000);
  const percent = await cpuPercent(node.pid, seconds);
  const rss = rssBytes(node.pid);
  const from = quick ? 5 + seconds : SETTLE_S;
  const note = `embedded node (file log, PGlite) with no client connected, ${seconds} s from ${from} s after /ready; /proc/<pid>/stat of the node process (PGlite runs in its worker threads)${quick ? '; --quick: a shorter window' : ''}`;
  return [
    { bench: 'node', case: 'idle embedded node: CPU, start-up\'s tail', value: round(tail, 100), unit: '% of a core', note: `the same, ${seconds} s from 5 s after /ready: start-up's own work still running` },
    { bench: 'node', case: 'idle embedded node: CPU', value: round(percent, 100), unit: '% of a core', goal: GOALS.idleCpu, note },
    { bench: 'node', case: 'idle embedded node: RSS', value: MB(rss), unit: 'MB', goal: GOALS.idleRss, note: '/proc/<pid>/status VmRSS, right after the idle window' },
  ];
}

/** When the idle node is read: start-up's tail is over by then (bench/node.ts probes read 0 to 3% of a core up to 8 s after /ready). */
const SETTLE_S = 25;

/** A booking searches until its dispatch deadline, and its last offer runs out after it: the node's defaults. */
const BOOKING_WORK_MS = Number(VARIABLES.DISPATCH_DEADLINE_MS.default) + Number(VARIABLES.OFFER_TIMEOUT_MS.default);
const PRESENCE_S = Number(VARIABLES.DRIVER_PRESENCE_MS.default) / 1000;

/**
 * The node idle again after the load: every socket closed, then, once its work is done (the
 * storm's bookings search until their deadline, offering to drivers whose sockets are gone;
 * then the projections catching up: a two-second window under 5% of a core, waited for up to
 * two minutes), two presence periods of CPU. The drivers stay online in the node (they closed
 * their sockets without going offline, as a phone that loses its network does) until
 * DRIVER_SILENT_AFTER_MS, so their presence timers are in both. The first period is shown as
 * the load's tail: its presence burst is the first allocation after the load, and it sets off
 * the collection of the load's garbage (probe: 0.4 s of the collector's threads in the 10 s
 * holding that burst, 0.05 s in the next period's); the goal is read on the second.
 */
async function idleAfterLoad(node: BenchNode, drivers: readonly BenchDriver[], seconds: number, workEndsAt: number): Promise<Row[]> {
  for (const d of drivers) d.close();
  const t0 = performance.now();
  await sleep(Math.max(0, workEndsAt - t0));
  const t1 = performance.now();
  while (performance.now() - t1 < 120_000 && await cpuPercent(node.pid, 2) >= 5);
  const after = (t: number) => Math.round((performance.now() - t) / 1000);
  const waited = `${after(t0)} s after (${Math.round((t1 - t0) / 1000)} s of it for the last bookings' deadline, then a 2 s window under 5% of a core)`;
  const tail = await cpuPercent(node.pid, seconds);
  const percent = await cpuPercent(node.pid, seconds);
  const online = `${drivers.length} drivers still online in the node (socket closed, not offline), each re-announced to its cell every ${PRESENCE_S} s`;
  return [{
    bench: 'node', case: 'idle embedded node after the load: CPU, the load\'s tail', value: round(tail, 100), unit: '% of a core',
    note: `the node above once the offer runs are over and every driver socket is closed: ${waited}, then ${seconds} s (one presence period, whose burst sets off the collection of the load's garbage); ${online}`,
  }, {
    bench: 'node', case: 'idle embedded node after the load: CPU', value: round(percent, 100), unit: '% of a core', goal: GOALS.idleCpu,
    note: `the same node over the next ${seconds} s (the next presence period); ${online}`,
  }];
}

/**
 * Waits, up to 10 s, until the node's entities hold no mailbox (they hibernate once idle for a
 * second or two: a connected driver's state between fixes); answers how many still held one.
 */
async function rested(node: BenchNode): Promise<number> {
  let holding = await node.mailboxes();
  for (let i = 0; i < 50 && holding > 0; i++) {
    await sleep(200);
    holding = await node.mailboxes();
  }
  return holding;
}

async function memorySlope(node: BenchNode, steps: readonly number[]): Promise<{ rows: Row[]; drivers: BenchDriver[] }> {
  const drivers: BenchDriver[] = [];
  const positions = downtown(steps.at(-1)!, 31);
  // One session before the baseline, so what the first session builds once is in it.
  drivers.push(...await connectDrivers([node.url], 'mem-warm', positions.slice(0, 1)));
  await rested(node);
  const base = await node.memory();
  const heap: number[] = [];
  const rss: number[] = [];
  const holding: number[] = [];
  const t0 = performance.now();
  for (const n of steps) {
    drivers.push(...await connectDrivers([node.url], 'mem', positions.slice(drivers.length - 1, n), drivers.length - 1));
    holding.push(await rested(node));
    const m = await node.memory();
    heap.push(m.heapUsed); rss.push(m.rss);
  }
  const seconds = Math.round((performance.now() - t0) / 1000);
  const per = steps.map((n, i) => `${n}: heap ${MB(heap[i]!)} MB, RSS ${MB(rss[i]!)} MB, ${holding[i]} holding a mailbox`).join('; ');
  const note = `slope of heapUsed over ${steps.join(', ')} drivers connected (WebSocket session, auth, online, one fix acknowledged; ${seconds} s), each read in the node after three forced collections (--expose-gc, through its inspector) once its entities idle for a second or two gave their mailboxes up, as between a driver's fixes 4 s apart (actors_holding_mailbox, waited for up to 10 s); before: heap ${MB(base.heapUsed)} MB, RSS ${MB(base.rss)} MB; ${per}`;
  return {
    drivers,
    rows: [
      { bench: 'node', case: 'heap per connected driver, WebSocket session included (slope after GC)', value: KiB(slope(steps, heap)), unit: 'KiB', goal: GOALS.heapPerConnectedDriver, note },
      { bench: 'node', case: 'RSS per connected driver (slope)', value: KiB(slope(steps, rss)), unit: 'KiB', note: 'the same readings\' RSS (process.memoryUsage().rss)' },
    ],
  };
}

/**
 * Every driver sends fixes over its socket, one in flight each (the next once the last is
 * acknowledged), for `seconds`; the node's CPU over the window less its idle CPU (measured
 * just before with the same drivers connected and quiet) over the same time, per fix.
 */
async function socketFixCpu(node: BenchNode, drivers: readonly BenchDriver[], seconds: number, batch: number): Promise<Row> {
  const idlePercent = await cpuPercent(node.pid, Math.min(10, seconds));
  const positions = downtown(drivers.length, 41);
  let fixes = 0;
  let failed = 0;
  const c0 = cpuSplit(node.pid);
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(drivers.map(async (d, i) => {
    const p = positions[i]!;
    for (let step = 1; performance.now() < end; step++) {
      const moved = (k: number) => ({ lat: p.lat + (step * batch + k) * 1e-5, lng: p.lng });
      try {
        if (batch === 1) await d.fix(moved(0)); else await d.fixes(Array.from({ length: batch }, (_, k) => moved(k)));
        fixes += batch;
      } catch { failed++; }
    }
  }));
  const elapsed = (performance.now() - t0) / 1000;
  const c1 = cpuSplit(node.pid);
  const system = c1.system - c0.system;
  const cpu = c1.user - c0.user + system;
  const net = cpu - (idlePercent / 100) * elapsed;
  const kind = batch === 1 ? 'single fixes' : `location.batch of ${batch}`;
  return {
    bench: 'node', case: `node CPU per GPS fix from driver sockets, end to end, ${kind}`, value: round((net / fixes) * 1e6), unit: 'µs', goal: GOALS.socketFixCpu,
    note: `${fixes.toLocaleString('en-US')} fixes (${Math.round(fixes / elapsed).toLocaleString('en-US')}/s) from ${drivers.length} driver sockets, one message in flight each, for ${round(elapsed)} s${failed ? `, ${failed} refused` : ''}; node CPU ${round(cpu, 100)} s less its idle ${round(idlePercent, 100)}% of a core over the same time, ${round((system / fixes) * 1e6)} µs a fix of it in the kernel (reading each message and writing its ack: a message and an ack per ${batch === 1 ? 'fix' : `${batch} fixes`}, over loopback TCP); /proc/<pid>/stat of the embedded node`,
  };
}

export async function nodeBench(o: { quick: boolean }): Promise<Row[]> {
  const rows: Row[] = [];
  const node = await startBenchNode({
    // The shared services stay out (empty is unset): file log and PGlite under DATA_DIR, as `npm start` runs.
    DATABASE_URL: '', REDIS_URL: '', KAFKA_BROKERS: '', MODE: 'embedded', ...OPEN_LIMITS,
  });
  let drivers: BenchDriver[] = [];
  try {
    rows.push(...await idle(node, o.quick ? 3 : 10, o.quick));
    const memory = await memorySlope(node, o.quick ? [200, 400, 600] : [1_000, 2_000, 3_000]);
    drivers = memory.drivers;
    rows.push(...memory.rows);
    rows.push(await socketFixCpu(node, drivers, o.quick ? 3 : 15, 1));
    rows.push(await socketFixCpu(node, drivers, o.quick ? 3 : 15, 10));
    const where = 'embedded node (file log, PGlite), a node process';
    const realistic = 0.7;
    const runs = o.quick
      ? [{ rate: 100, bookings: 100, accept: realistic }, { rate: 1_000, bookings: 200, accept: realistic, goal: GOALS.offerAt1000P99 }, { rate: 1_000, bookings: 200, accept: 0 }]
      : [{ rate: 100, bookings: 1_000, accept: realistic }, { rate: 1_000, bookings: 2_000, accept: realistic, goal: GOALS.offerAt1000P99 }, { rate: 1_000, bookings: 2_000, accept: 0 }];
    let lastRunAt = 0;
    for (const [i, run] of runs.entries()) {
      lastRunAt = performance.now();
      rows.push(...(await offerRun([node.url], drivers, run, `${where}${o.quick ? '; --quick: fewer bookings' : ''}`, 100 + i)).rows);
      await sleep(3_000); // rides accepted in this run are over before the next
    }
    // --quick does not wait for the storm's deadline.
    // A whole presence period: the drivers came online together, so their timers fire together.
    rows.push(...await idleAfterLoad(node, drivers, o.quick ? 3 : PRESENCE_S, o.quick ? 0 : lastRunAt + BOOKING_WORK_MS));
    return rows;
  } finally {
    for (const d of drivers) d.close();
    await node.stop();
  }
}

// A probe of what one GPS fix costs a node, in process and without the bench's pacing:
// an embedded node (bench/rig.ts) with 20,000 drivers online, fixes sent through the soft
// path as the socket gateway sends them (region.tellSoftSoon, 2,000 in flight), rounds of
// 200,000 after a warm-up. Prints CPU per fix per round. For GC, run it under --trace-gc or
// --trace-gc-nvp: it prints ROUND-START and ROUND-END around each measured round. With
// HEAPPROF=<file> it writes a sampling heap profile of the rounds (collected objects
// included: what was allocated, not what is left), with CPUPROF=<file> a CPU profile.
//
//   node bench/fix-probe.ts                        ROUNDS=3 FIXES=200000 by default
//   node --trace-gc-nvp bench/fix-probe.ts

import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { benchRig } from './rig.ts';
import { city, METRO, offsetKm, seeded } from './city.ts';

const DRIVERS = 20_000;
const FIXES = Number(process.env.FIXES ?? 200_000);
const ROUNDS = Number(process.env.ROUNDS ?? 3);

const rig = await benchRig({ presenceMs: 3_600_000, maxActiveEntities: DRIVERS * 2 + 10_000 });
const region = rig.region;
while (region.stats().owned.length < region.shards) await new Promise((r) => setTimeout(r, 10));
const ref = (d: number) => ({ kind: 'driver', id: `fx${d}` });
for (let i = 0; i < DRIVERS; i += 500) {
  await Promise.all(Array.from({ length: 500 }, (_, k) => region.request(ref(i + k), { type: 'online', vehicleType: 'economy' })));
}

// Drivers move as in bench/fixes.ts: 40 m a fix on a wandering heading.
const start = city(METRO, DRIVERS, 21);
const rand = seeded(22);
const lat = Float64Array.from(start.lat);
const lng = Float64Array.from(start.lng);
const heading = Float64Array.from({ length: DRIVERS }, () => rand() * 2 * Math.PI);
const lastAt = new Float64Array(DRIVERS);
function fix(d: number) {
  heading[d]! += (rand() - 0.5) * 0.6;
  const p = offsetKm({ lat: lat[d]!, lng: lng[d]! }, 0.04 * Math.sin(heading[d]!), 0.04 * Math.cos(heading[d]!));
  lat[d] = p.lat;
  lng[d] = p.lng;
  const at = Math.max(Date.now(), lastAt[d]! + 1);
  lastAt[d] = at;
  return { lat: p.lat, lng: p.lng, at };
}

async function run(n: number): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: 2_000 }, async () => {
    while (next < n) {
      const i = next++;
      const delivered = region.tellSoftSoon(ref(i % DRIVERS), { type: 'location', fix: fix(i % DRIVERS) });
      if (typeof delivered !== 'string') await delivered; else await null;
    }
  }));
}

// Warm-up: every driver in its cell, then rounds until the cells' first batching has passed.
await run(DRIVERS * 2);
await run(FIXES);
await run(FIXES);

const cpu = process.env.CPUPROF ? new Session() : undefined;
if (cpu) {
  cpu.connect();
  await cpu.post('Profiler.enable');
  await cpu.post('Profiler.setSamplingInterval', { interval: 100 });
  await cpu.post('Profiler.start');
}
const heap = process.env.HEAPPROF ? new Session() : undefined;
if (heap) {
  heap.connect();
  await heap.post('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
}
for (let r = 0; r < ROUNDS; r++) {
  console.log('ROUND-START');
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await run(FIXES);
  const c = process.cpuUsage(c0);
  const wall = performance.now() - t0;
  console.log('ROUND-END');
  console.log(`cpu/fix ${((c.user + c.system) / FIXES).toFixed(2)} us  wall/fix ${((wall * 1000) / FIXES).toFixed(2)} us`);
}
if (cpu) writeFileSync(process.env.CPUPROF!, JSON.stringify((await cpu.post('Profiler.stop')).profile));
if (heap) writeFileSync(process.env.HEAPPROF!, JSON.stringify((await heap.post('HeapProfiler.stopSampling')).profile));
const s = region.stats();
console.log(`applied ${s.softApplied}, dropped ${s.softDropped}, sent as commands ${s.softDurable}`);
await rig.stop();
process.exit(0);

// One node of the fix bench (bench/fixes.ts), in a worker thread of its own: its own event
// loop, heap and thread, as a node process has. It runs the real region and shard host with
// driver and cell actors, on the in-process log (embedded) or on Kafka (one consumer of the
// group per node), and plays the WebSocket gateway of its drivers: it sends the fixes of
// the drivers whose socket it holds (driver % nodes == its index) by the soft path, as the
// gateway does, wherever their shard is served. Every millisecond it writes its region's
// soft-message counters into shared memory, so the coordinator sees when the work is done.

import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { benchRig, type BenchRig } from './rig.ts';
import { MemoryShardOffsets } from '../adapters/memory/shard-offsets.ts';

export interface FixNodeData {
  readonly index: number;
  readonly nodes: number;
  readonly drivers: number;
  /** Driver d's position at step s is lat/lng[s * drivers + d]. */
  readonly lat: Float64Array;
  readonly lng: Float64Array;
  /** Per node: applied, forwarded, dropped, durable (RegionStats' soft counters). */
  readonly counters: Int32Array;
  readonly kafka?: { readonly brokers: string; readonly topic: string };
}

export type ToNode =
  | { readonly type: 'online' }
  /** Sends fixes from..to (fix i is driver i % drivers at step firstStep + floor(i / drivers)); paced at `rate`/s from `start` (epoch ms) when given. */
  | { readonly type: 'send'; readonly from: number; readonly to: number; readonly firstStep: number; readonly rate?: number; readonly start?: number }
  | { readonly type: 'stop' };

export type FromNode =
  | { readonly type: 'owned'; readonly shards: readonly number[] }
  | { readonly type: 'online.done'; readonly count: number }
  /** With a paced send, the node's GC pauses from its start until the last fix was sent. */
  | { readonly type: 'sent'; readonly count: number; readonly gc?: GcPauses }
  | { readonly type: 'stopped' }
  | { readonly type: 'failed'; readonly error: string };

/** Stop-the-world GC pauses of a node over a time: young generation (scavenges) and full (mark-compact). */
export interface GcPauses {
  readonly scavenges: number;
  readonly scavengeMaxMs: number;
  readonly scavengeMs: number;
  readonly fulls: number;
  readonly fullMaxMs: number;
}

const data = workerData as FixNodeData;
const post = (m: FromNode) => parentPort!.postMessage(m);
const driverRef = (d: number) => ({ kind: 'driver', id: `fx${d}` });

async function start(): Promise<BenchRig> {
  const nodeId = `fix-node-${data.index}`;
  if (!data.kafka) return benchRig({ nodeId, presenceMs: 3_600_000, maxActiveEntities: data.drivers * 2 + 10_000 });
  const { createKafka } = await import('../adapters/kafka/client.ts');
  const { KafkaCommandLog } = await import('../adapters/kafka/command-log.ts');
  const { brokers, topic } = data.kafka;
  return benchRig({
    nodeId, presenceMs: 3_600_000, maxActiveEntities: data.drivers * 2 + 10_000,
    log: (shards) => new KafkaCommandLog({
      kafka: createKafka({ brokers: brokers.split(','), clientId: nodeId }), topic: `${topic}.commands`, groupId: `${topic}.nodes`, shards, nodeId,
      sessionTimeoutMs: 10_000, offsets: new MemoryShardOffsets(),
    }),
  });
}

const rig = await start();
const region = rig.region;
const base = data.index * 4;
const publish = () => {
  const s = region.stats();
  Atomics.store(data.counters, base, s.softApplied);
  Atomics.store(data.counters, base + 1, s.softForwarded);
  Atomics.store(data.counters, base + 2, s.softDropped);
  Atomics.store(data.counters, base + 3, s.softDurable);
};
const counters = setInterval(publish, 1);
let lastOwned = '';
const ownership = setInterval(() => {
  const owned = [...region.stats().owned].sort((a, b) => a - b);
  if (owned.join() !== lastOwned) { lastOwned = owned.join(); post({ type: 'owned', shards: owned }); }
}, 100);

// The node's GC pauses, so the paced latencies can be read against them (a pause stops the
// node, and every fix due meanwhile waits for it).
const pauses: PerformanceEntry[] = [];
const gcObserver = new PerformanceObserver((list) => { pauses.push(...list.getEntries()); });
gcObserver.observe({ entryTypes: ['gc'] });

function gcSince(from: number): GcPauses {
  const since = pauses.filter((e) => performance.timeOrigin + e.startTime >= from);
  pauses.length = 0;
  const kind = (e: PerformanceEntry) => (e as { detail?: { kind?: number } }).detail?.kind;
  const young = since.filter((e) => kind(e) === constants.NODE_PERFORMANCE_GC_MINOR).map((e) => e.duration);
  const full = since.filter((e) => kind(e) === constants.NODE_PERFORMANCE_GC_MAJOR).map((e) => e.duration);
  return {
    scavenges: young.length, scavengeMaxMs: Math.max(0, ...young), scavengeMs: young.reduce((a, b) => a + b, 0),
    fulls: full.length, fullMaxMs: Math.max(0, ...full),
  };
}

/** Each driver's fixes carry increasing times within the skew a driver is believed (the newest wins). */
const lastAt = new Float64Array(data.drivers);
function fixOf(d: number, step: number) {
  const at = Math.max(Date.now(), lastAt[d]! + 1);
  lastAt[d] = at;
  const k = step * data.drivers + d;
  return { lat: data.lat[k]!, lng: data.lng[k]!, at };
}

async function online(): Promise<number> {
  const owned = new Set(region.stats().owned);
  const mine = Array.from({ length: data.drivers }, (_, d) => d).filter((d) => owned.has(region.shardOf(driverRef(d))));
  for (let i = 0; i < mine.length; i += 500) {
    await Promise.all(mine.slice(i, i + 500).map((d) => region.request(driverRef(d), { type: 'online', vehicleType: 'economy' })));
  }
  return mine.length;
}

/** The gateway's part: this node's drivers' fixes, 2,000 in flight (one per socket, as many sockets as that). */
async function send(m: Extract<ToNode, { type: 'send' }>): Promise<number> {
  const mine: number[] = [];
  for (let i = m.from; i < m.to; i++) if ((i % data.drivers) % data.nodes === data.index) mine.push(i);
  const one = (i: number) => region.tellSoftSoon(driverRef(i % data.drivers), { type: 'location', fix: fixOf(i % data.drivers, m.firstStep + Math.floor((i - m.from) / data.drivers)) });
  if (m.rate === undefined) {
    let next = 0;
    await Promise.all(Array.from({ length: 2_000 }, async () => {
      while (next < mine.length) await one(mine[next++]!);
    }));
    return mine.length;
  }
  // Paced: each fix sent when it is due (by its index among all nodes' fixes), in the tick it falls in.
  const pending: unknown[] = [];
  let next = 0;
  while (next < mine.length) {
    const due = Math.floor(((Date.now() - m.start!) * m.rate) / 1000) + m.from;
    while (next < mine.length && mine[next]! <= due) pending.push(one(mine[next++]!));
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(pending);
  return mine.length;
}

/** A paced send and the node's GC pauses while it was sent. */
async function paced(m: Extract<ToNode, { type: 'send' }>): Promise<FromNode> {
  pauses.length = 0;
  const count = await send(m);
  return { type: 'sent', count, gc: gcSince(m.start!) };
}

parentPort!.on('message', (m: ToNode) => {
  const run = async () => {
    switch (m.type) {
      case 'online': return post({ type: 'online.done', count: await online() });
      case 'send': return post(m.rate === undefined ? { type: 'sent', count: await send(m) } : await paced(m));
      case 'stop':
        clearInterval(ownership);
        gcObserver.disconnect();
        await rig.stop();
        publish();
        clearInterval(counters);
        post({ type: 'stopped' });
        return;
    }
  };
  run().catch((e: unknown) => post({ type: 'failed', error: String((e as Error)?.stack ?? e) }));
});

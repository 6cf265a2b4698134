// Cluster benchmarks on real Kafka, PostgreSQL and Redis with 1, 2 and 3 node
// processes: commands per second end to end (HTTP -> Kafka -> owning node ->
// journal), tell-to-handled latency, the pause when a node joins, and shards moved
// by a join compared with a round-robin assignment of the same membership change.

import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNodeProcess, type NodeProcess } from '../test/helpers/node-process.ts';
import { TEST_CLUSTER_KEY as BENCH_CLUSTER_KEY, TEST_DATA_KEYS as BENCH_DATA_KEYS } from '../test/helpers/services.ts';
import { SignJWT } from 'jose';
import { movedShards, placeShards } from '../runtime/placement.ts';
import { shardOf } from '../runtime/entity.ts';
import { GOALS } from './goals.ts';
import { percentile, type Row } from './stats.ts';


const FIXTURE = 'test/fixtures/counter-node.ts';
const SHARDS = 32;

interface Services { kafka: string; database: string; redis: string }

function env(s: Services, prefix: string, nodeId: string): Record<string, string> {
  return {
    MODE: 'cluster', KAFKA_BROKERS: s.kafka, DATABASE_URL: s.database, REDIS_URL: s.redis,
    JWT_SECRET: 'bench-secret-of-sufficient-length', QUOTE_SECRET: 'bench-quote-key-shared-by-every-node', ...BENCH_DATA_KEYS, ...BENCH_CLUSTER_KEY,
    KAFKA_TOPIC_PREFIX: prefix, SHARDS: String(SHARDS),
    KAFKA_SESSION_TIMEOUT_MS: '6000', LOG_LEVEL: 'warn', NODE_ID: nodeId, DATA_DIR: mkdtempSync(join(tmpdir(), 'bench-')),
  };
}

/**
 * Every call this bench makes to a node, in one place (switch here when the API changes).
 * `command` is one counter command over HTTP; with `wait` it answers once the owning node
 * has handled it (through Kafka, the journal in PostgreSQL, the outcome back over Redis).
 */
export const calls = {
  command: (node: NodeProcess, id: string, wait: boolean) =>
    fetch(`${node.url}/counter/${id}/add?n=1${wait ? '&wait=1' : ''}`, { method: 'POST' }),
  /** /metrics as an admin (prom-client's default process and heap gauges among them). */
  metrics: async (url: string, token: string) => {
    const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    if (!res.ok) throw new Error(`metrics: ${res.status}`);
    return res.text();
  },
};

/** One sample's value from Prometheus text (the first line of that name without labels, or with any). */
export function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : Number.NaN;
}

const cpuSeconds = async (nodes: readonly NodeProcess[]) =>
  (await Promise.all(nodes.map(async (n) => metric(await calls.metrics(n.url, ADMIN), 'process_cpu_seconds_total')))).reduce((a, b) => a + b, 0);

async function drive(nodes: NodeProcess[], total: number, concurrency: number, wait: boolean, ids: string[]) {
  const latencies: number[] = [];
  let failed = 0;
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < total) {
      const i = next++;
      const node = nodes[i % nodes.length]!;
      const t0 = performance.now();
      const res = await calls.command(node, ids[i % ids.length]!, wait).catch(() => undefined);
      await res?.arrayBuffer();
      // A loaded machine answers some with 504 (the outcome did not come back in time): counted, not fatal.
      if (!res?.ok) { failed++; continue; }
      latencies.push(performance.now() - t0);
    }
  }));
  return { seconds: (performance.now() - started) / 1000, latencies, failed };
}

/** Open loop at `rate` per second: each command sent when due, timed from when it was due until handled. */
async function paced(node: NodeProcess, total: number, rate: number, ids: string[]) {
  const latencies: number[] = [];
  let failed = 0;
  const pending: Promise<void>[] = [];
  const start = performance.now();
  for (let i = 0; i < total;) {
    const dueNow = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
    for (; i < dueNow; i++) {
      const due = start + (i * 1000) / rate;
      pending.push(calls.command(node, ids[i % ids.length]!, true).then(async (res) => {
        await res.arrayBuffer();
        if (res.ok) latencies.push(performance.now() - due); else failed++;
      }, () => { failed++; }));
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(pending);
  return { latencies, failed, achieved: total / ((performance.now() - start) / 1000) };
}

export async function clusterBench(s: Services, options: { quick?: boolean }): Promise<Row[]> {
  const rows: Row[] = [];
  const quick = options.quick ?? false;
  const commands = quick ? 500 : 6_000;
  const cpuPerCommand = new Map<number, number>();
  const plural = (count: number) => `${count} node${count > 1 ? 's' : ''}`;
  for (const count of quick ? [1, 3] : [1, 2, 3]) {
    const prefix = `bench${randomUUID().slice(0, 6)}`;
    const nodes: NodeProcess[] = [];
    try {
      for (let i = 1; i <= count; i++) nodes.push(await startNodeProcess(FIXTURE, env(s, prefix, `b${i}`), 60_000));
      await new Promise((r) => setTimeout(r, 3_000)); // let the group settle after the last join
      const ids = Array.from({ length: 500 }, (_, i) => `${prefix}-e${i}`);
      await drive(nodes, ids.length, 32, true, ids); // activate every entity
      // Every request waits for its outcome from the owning node, so completions are handled commands.
      const cpuBefore = await cpuSeconds(nodes);
      const load = await drive(nodes, commands, 128, true, ids);
      const cpu = (await cpuSeconds(nodes)) - cpuBefore;
      const handled = commands - load.failed;
      cpuPerCommand.set(count, (cpu * 1000) / handled);
      const timed = await drive(nodes, quick ? 200 : 2_000, 32, true, ids);
      const failures = (n: number) => (n ? `; ${n} failed` : '');
      rows.push(
        { bench: 'cluster', case: `commands/s end to end through Kafka and PostgreSQL, ${plural(count)}`, value: Math.round(handled / load.seconds), unit: 'cmd/s', note: `${commands} HTTP commands, 128 in flight, each answered once handled${failures(load.failed)}`, goal: count === 1 ? GOALS.clusterCommands1 : undefined },
        { bench: 'cluster', case: `CPU per command, ${plural(count)}`, value: round((cpu * 1000) / handled), unit: 'ms', note: `process CPU time of all nodes (process_cpu_seconds_total) / ${handled} commands handled` },
        { bench: 'cluster', case: `tell→handled p50, ${plural(count)}`, value: round(percentile(timed.latencies, 50)), unit: 'ms', note: `HTTP request that waits for the outcome, 32 concurrent${failures(timed.failed)}` },
        { bench: 'cluster', case: `tell→handled p99, ${plural(count)}`, value: round(percentile(timed.latencies, 99)), unit: 'ms', note: `HTTP request that waits for the outcome, 32 concurrent${failures(timed.failed)}` },
      );
      if (count === 1) {
        const rate = 1_000;
        const p = await paced(nodes[0]!, quick ? 1_000 : 10_000, rate, ids);
        const note = `${p.latencies.length + p.failed} commands offered at ${rate}/s (${Math.round(p.achieved)}/s until the last was answered), from when each was due${failures(p.failed)}`;
        rows.push(
          { bench: 'cluster', case: 'tell→handled p50 paced at 1,000/s, 1 node', value: round(percentile(p.latencies, 50)), unit: 'ms', note },
          { bench: 'cluster', case: 'tell→handled p99 paced at 1,000/s, 1 node', value: round(percentile(p.latencies, 99)), unit: 'ms', note, goal: GOALS.clusterPacedP99 },
        );
      }
      if (count === 2) rows.push(...await joinPause(s, prefix, nodes, ids));
    } finally {
      await Promise.all(nodes.map((n) => n.kill('SIGTERM')));
    }
  }
  rows.push({
    bench: 'cluster', case: 'CPU per command, 3 nodes / 1 node', value: round(cpuPerCommand.get(3)! / cpuPerCommand.get(1)!), unit: '×',
    note: 'all nodes\' process CPU time per command handled, same load', goal: GOALS.cpuPerCommand3vs1,
  });
  if (quick) rows.push({ bench: 'cluster', case: 'commands/s with 2 nodes, and the pause while a third joins', value: Number.NaN, unit: '', note: 'not measured with --quick', skipped: true });
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

/**
 * A third node joins a running pair: how long is each shard's handling paused? Shards
 * that move to the new node and shards that stay are reported apart (a stayed shard
 * should barely notice the join; a moved one waits for its hand-off).
 */
async function joinPause(s: Services, prefix: string, nodes: NodeProcess[], ids: string[]): Promise<Row[]> {
  const completions = new Map<number, number[]>();
  const shardOfId = (id: string) => shardOf({ kind: 'counter', id }, { shards: SHARDS, placementRes: 4 });
  let running = true;
  const load = Promise.all(Array.from({ length: 16 }, async (_, w) => {
    for (let i = w; running; i += 16) {
      const id = ids[i % ids.length]!;
      const res = await fetch(`${nodes[i % nodes.length]!.url}/counter/${id}/add?n=0&wait=1`, { method: 'POST' }).catch(() => undefined);
      await res?.arrayBuffer();
      if (res?.ok) completions.set(shardOfId(id), [...(completions.get(shardOfId(id)) ?? []), performance.now()]);
    }
  }));
  await new Promise((r) => setTimeout(r, 1_500));
  const joinStart = performance.now();
  const third = await startNodeProcess(FIXTURE, env(s, prefix, 'b3'), 60_000);
  await new Promise((r) => setTimeout(r, 8_000));
  running = false;
  await load;
  const end = performance.now();
  const moved = new Set((await clusterView(third)).shards.filter((x) => x.node === 'b3').map((x) => x.shard));
  await third.kill('SIGTERM');
  // The longest stretch without a handled command, from the join's start to the end of the load.
  const pause = (shard: number) => {
    const times = [joinStart, ...(completions.get(shard) ?? []).filter((c) => c >= joinStart), end].sort((x, y) => x - y);
    let gap = 0;
    for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i]! - times[i - 1]!);
    return gap;
  };
  const shards = Array.from({ length: SHARDS }, (_, i) => i);
  const longest = (list: number[]) => Math.round(Math.max(0, ...list.map(pause)));
  const note = (n: number) => `${n} of ${SHARDS} shards; the longest stretch without a handled command on one shard, 16 clients, 8 s after the join began`;
  return [
    { bench: 'cluster', case: 'longest pause of a shard that moved while a node joins (2→3)', value: longest(shards.filter((x) => moved.has(x))), unit: 'ms', note: note(moved.size) },
    { bench: 'cluster', case: 'longest pause of a shard that stayed while a node joins (2→3)', value: longest(shards.filter((x) => !moved.has(x))), unit: 'ms', note: note(SHARDS - moved.size) },
  ];
}

const ADMIN = await new SignJWT({ role: 'admin' }).setProtectedHeader({ alg: 'HS256' }).setSubject('bench')
  .setIssuer('dispatch').setIssuedAt().setExpirationTime('1h').sign(new TextEncoder().encode('bench-secret-of-sufficient-length'));

async function clusterView(node: NodeProcess): Promise<{ shards: { shard: number; node: string | null }[] }> {
  const res = await fetch(`${node.url}/v1/admin/cluster`, { headers: { authorization: `Bearer ${ADMIN}` } });
  if (!res.ok) throw new Error(`cluster view: ${res.status}`);
  return res.json() as Promise<{ shards: { shard: number; node: string | null }[] }>;
}

const round = (x: number) => Math.round(x * 100) / 100;

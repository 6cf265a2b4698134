// Cluster benchmarks on real Kafka, PostgreSQL and Redis with 1, 2 and 3 node
// processes: commands per second end to end (HTTP -> Kafka -> owning node ->
// journal), tell-to-handled latency, the pause when a node joins, and shards moved
// by a join compared with a round-robin assignment of the same membership change.

import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNodeProcess, type NodeProcess } from '../test/helpers/node-process.ts';
import { SignJWT } from 'jose';
import { movedShards, placeShards } from '../runtime/placement.ts';
import { shardOf } from '../runtime/entity.ts';
import { percentile, type Row } from './stats.ts';


const FIXTURE = 'test/fixtures/counter-node.ts';
const SHARDS = 32;

interface Services { kafka: string; database: string; redis: string }

function env(s: Services, prefix: string, nodeId: string): Record<string, string> {
  return {
    MODE: 'cluster', KAFKA_BROKERS: s.kafka, DATABASE_URL: s.database, REDIS_URL: s.redis,
    JWT_SECRET: 'bench-secret-of-sufficient-length', QUOTE_SECRET: 'bench-quote-key-shared-by-every-node', KAFKA_TOPIC_PREFIX: prefix, SHARDS: String(SHARDS),
    KAFKA_SESSION_TIMEOUT_MS: '6000', LOG_LEVEL: 'warn', NODE_ID: nodeId, DATA_DIR: mkdtempSync(join(tmpdir(), 'bench-')),
  };
}

async function drive(nodes: NodeProcess[], total: number, concurrency: number, wait: boolean, ids: string[]) {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < total) {
      const i = next++;
      const node = nodes[i % nodes.length]!;
      const t0 = performance.now();
      const res = await fetch(`${node.url}/counter/${ids[i % ids.length]}/add?n=1${wait ? '&wait=1' : ''}`, { method: 'POST' });
      await res.arrayBuffer();
      if (!res.ok) throw new Error(`add: ${res.status}`);
      latencies.push(performance.now() - t0);
    }
  }));
  return { seconds: (performance.now() - started) / 1000, latencies };
}

export async function clusterBench(s: Services, options: { quick?: boolean }): Promise<Row[]> {
  const rows: Row[] = [];
  const commands = options.quick ? 1_000 : 6_000;
  for (const count of [1, 2, 3]) {
    const prefix = `bench${randomUUID().slice(0, 6)}`;
    const nodes: NodeProcess[] = [];
    try {
      for (let i = 1; i <= count; i++) nodes.push(await startNodeProcess(FIXTURE, env(s, prefix, `b${i}`), 60_000));
      await new Promise((r) => setTimeout(r, 3_000)); // let the group settle after the last join
      const ids = Array.from({ length: 500 }, (_, i) => `${prefix}-e${i}`);
      await drive(nodes, ids.length, 32, true, ids); // activate every entity
      // Every request waits for its outcome from the owning node, so completions are handled commands.
      const load = await drive(nodes, commands, 128, true, ids);
      const timed = await drive(nodes, options.quick ? 500 : 2_000, 32, true, ids);
      rows.push(
        { bench: 'cluster', case: `commands/s end to end, ${count} node${count > 1 ? 's' : ''}`, value: Math.round(commands / load.seconds), unit: 'cmd/s', note: `${commands} HTTP commands, 128 in flight, each answered once handled` },
        { bench: 'cluster', case: `tell→handled p50, ${count} node${count > 1 ? 's' : ''}`, value: round(percentile(timed.latencies, 50)), unit: 'ms', note: 'HTTP request that waits for the outcome, 32 concurrent' },
        { bench: 'cluster', case: `tell→handled p99, ${count} node${count > 1 ? 's' : ''}`, value: round(percentile(timed.latencies, 99)), unit: 'ms', note: 'HTTP request that waits for the outcome, 32 concurrent' },
      );
      if (count === 2) rows.push(...await joinPause(s, prefix, nodes, ids));
    } finally {
      await Promise.all(nodes.map((n) => n.kill('SIGTERM')));
    }
  }
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

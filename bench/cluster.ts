// Cluster benchmarks on real Kafka, PostgreSQL and Redis with 1, 2 and 3 node
// processes: commands per second end to end (HTTP -> Kafka -> owning node ->
// journal), tell-to-handled latency, the pause when a node joins, and shards moved
// by a join compared with a round-robin assignment of the same membership change.

import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNodeProcess, type NodeProcess } from '../test/helpers/node-process.ts';
import { movedShards, placeShards } from '../runtime/placement.ts';
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
      if (count === 2) rows.push(await joinPause(s, prefix, nodes, ids));
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

/** A third node joins a running pair: how long are commands not being handled? */
async function joinPause(s: Services, prefix: string, nodes: NodeProcess[], ids: string[]): Promise<Row> {
  const completions: number[] = [];
  let running = true;
  const load = Promise.all(Array.from({ length: 16 }, async (_, w) => {
    for (let i = w; running; i += 16) {
      const res = await fetch(`${nodes[i % nodes.length]!.url}/counter/${ids[i % ids.length]}/add?n=0&wait=1`, { method: 'POST' }).catch(() => undefined);
      await res?.arrayBuffer();
      if (res?.ok) completions.push(performance.now());
    }
  }));
  await new Promise((r) => setTimeout(r, 1_500));
  const joinStart = performance.now();
  const third = await startNodeProcess(FIXTURE, env(s, prefix, 'b3'), 60_000);
  await new Promise((r) => setTimeout(r, 8_000));
  running = false;
  await load;
  await third.kill('SIGTERM');
  const during = completions.filter((c) => c >= joinStart).sort((a, b) => a - b);
  let gap = 0;
  for (let i = 1; i < during.length; i++) gap = Math.max(gap, during[i]! - during[i - 1]!);
  return { bench: 'cluster', case: 'longest pause in handling while a node joins (2→3)', value: Math.round(gap), unit: 'ms', note: 'eager rebalance: every member stops, rejoins and resumes' };
}

const round = (x: number) => Math.round(x * 100) / 100;

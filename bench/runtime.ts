// Runtime benchmarks: commands per second through the in-process command log to
// persistent entities, tell-to-handled latency, and recovery time of an entity
// with a long journal, with and without a snapshot. Each storage is measured in
// the same run, so the ratios hold on a noisy machine.

import { randomUUID } from 'node:crypto';
import { MemoryJournal } from '../adapters/memory/journal.ts';
import { MemoryReminderStore } from '../adapters/memory/reminders.ts';
import { InProcessCommandLog } from '../adapters/file/command-log.ts';
import { InProcessNotifier } from '../adapters/memory/notifier.ts';
import { startEmbeddedPostgres } from '../adapters/postgres/embedded.ts';
import { PostgresJournal } from '../adapters/postgres/journal.ts';
import { openOrm } from '../adapters/postgres/orm.ts';
import { ShardHost } from '../runtime/shard-host.ts';
import { ShardRegion } from '../runtime/region.ts';
import type { Journal } from '../runtime/ports.ts';
import { counter } from '../test/fixtures/counter.ts';
import { percentile, type Row } from './stats.ts';

async function region(journal: Journal, snapshotEvery = 0) {
  const host = new ShardHost({
    journal, behaviors: [counter as never], passivateAfterMs: 600_000, maxActiveEntities: 1_000_000,
    maxConcurrentRecoveries: 50, snapshotEvery,
  });
  const r = new ShardRegion({
    nodeId: 'bench', placement: { shards: 32, placementRes: 4 }, log: new InProcessCommandLog({ shards: 32, nodeId: 'bench' }),
    host, reminders: new MemoryReminderStore(), notifier: new InProcessNotifier(), askTimeoutMs: 60_000,
  });
  await r.start();
  return r;
}

async function throughput(name: string, journal: Journal, commands: number, entities: number, timed = 5_000): Promise<Row[]> {
  const r = await region(journal);
  const prefix = randomUUID().slice(0, 6);
  const ids = Array.from({ length: entities }, (_, i) => ({ kind: 'counter', id: `${prefix}-${i}` }));
  // Warm up: activate every entity once.
  await Promise.all(ids.map((to) => r.request(to, { type: 'add', n: 0 })));
  const started = performance.now();
  const window = 2_000;
  let next = 0;
  await Promise.all(Array.from({ length: window }, async () => {
    while (next < commands) {
      const i = next++;
      await r.request(ids[i % entities]!, { type: 'add', n: 1 });
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  // Latency at a moderate load: 50 concurrent requesters.
  const latencies: number[] = [];
  let k = 0;
  await Promise.all(Array.from({ length: 50 }, async () => {
    while (k < timed) {
      const i = k++;
      const t0 = performance.now();
      await r.request(ids[i % entities]!, { type: 'add', n: 1 });
      latencies.push(performance.now() - t0);
    }
  }));
  await r.stop();
  return [
    { bench: 'runtime', case: `commands/s, ${name}`, value: Math.round(commands / seconds), unit: 'cmd/s', note: `${commands} commands to ${entities} entities of the test counter (one journal row each): the runtime alone, not a dispatch command` },
    { bench: 'runtime', case: `tell→handled p50, ${name}`, value: round(percentile(latencies, 50)), unit: 'ms', note: '50 concurrent requesters' },
    { bench: 'runtime', case: `tell→handled p99, ${name}`, value: round(percentile(latencies, 99)), unit: 'ms', note: '50 concurrent requesters' },
  ];
}

async function recovery(name: string, journal: Journal, events: number): Promise<Row[]> {
  const rows: Row[] = [];
  for (const snapshotEvery of [0, 100]) {
    const id = `recover-${randomUUID().slice(0, 6)}`;
    const writer = await region(journal, snapshotEvery);
    for (let i = 0; i < events; i++) await writer.request({ kind: 'counter', id }, { type: 'add', n: 1 });
    // Abandoned, not stopped: a graceful stop would snapshot every entity, and the
    // point is to measure replay of the journal tail as after a crash.
    const times: number[] = [];
    for (let round = 0; round < 5; round++) {
      const reader = await region(journal, snapshotEvery);
      const t0 = performance.now();
      const state = await reader.ask<{ total: number }>({ kind: 'counter', id }, { type: 'get' });
      times.push(performance.now() - t0);
      if (state.total !== events) throw new Error(`recovered ${state.total}, expected ${events}`);
      // Abandoned too: stopping would snapshot, and the next round must replay the same tail.
    }
    rows.push({
      bench: 'runtime', case: `recover ${events} events ${snapshotEvery ? 'with snapshot' : 'no snapshot'}, ${name}`,
      value: round(percentile(times, 50)), unit: 'ms', note: 'median of 5 cold activations',
    });
  }
  return rows;
}

const round = (x: number) => Math.round(x * 100) / 100;

export async function runtimeBench(options: { databaseUrl?: string; quick?: boolean }): Promise<Row[]> {
  const commands = options.quick ? 2_000 : 50_000;
  // --quick: fewer timed commands and a shorter journal to recover (it is a smoke run of two minutes).
  const timed = options.quick ? 1_000 : 5_000;
  const events = options.quick ? 200 : 1_000;
  const rows: Row[] = [];
  rows.push(...await throughput('in-memory journal', new MemoryJournal(), commands, 1_000, timed));

  const embedded = await startEmbeddedPostgres({ dataDir: `/tmp/dispatch-bench-pglite-${process.pid}` });
  const pgliteOrm = await openOrm({ url: embedded.url, poolMax: 1 });
  const pglite = new PostgresJournal(pgliteOrm);
  rows.push(...await throughput('PGlite (embedded)', pglite, Math.min(commands, 10_000), 1_000, timed));
  rows.push(...await recovery('PGlite (embedded)', pglite, events));
  await pgliteOrm.close(true);
  await embedded.stop();

  if (options.databaseUrl) {
    const orm = await openOrm({ url: options.databaseUrl, poolMax: 10 });
    const pg = new PostgresJournal(orm);
    rows.push(...await throughput('PostgreSQL', pg, commands, 1_000, timed));
    rows.push(...await recovery('PostgreSQL', pg, events));
    await orm.close(true);
  }
  return rows;
}

// `npm run bench`: runs every benchmark in one process and writes bench/RESULTS.md
// with the machine and the command, each of issue 14's goals beside the row that
// measures it (goal, pass/FAIL), then the README's figures table from it
// (bench/readme-table.ts). `npm run bench -- --quick` for a smoke run (under two
// minutes; it skips the slowest rows with a note and writes nothing).

import { cpus, totalmem } from 'node:os';
import { writeFileSync } from 'node:fs';
import { goalSummary, markdownTable, type Row } from './stats.ts';
import { runtimeBench } from './runtime.ts';
import { clusterBench } from './cluster.ts';
import { wsMemoryBench } from './ws-memory.ts';
import { dispatchBench, kafkaIngestBench, memoryBench } from './dispatch.ts';
import { projectionsBench } from './projections.ts';
import { updateReadme } from './readme-table.ts';

const quick = process.argv.includes('--quick');
const databaseUrl = process.env.DATABASE_URL;
const rows: Row[] = [];
const started = new Date();

const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
const timings: string[] = [];
async function section(name: string, run: () => Promise<Row[]>): Promise<void> {
  const t0 = performance.now();
  rows.push(...await run());
  timings.push(`${name} ${Math.round((performance.now() - t0) / 1000)} s`);
  console.error(`bench: ${name} done in ${Math.round((performance.now() - t0) / 1000)} s`);
}
const wants = (name: string) => !only || only === name;

if (wants('runtime')) await section('runtime', () => runtimeBench({ databaseUrl, quick }));
if (wants('dispatch')) await section('dispatch', () => dispatchBench({ redisUrl: process.env.REDIS_URL, quick }));
if (wants('dispatch') && process.env.KAFKA_BROKERS) await section('dispatch (Kafka)', () => kafkaIngestBench(process.env.KAFKA_BROKERS!, { quick }));
if (wants('memory')) await section('memory', () => memoryBench({ quick }));
if (wants('memory')) await section('memory (WebSocket)', () => wsMemoryBench({ quick }));
if (wants('cluster') && databaseUrl && process.env.KAFKA_BROKERS && process.env.REDIS_URL) {
  await section('cluster', () => clusterBench({ kafka: process.env.KAFKA_BROKERS!, database: databaseUrl, redis: process.env.REDIS_URL! }, { quick }));
} else if (wants('cluster')) {
  console.error('cluster benchmarks skipped: DATABASE_URL, KAFKA_BROKERS and REDIS_URL are needed (npm run bench goes through .ci/with-services.sh)');
}
if (wants('projections')) await section('projections', () => projectionsBench({ databaseUrl, quick }));

const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
const seconds = Math.round((Date.now() - started.getTime()) / 1000);
const report = [
  '# Benchmark results',
  '',
  `Measured ${started.toISOString()} on ${machine}, in ${seconds} s (${timings.join(', ')}).`,
  `Command: \`npm run bench${quick || only ? ` --${quick ? ' --quick' : ''}${only ? ` --only=${only}` : ''}` : ''}\` (services from .ci/with-services.sh: PostgreSQL, Redis, Kafka ${'3.9.1'} on this machine)`,
  '',
  `Issue 14's goals: **${goalSummary(rows)}**.`,
  '',
  markdownTable(rows),
  '',
].join('\n');
console.log(report);
// Only a whole run replaces RESULTS.md (and the README's table from it): `--only` or
// `--quick` would drop the other benches' rows.
if (!quick && !only) {
  writeFileSync(new URL('./RESULTS.md', import.meta.url), report);
  updateReadme();
} else if (!quick) writeFileSync(new URL(`./RESULTS-${only}.md`, import.meta.url), report);
process.exit(0);

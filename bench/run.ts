// `npm run bench`: runs every benchmark in one process and writes bench/RESULTS.md
// with the machine and the command. `npm run bench -- --quick` for a smoke run.

import { cpus, totalmem } from 'node:os';
import { writeFileSync } from 'node:fs';
import { markdownTable, type Row } from './stats.ts';
import { runtimeBench } from './runtime.ts';
import { clusterBench } from './cluster.ts';
import { dispatchBench, kafkaIngestBench, memoryBench } from './dispatch.ts';
import { projectionsBench } from './projections.ts';

const quick = process.argv.includes('--quick');
const databaseUrl = process.env.DATABASE_URL;
const rows: Row[] = [];
const started = new Date();

const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
if (!only || only === 'runtime') rows.push(...await runtimeBench({ databaseUrl, quick }));
if (!only || only === 'dispatch') rows.push(...await dispatchBench({ redisUrl: process.env.REDIS_URL, quick }));
if ((!only || only === 'dispatch') && process.env.KAFKA_BROKERS) rows.push(...await kafkaIngestBench(process.env.KAFKA_BROKERS, { quick }));
if (!only || only === 'memory') rows.push(...await memoryBench({ quick }));
if ((!only || only === 'cluster') && databaseUrl && process.env.KAFKA_BROKERS && process.env.REDIS_URL) {
  rows.push(...await clusterBench({ kafka: process.env.KAFKA_BROKERS, database: databaseUrl, redis: process.env.REDIS_URL }, { quick }));
} else if (!only || only === 'cluster') {
  console.error('cluster benchmarks skipped: DATABASE_URL, KAFKA_BROKERS and REDIS_URL are needed (npm run bench goes through .ci/with-services.sh)');
}
if (!only || only === 'projections') rows.push(...await projectionsBench({ databaseUrl, quick }));

const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
const report = [
  '# Benchmark results',
  '',
  `Measured ${started.toISOString()} on ${machine}.`,
  `Command: \`npm run bench${quick ? ' -- --quick' : ''}\` (services from .ci/with-services.sh: PostgreSQL, Redis, Kafka ${'3.9.1'} on this machine)`,
  '',
  markdownTable(rows),
  '',
].join('\n');
console.log(report);
// Only a whole run replaces RESULTS.md: `--only` or `--quick` would drop the other benches' rows.
if (!quick && !only) writeFileSync(new URL('./RESULTS.md', import.meta.url), report);
else if (!quick) writeFileSync(new URL(`./RESULTS-${only}.md`, import.meta.url), report);
process.exit(0);

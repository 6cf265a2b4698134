// `npm run bench` (.ci/bench.sh): every benchmark, then bench/RESULTS.md with the machine,
// the command, the services that answered with their versions (read from them), each of
// issue 23's goals beside the row that measures it (pass/FAIL), and the README's figures
// table from it (bench/readme-table.ts).
//
// A service that does not answer fails the run with one line naming it, before anything
// is measured; `--allow-missing` runs without it instead, marks its rows "not run" and
// leaves their goals out of the count, visibly. Only a full run with every service
// rewrites RESULTS.md and the README's table.
//
//   npm run bench -- --quick              smoke run on small sizes (a few minutes); writes nothing
//   npm run bench -- --only=nearest       one section (runtime, nearest, fixes, memory, node, cluster,
//                                         projections); writes bench/RESULTS-<section>.md
//   npm run bench -- --allow-missing      run without the services that do not answer

import { cpus, totalmem } from 'node:os';
import { writeFileSync } from 'node:fs';
import { GOALS } from './goals.ts';
import { goalSummary, markdownTable, notRun, type Row } from './stats.ts';
import { probeServices, servicesLine, type ServiceName } from './services.ts';
import { updateReadme } from './readme-table.ts';

const SECTIONS = ['runtime', 'nearest', 'fixes', 'memory', 'node', 'cluster', 'projections'] as const;
type Section = typeof SECTIONS[number];

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const allowMissing = args.includes('--allow-missing');
const only = args.find((a) => a.startsWith('--only='))?.slice('--only='.length) as Section | undefined;
const unknown = args.filter((a) => !['--quick', '--allow-missing'].includes(a) && !a.startsWith('--only='));
if (unknown.length > 0 || (only && !SECTIONS.includes(only))) {
  console.error(`bench: unknown argument ${unknown[0] ?? `--only=${only}`}; use --quick, --allow-missing, --only=${SECTIONS.join('|')}`);
  process.exit(2);
}
const wants = (name: Section) => !only || only === name;

/** The services each section asks; a section runs with the others "not run" only under --allow-missing. */
const NEEDS: Record<Section, readonly ServiceName[]> = {
  runtime: ['PostgreSQL'], nearest: ['Redis', 'PostGIS'], fixes: ['Kafka'], memory: [], node: [],
  cluster: ['PostgreSQL', 'Redis', 'Kafka'], projections: ['PostgreSQL'],
};

const services = await probeServices(process.env);
const missing = new Set(services.filter((s) => !s.version).map((s) => s.name));
const needed = new Set(SECTIONS.filter(wants).flatMap((s) => NEEDS[s]));
const missingNeeded = services.filter((s) => !s.version && needed.has(s.name));
if (missingNeeded.length > 0 && !allowMissing) {
  console.error(`bench: ${missingNeeded.map((s) => s.why).join('; ')} (run with --allow-missing to mark its rows "not run")`);
  process.exit(1);
}
console.error(`bench: services: ${servicesLine(services)}`);

const rows: Row[] = [];
const started = new Date();
const timings: string[] = [];
const failures: string[] = [];
async function section(name: Section, run: () => Promise<Row[]>): Promise<void> {
  if (!wants(name)) return;
  const t0 = performance.now();
  console.error(`bench: ${name}...`);
  try {
    rows.push(...await run());
  } catch (error) {
    // A failed assertion (applied ≠ sent, an answer the peers disagree on...) fails the run: nothing is written.
    failures.push(`${name}: ${(error as Error)?.stack ?? error}`);
    console.error(`bench: ${name} FAILED: ${(error as Error)?.stack ?? error}`);
  }
  const seconds = Math.round((performance.now() - t0) / 1000);
  timings.push(`${name} ${seconds} s`);
  console.error(`bench: ${name} done in ${seconds} s`);
}

const env = process.env;
const has = (s: ServiceName) => !missing.has(s);
await section('runtime', async () => (await import('./runtime.ts')).runtimeBench({ databaseUrl: has('PostgreSQL') ? env.DATABASE_URL : undefined, quick }));
await section('nearest', async () => (await import('./nearest.ts')).nearestBenches({
  redisUrl: has('Redis') ? env.REDIS_URL : undefined, databaseUrl: has('PostGIS') ? env.DATABASE_URL : undefined, quick, missing,
}));
await section('fixes', async () => (await import('./fixes.ts')).fixBench({ quick, kafka: has('Kafka') ? env.KAFKA_BROKERS : undefined, missing }));
await section('memory', async () => (await import('./memory.ts')).memoryBench({ quick }));
await section('node', async () => (await import('./node.ts')).nodeBench({ quick }));
await section('cluster', async () => {
  const lacking = (['PostgreSQL', 'Redis', 'Kafka'] as const).filter((s) => missing.has(s));
  if (lacking.length > 0) {
    const service = lacking.join(', ');
    return [
      notRun(service, { bench: 'cluster', case: 'dispatch commands/s end to end through Kafka and PostgreSQL, 1 node', unit: 'cmd/s', goal: GOALS.clusterCommands1 }),
      notRun(service, { bench: 'cluster', case: 'dispatch command round trip paced at 1,000/s, 1 node p99', unit: 'ms', goal: GOALS.clusterPacedP99 }),
      notRun(service, { bench: 'cluster', case: 'node CPU per dispatch command, 3 nodes / 1 node', unit: '×', goal: GOALS.cpuPerCommand3vs1 }),
    ];
  }
  return (await import('./cluster.ts')).clusterBench({ kafka: env.KAFKA_BROKERS!, database: env.DATABASE_URL!, redis: env.REDIS_URL! }, { quick });
});
await section('projections', async () => {
  if (missing.has('PostgreSQL')) {
    return [
      notRun('PostgreSQL', { bench: 'projections', case: 'projection lag, 200 bookings/s offered, p99', unit: 'ms', goal: GOALS.projectionLagP99 }),
      notRun('PostgreSQL', { bench: 'projections', case: 'rebuild analytics, 100000 bookings, ratio Projector / SQL peer', unit: '×', goal: GOALS.analyticsVsSql }),
    ];
  }
  return (await import('./projections.ts')).projectionsBench({ databaseUrl: env.DATABASE_URL, quick });
});

// Every goal of issue 23 is marked: one no row of this run measured shows as not measured.
if (!only) {
  const held = new Set(rows.map((r) => r.goal?.text && r.goal));
  for (const [name, goal] of Object.entries(GOALS)) {
    if (!held.has(goal)) rows.push({ bench: 'goals', case: `${name}: not measured in this run`, value: Number.NaN, unit: '', goal, skipped: true, note: quick ? 'not measured with --quick' : 'no row measured it' });
  }
}

/** The closing note issue 22 asks for: nearest at each size, ours and every peer side by side, from this run's rows. */
function nearestSideBySide(all: readonly Row[]): string[] {
  const sizes = [...new Set(all.map((r) => /^nearest k=10 3 km, (\S+) drivers over/.exec(r.case)?.[1]).filter((x): x is string => !!x))];
  if (sizes.length === 0) return [];
  const v = (size: string, name: string) => {
    const row = all.find((r) => r.case.startsWith(`nearest k=10 3 km, ${size} drivers over`) && r.case.endsWith(`: ${name}`));
    return row && Number.isFinite(row.value) ? row.value.toLocaleString('en-US') : '—';
  };
  const pair = (size: string, who: string) => `${v(size, `${who} p50`)} / ${v(size, `${who} p99`)}`;
  /** A peer's version, as its p50 row's note opens with it. */
  const version = (who: string) => {
    const row = all.find((r) => r.case.endsWith(`: ${who} p50`) && r.note);
    return row && !row.missing ? ` (${row.note!.split(';')[0]})` : '';
  };
  return [
    '## Nearest, side by side',
    '',
    'k=10 within 3 km over the city, the same queries interleaved query by query; p50 / p99 in µs (Redis: the client round trip, and its server time per query from INFO commandstats).',
    '',
    `| drivers | ours | Redis, widening radius${version('Redis GEOSEARCH, widening radius')} | Redis server per query | PostGIS KNN${version('PostGIS KNN (GiST)')} | in-process static index${version('in-process static index')} |`,
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...sizes.map((n) => `| ${n} | ${pair(n, 'ours')} | ${pair(n, 'Redis GEOSEARCH, widening radius')} | ${v(n, 'Redis server time per query (mean)')} | ${pair(n, 'PostGIS KNN (GiST)')} | ${pair(n, 'in-process static index')} |`),
    '',
  ];
}

const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
const seconds = Math.round((Date.now() - started.getTime()) / 1000);
const command = `npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}`;
const report = [
  '# Benchmark results',
  '',
  `Measured ${started.toISOString()} on ${machine}, in ${seconds} s (${timings.join(', ')}).`,
  `Command: \`${command}\`. Services that answered, with the versions they report: ${servicesLine(services)}.`,
  '',
  `Issue 23's goals: **${goalSummary(rows)}**.`,
  '',
  markdownTable(rows),
  '',
  ...nearestSideBySide(rows),
  ...failures.length ? ['## Failed', '', ...failures.map((f) => `- ${f.split('\n')[0]}`), ''] : [],
].join('\n');
console.log(report);
if (failures.length > 0) {
  console.error(`bench: ${failures.length} section(s) failed; nothing written`);
  process.exit(1);
}
// Only a whole run with every service replaces RESULTS.md and the README's table: `--only`,
// `--quick` or a missing service would drop or blank rows.
if (!quick && !only && missing.size === 0) {
  writeFileSync(new URL('./RESULTS.md', import.meta.url), report);
  updateReadme();
  console.error('bench: wrote bench/RESULTS.md and the README\'s table');
} else if (!quick && only) {
  writeFileSync(new URL(`./RESULTS-${only}.md`, import.meta.url), report);
  console.error(`bench: wrote bench/RESULTS-${only}.md (the README's table comes only from a full run)`);
} else {
  console.error(`bench: nothing written (${quick ? '--quick' : `missing: ${[...missing].join(', ')}`})`);
}
process.exit(0);

// `npm run simulate -- --compare`: greedy against batched dispatch (issue 25) on the same seeded
// city and booking stream, at three loads sized from the fleet (scripts/compare-capacity.ts).
// Each (load, mode) gets a fresh embedded node of its own, a child process on a free port with
// that mode's DISPATCH_MODE, in-memory nothing: its DATA_DIR is a temporary directory removed
// afterwards, and the shared services a CI shell exports (DATABASE_URL, REDIS_URL, KAFKA_BROKERS)
// are kept from it, so every run starts equal. The simulator (scripts/simulate.ts) runs against it
// as a child too; runs go one after the other so they do not share the CPU.
//
// It prints a table per load with the issue's goals, pass or fail, and writes under COMPARE_OUT
// (the repository by default): bench/results/dispatch-compare.json (every figure and raw sample),
// bench/RESULTS-dispatch.md (the tables, the command, the machine, the date) and
// bench/results/dispatch-compare.png (bench/dispatch-plot.ts). Every child is killed, and every
// temporary directory removed, when it ends, also on failure or Ctrl-C.
//
// A node that does not know DISPATCH_MODE yet (before batched dispatch lands) runs greedy in
// both columns: the compare says so, and the table then shows the noise between two runs.
//
//   knobs: COMPARE_DRIVERS (60), COMPARE_SECONDS (75, booking time per run), COMPARE_WARMUP_S (20, left out
//   of the figures), COMPARE_LOADS (light,busy,near), COMPARE_MODES (greedy,batched), SEED (1), SPEEDUP (20),
//   DISPATCH_BATCH_MS (2000), DISPATCH_BATCH_CONTENTION (3), COMPARE_DEADLINE_MS (30000, the nodes' DISPATCH_DEADLINE_MS), COMPARE_CAPACITY_PER_MIN
//   (computed), COMPARE_SCHEDULED_SHARE (0.1), COMPARE_OUT (where bench/ is written; the repository)
//   Six runs of about 95 s each: about 10 minutes on 2 cores.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import { cpus, platform, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { eventually, startCommand, START_BOUND_MS } from '../test/helpers/node-process.ts';
import { fileURLToPath } from 'node:url';
import { isVariable } from '../config/variables.ts';
import { dispatchPlot } from '../bench/dispatch-plot.ts';
import { encodePng } from '../bench/png.ts';
import { capacity } from './compare-capacity.ts';
import { loadTable, type CompareRun, type Verdict } from './compare-report.ts';
import type { SimResult } from './sim-metrics.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

const num = (name: string, fallback: number): number => {
  const raw = process.env[name];
  const value = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isFinite(value) || value < 0) { console.error(`${name} must be a number >= 0 (got ${raw})`); process.exit(2); }
  return value;
};
const list = (name: string, fallback: string) => (process.env[name] || fallback).split(',').map((s) => s.trim()).filter(Boolean);

const DRIVERS = Math.max(1, Math.round(num('COMPARE_DRIVERS', 60)));
const SECONDS = Math.max(5, num('COMPARE_SECONDS', 75));
// The fleet starts idle and spread out: the first seconds of bookings are left out of the figures.
const WARMUP_S = Math.min(num('COMPARE_WARMUP_S', 20), SECONDS / 2);
// A rider gives up after this long searching (real time; 10 simulated minutes at SPEEDUP 20), so no_driver can happen in a run.
const DEADLINE_MS = num('COMPARE_DEADLINE_MS', 30_000);
const SEED = Math.floor(num('SEED', 1));
const SPEEDUP = Math.max(num('SPEEDUP', 20), 0.1);
const BATCH_MS = num('DISPATCH_BATCH_MS', 2000);
const CONTENTION = num('DISPATCH_BATCH_CONTENTION', 3);
const SCHEDULED_SHARE = Math.min(num('COMPARE_SCHEDULED_SHARE', 0.1), 1);
const OUT = process.env.COMPARE_OUT || ROOT;
/** Loads as shares of what the fleet can serve: near capacity is the issue's 80-90 %. */
const LOAD_SHARE: Readonly<Record<string, number>> = { light: 0.25, busy: 0.55, near: 0.85 };
const LOADS = list('COMPARE_LOADS', 'light,busy,near');
const MODES = list('COMPARE_MODES', 'greedy,batched');
for (const l of LOADS) if (!(l in LOAD_SHARE)) { console.error(`COMPARE_LOADS: ${l} is not one of ${Object.keys(LOAD_SHARE).join(', ')}`); process.exit(2); }
for (const m of MODES) if (!['greedy', 'batched'].includes(m)) { console.error(`COMPARE_MODES: ${m} is not greedy or batched`); process.exit(2); }
// Bookings for later activate within the run: made 25 s ahead, dispatched 10 s before their time.
const SCHEDULE_AHEAD_S = 25;
const SCHEDULE_LEAD_MS = 10_000;
const NODE_START_MS = START_BOUND_MS; // a first start compiles PGlite and runs initdb; a loaded CI machine is slow
const modeKnown = isVariable('DISPATCH_MODE');

// ---- children: every one is killed and every directory removed, whatever ends the compare ----

const children = new Set<ChildProcess>();
const scratch = new Set<string>();

function cleanUp(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
}
process.on('exit', cleanUp);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => { process.stdout.write(`\n${signal}: compare stopped, its nodes killed\n`); process.exit(130); });
}

/** What a child must not inherit: it would make it a cluster member or sign its own tokens. */
const NOT_INHERITED = ['DATABASE_URL', 'REDIS_URL', 'KAFKA_BROKERS', 'JWT_SECRET', 'DATA_DIR', 'PORT', 'URL', 'RESULT_FILE', 'RECORD_FILE'];

/** The environment without NOT_INHERITED. */
function ownEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of NOT_INHERITED) delete env[name];
  return { ...env, ...extra };
}

function launch(args: readonly string[], env: NodeJS.ProcessEnv): { child: ChildProcess; exited: Promise<number | null> } {
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  return { child, exited: watched(child) };
}

/** Killed whatever ends the compare; the promise of its exit code. */
function watched(child: ChildProcess): Promise<number | null> {
  children.add(child);
  return new Promise<number | null>((resolve) => child.once('exit', (code) => { children.delete(child); resolve(code); }));
}

interface Node { readonly url: string; stop(): Promise<void>; readonly log: string }

/** A fresh embedded node for one mode (test/helpers/node-process.ts starts it); resolves once it answers /ready. */
async function startNode(mode: string, dir: string): Promise<Node> {
  const log = join(dir, 'node.log');
  const sink = createWriteStream(log);
  let exited: Promise<number | null> = Promise.resolve(null);
  const node = await startCommand(process.execPath, ['main.ts'], {
    AUTH_DEV_TOKENS: 'true', DATA_DIR: join(dir, 'data'),
    DISPATCH_MODE: mode, DISPATCH_BATCH_MS: String(BATCH_MS), DISPATCH_BATCH_CONTENTION: String(CONTENTION),
    SCHEDULE_LEAD_MS: String(SCHEDULE_LEAD_MS), DISPATCH_DEADLINE_MS: String(DEADLINE_MS),
  }, NODE_START_MS, { unset: NOT_INHERITED, onSpawn: (child) => { exited = watched(child); }, onLine: (line) => sink.write(`${line}\n`) });
  const ready = () => fetch(`${node.url}/ready`, { signal: AbortSignal.timeout(5_000) }).then((r) => r.ok, () => false);
  if (!await eventually(ready, NODE_START_MS, 250)) throw new Error(`node (${mode}) at ${node.url} not ready in ${NODE_START_MS} ms`);
  return {
    url: node.url, log,
    async stop() {
      node.child.kill('SIGTERM');
      const gone = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 20_000))]);
      if (!gone) await node.kill('SIGKILL');
      sink.end();
    },
  };
}

/** The simulator against `url`, its summary passed through indented; its figures from RESULT_FILE. */
async function simulate(url: string, bookingsPerMin: number, resultFile: string): Promise<SimResult> {
  const env = ownEnv({
    URL: url, DRIVERS: String(DRIVERS), BOOKINGS_PER_MIN: bookingsPerMin.toFixed(2), DURATION_S: String(SECONDS),
    WARMUP_S: String(WARMUP_S), SEED: String(SEED),
    SPEEDUP: String(SPEEDUP), SCHEDULED_SHARE: String(SCHEDULED_SHARE), SCHEDULE_AHEAD_S: String(SCHEDULE_AHEAD_S),
    PROGRESS_S: String(Math.max(10, Math.round(SECONDS / 4))), CLEANUP_S: '30', RESULT_FILE: resultFile,
  });
  const { child, exited } = launch(['scripts/simulate.ts'], env);
  createInterface({ input: child.stdout! }).on('line', (line) => process.stdout.write(`    ${line}\n`));
  createInterface({ input: child.stderr! }).on('line', (line) => process.stderr.write(`    ${line}\n`));
  const code = await exited;
  let result: SimResult;
  try {
    result = JSON.parse(readFileSync(resultFile, 'utf8')) as SimResult;
  } catch {
    throw new Error(`the simulator exited with ${code} and wrote no result`);
  }
  // Exit 1 is "some bookings left open": reported in the counts, not a failed run.
  if (code !== 0 && code !== 1) throw new Error(`the simulator exited with ${code}`);
  return result;
}

async function run(load: string, mode: string, bookingsPerMin: number): Promise<CompareRun> {
  const dir = mkdtempSync(join(tmpdir(), `simcompare-${load}-${mode}-`));
  scratch.add(dir);
  const started = Date.now();
  process.stdout.write(`\n  ${load} / ${mode}: ${bookingsPerMin.toFixed(1)} bookings/min, ${DRIVERS} drivers, ${SECONDS} s\n`);
  const node = await startNode(mode, dir);
  try {
    const result = await simulate(node.url, bookingsPerMin, join(dir, 'result.json'));
    return { load, mode, bookingsPerMin, modeApplied: modeKnown || mode === 'greedy', result };
  } finally {
    await node.stop();
    rmSync(dir, { recursive: true, force: true });
    scratch.delete(dir);
    process.stdout.write(`  ${load} / ${mode}: ${Math.round((Date.now() - started) / 1000)} s with the node's start and stop\n`);
  }
}

function machine() {
  const c = cpus();
  return {
    cpus: c.length, cpu: c[0]?.model ?? 'unknown', memoryGB: Math.round(totalmem() / 1e9), os: `${platform()} ${release()}`,
    node: process.version,
  };
}

function command(): string {
  const set = Object.entries({
    COMPARE_DRIVERS: process.env.COMPARE_DRIVERS, COMPARE_SECONDS: process.env.COMPARE_SECONDS, COMPARE_WARMUP_S: process.env.COMPARE_WARMUP_S,
    COMPARE_DEADLINE_MS: process.env.COMPARE_DEADLINE_MS, COMPARE_LOADS: process.env.COMPARE_LOADS,
    COMPARE_MODES: process.env.COMPARE_MODES, SEED: process.env.SEED, SPEEDUP: process.env.SPEEDUP, DISPATCH_BATCH_MS: process.env.DISPATCH_BATCH_MS,
    DISPATCH_BATCH_CONTENTION: process.env.DISPATCH_BATCH_CONTENTION,
    COMPARE_CAPACITY_PER_MIN: process.env.COMPARE_CAPACITY_PER_MIN, COMPARE_SCHEDULED_SHARE: process.env.COMPARE_SCHEDULED_SHARE,
  }).filter(([, v]) => v !== undefined && v !== '').map(([k, v]) => `${k}=${v}`);
  return [...set, 'npm run simulate -- --compare'].join(' ');
}

/** A paragraph as lines of at most `width` characters (the page is read as text too). */
function wrap(text: string, width = 110): string {
  const lines: string[] = [];
  let line = '';
  // A unit stays with its number ("66 %" is not broken between lines).
  for (const word of text.split(/ (?![%²×])/)) {
    if (line && line.length + 1 + word.length > width) { lines.push(line); line = word; } else line = line ? `${line} ${word}` : word;
  }
  return [...lines, line].join('\n');
}

/** How busy the fleet was at each load, per mode: how close the loads came to what they are named. */
function busyness(runs: readonly CompareRun[]): string {
  return `Share of driver time engaged (an offer or a trip in hand) in the measured window: ${LOADS.map((l) => `${l} ${
    runs.filter((r) => r.load === l).map((r) => `${r.mode} ${Math.round((1 - r.result.idleShare) * 100)} %`).join(', ')}`).join('; ')}.`;
}

function markdown(runs: readonly CompareRun[], tables: string[][], verdicts: readonly Verdict[], how: string, at: Date): string {
  const m = machine();
  const passed = verdicts.filter((v) => v.pass).length;
  const unapplied = !modeKnown && MODES.includes('batched');
  const paragraphs = [
    '# Dispatch modes compared: greedy and batched (issue 25)',
    '',
    `Written by \`${command()}\` ([\`scripts/simulate-compare.ts\`](../scripts/simulate-compare.ts)) on ${at.toISOString()}, ` +
      `on ${m.cpus} × ${m.cpu}, ${m.memoryGB} GB, ${m.os}, Node ${m.node}.`,
    '',
    `Each column is a fresh embedded node (\`DISPATCH_MODE\` of the column, \`DISPATCH_BATCH_MS=${BATCH_MS}\`, ` +
      `\`DISPATCH_BATCH_CONTENTION=${CONTENTION}\`: a window waits only after ${CONTENTION} contentions in an area's last 15) with the simulator ` +
      `against it: ${DRIVERS} drivers, ${SECONDS} s of bookings (the first ${WARMUP_S} s, while the fleet fills up, left out of the ` +
      `figures), SEED ${SEED}, driving ${SPEEDUP}× real time, a rider giving up after ${DEADLINE_MS / 1000} s of search ` +
      '(`DISPATCH_DEADLINE_MS`: no_driver), ' +
      `${Math.round(SCHEDULED_SHARE * 100)} % of bookings for ${SCHEDULE_AHEAD_S} s later. The same seed gives every column the same ` +
      'fleet, the same booking stream and the same answer from a driver to a booking; what the node offers to whom differs by mode.',
    '',
    ...(unapplied
      ? ['**The node these runs used does not know `DISPATCH_MODE` yet: the batched column ran greedy dispatch too.** ' +
        'Its differences from the greedy column are the noise between two runs of one mode, and its verdicts mean nothing yet.', '']
      : []),
    `Loads are shares of what the fleet can serve (light ${LOAD_SHARE.light}, busy ${LOAD_SHARE.busy}, near capacity ` +
      `${LOAD_SHARE.near}), computed (\`scripts/compare-capacity.ts\`): ${how}. ${busyness(runs)}`,
    '',
    'Time to first offer: the booking\'s 201 to the first offer frame for it at any driver (bookings for later left out). ' +
      'Pickup distance: straight line from where the driver was when its accept was acknowledged to the pickup. ' +
      'Pickup time: accept to arrived, in simulated seconds. Trips per driver-hour and idle share (online without an offer ' +
      'or a trip) over simulated time in the booking window. Light-load goals compare batched to greedy the way that is worse ' +
      'for the figure (idle share either way), and a difference below what one run can tell apart passes (the figure\'s ' +
      '"or": 0.1 s, 0.05 km, 5 s, 0.5 points). A p99 of a few dozen bookings is their slowest one.',
    '',
    `Goals met: ${passed} of ${verdicts.length}.`,
    '',
    ...tables.flatMap((t) => [...t, '']),
    '![Pickup-distance CDFs of both modes per load, and pickup time against load](results/dispatch-compare.png)',
    '',
    `Raw samples and every figure: [\`results/dispatch-compare.json\`](results/dispatch-compare.json) (${runs.length} runs).`,
    '',
  ];
  // Tables and the image stay on one line each; prose is wrapped.
  return paragraphs.map((p) => (p.startsWith('|') || p.startsWith('![') ? p : wrap(p))).join('\n');
}

export async function compare(): Promise<void> {
  const computed = capacity(SEED, DRIVERS, SPEEDUP);
  const perMin = num('COMPARE_CAPACITY_PER_MIN', 0) || computed.perMin;
  const how = process.env.COMPARE_CAPACITY_PER_MIN ? `set to ${perMin} bookings/min by COMPARE_CAPACITY_PER_MIN` : computed.how;
  console.log(`dispatch compare: ${MODES.join(' and ')} at ${LOADS.join(', ')}; ${DRIVERS} drivers, ${SECONDS} s a run ` +
    `(first ${WARMUP_S} s not measured), seed ${SEED}`);
  console.log(`capacity: ${how}`);
  if (!modeKnown && MODES.includes('batched')) {
    console.log('note: this node does not know DISPATCH_MODE yet: the batched runs get greedy dispatch (the table shows run-to-run noise)');
  }
  const at = new Date();
  const runs: CompareRun[] = [];
  for (const load of LOADS) {
    for (const mode of MODES) runs.push(await run(load, mode, perMin * LOAD_SHARE[load]!));
  }
  const tables: string[][] = [];
  const verdicts: Verdict[] = [];
  for (const load of LOADS) {
    const t = loadTable(load, runs, BATCH_MS);
    tables.push(t.lines);
    verdicts.push(...t.verdicts);
  }
  console.log('');
  for (const t of tables) console.log(`${t.join('\n')}\n`);
  console.log(busyness(runs));
  console.log(`goals met: ${verdicts.filter((v) => v.pass).length} of ${verdicts.length}`);

  const results = join(OUT, 'bench', 'results');
  mkdirSync(results, { recursive: true });
  const json = join(results, 'dispatch-compare.json');
  writeFileSync(json, `${JSON.stringify({
    date: at.toISOString(), command: command(), machine: machine(), modeKnown,
    settings: {
      drivers: DRIVERS, seconds: SECONDS, warmupS: WARMUP_S, deadlineMs: DEADLINE_MS, seed: SEED, speedup: SPEEDUP, batchMs: BATCH_MS,
      scheduledShare: SCHEDULED_SHARE, loads: LOAD_SHARE,
    },
    capacity: { perMin, how, model: computed }, verdicts, runs,
  }, null, 1)}\n`);
  const title = `DISPATCH COMPARE, SEED ${SEED}, ${DRIVERS} DRIVERS, ${at.toISOString().slice(0, 10)}${modeKnown ? '' : ' (BATCHED NOT IN THIS NODE YET)'}`;
  const png = join(results, 'dispatch-compare.png');
  writeFileSync(png, encodePng(dispatchPlot(runs.map((r) => ({
    load: r.load, mode: r.mode, bookingsPerMin: r.bookingsPerMin, pickupKm: r.result.raw.pickupKm, pickupSimS: r.result.raw.pickupSimS,
  })), title)));
  const md = join(OUT, 'bench', 'RESULTS-dispatch.md');
  writeFileSync(md, markdown(runs, tables, verdicts, how, at));
  console.log(`wrote ${md}, ${json} and ${png}`);
}

await compare().then(
  () => process.exit(0),
  (e: unknown) => { console.error(`compare failed: ${e instanceof Error ? e.message : String(e)}`); process.exit(1); },
);

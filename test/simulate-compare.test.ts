// `npm run simulate -- --compare` end to end, small: 20 drivers, 20 s a run, one load, real
// child nodes. It checks that both modes' rows exist with sane values (every booking accounted
// for, no missing figure), that the PNG and the results page are written, and that nothing is
// left behind (no node answering, no temporary directory) - not that batched wins: before the
// batched mode lands both columns run greedy. The compare runs in a process group of its own,
// killed whole at the end, so no child outlives the test even when it fails.

import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readPngHeader } from '../bench/png.ts';
import type { CompareRun } from '../scripts/compare-report.ts';
import { repoRoot } from './helpers/node-process.ts';

test('the compare runs both modes on fresh nodes and writes sane figures, a table and a PNG', async (t) => {
  t.timeout(180_000);
  const out = mkdtempSync(join(tmpdir(), 'compare-out-'));
  const scratch = mkdtempSync(join(tmpdir(), 'compare-tmp-'));
  const child = spawn(process.execPath, ['scripts/simulate.ts', '--compare'], {
    cwd: repoRoot,
    detached: true, // a process group of its own: killed whole below
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env, COMPARE_OUT: out, TMPDIR: scratch, COMPARE_DRIVERS: '20', COMPARE_SECONDS: '20', COMPARE_WARMUP_S: '0', COMPARE_LOADS: 'near', SEED: '3',
    },
  });
  let output = '';
  child.stdout.on('data', (b: Buffer) => { output += b.toString(); });
  child.stderr.on('data', (b: Buffer) => { output += b.toString(); });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  try {
    t.is(code, 0, output);
    const json = JSON.parse(readFileSync(join(out, 'bench/results/dispatch-compare.json'), 'utf8')) as { runs: CompareRun[] };
    t.deepEqual(json.runs.map((r) => `${r.load}/${r.mode}`), ['near/greedy', 'near/batched']);
    for (const { mode, result: r } of json.runs) {
      const c = r.counts;
      t.true(c.booked >= 5, `${mode}: some bookings made (${c.booked})`);
      t.is(c.completed + c.noDriver + c.cancelled + c.leftOpen, c.booked, `${mode}: every booking ended or is counted open`);
      t.is(c.leftOpen, 0, `${mode}: none left open`);
      t.is(c.errors, 0, `${mode}: no errors`);
      for (const [name, x] of Object.entries({
        firstOfferP50: r.firstOfferMs.p50, firstOfferP99: r.firstOfferMs.p99, pickupKm: r.pickupKm.mean, pickupKmP90: r.pickupKm.p90,
        pickupS: r.pickupSimS.mean, pickupSP90: r.pickupSimS.p90, noDriver: r.noDriverShare, trips: r.tripsPerDriverHour, idle: r.idleShare,
      })) {
        t.true(typeof x === 'number' && Number.isFinite(x) && x >= 0, `${mode}: ${name} is a number >= 0 (${x})`);
      }
      t.true(r.pickupKm.mean < 15, `${mode}: pickups are inside the city (${r.pickupKm.mean} km)`);
      t.true(r.idleShare <= 1 && r.noDriverShare <= 1, `${mode}: shares are shares`);
      t.is(r.raw.pickupKm.length, r.pickupKm.n, `${mode}: raw pickup distances kept`);
    }
    const png = readFileSync(join(out, 'bench/results/dispatch-compare.png'));
    t.like(readPngHeader(png), { width: 1200, height: 870, bitDepth: 8 });
    const md = readFileSync(join(out, 'bench/RESULTS-dispatch.md'), 'utf8');
    t.regex(md, /\| near \(\d+ bookings\/min\) \| greedy \| batched \|/);
    t.regex(md, /pickup distance mean, km .*\| >= 15 % lower \| (pass|\*\*fail\*\*) \|/);
    // Nothing left behind: the nodes the compare started answer no more, and their directories are gone.
    const urls = [...output.matchAll(/against (http:\/\/127\.0\.0\.1:\d+)/g)].map((m) => m[1]!);
    t.is(new Set(urls).size, 2, 'one node per mode');
    for (const url of new Set(urls)) {
      const answered = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) }).then(() => true, () => false);
      t.false(answered, `${url} is stopped`);
    }
    t.deepEqual(readdirSync(scratch), [], 'no temporary directory left');
  } finally {
    try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* the group is gone already */ }
    rmSync(out, { recursive: true, force: true });
    rmSync(scratch, { recursive: true, force: true });
  }
});

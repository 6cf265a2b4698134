// A node gives back what its start-up made the heap grow to (runtime/startup-memory.ts):
// in a process of its own (no --expose-gc), a burst of short-lived allocations grows the
// young generation as start-up does; the release then collects and the heap V8 holds shrinks.

import test from 'ava';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const MODULE = fileURLToPath(new URL('../runtime/startup-memory.ts', import.meta.url));

test('one collection a while after start gives back the heap start-up grew, without --expose-gc', (t) => {
  const script = `
    import { releaseStartupMemory } from ${JSON.stringify(MODULE)};
    let keep = [];
    for (let i = 0; i < 400_000; i++) { keep.push({ i, s: 'x'.repeat(i % 64) }); if (keep.length > 50_000) keep = []; }
    keep = [];
    releaseStartupMemory(50, (r) => { process.stdout.write(JSON.stringify({ ...r, gcGlobal: typeof globalThis.gc }) + '\\n'); });
    setTimeout(() => undefined, 1_000); // the release's own timer keeps no process up
  `;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  t.is(run.status, 0, run.stderr);
  const report = JSON.parse(run.stdout.trim()) as { heapBefore: number; heapAfter: number; gcGlobal: string };
  t.true(report.heapAfter < report.heapBefore, `heap ${report.heapBefore} -> ${report.heapAfter}`);
  t.is(report.gcGlobal, 'undefined', "gc() stays out of the application's global scope");
});

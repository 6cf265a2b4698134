// Start-up allocates much, once: modules compiled, the schema brought up to date, the
// embedded database opened, the first sweeps and catch-ups. V8 keeps the young generation
// that grew for it (about 30 MB here) until a collection shrinks it, and an idle node
// never collects. So, two seconds after start, one full collection of the kind that
// gives memory back (V8's last-resort flavour, which shrinks the heap's spaces): an idle
// embedded node's RSS went from 258-288 MB to 212-223 MB (bench/node.ts's idle node).
// Under load the young generation grows again as far as the load needs.

import v8 from 'node:v8';
import vm from 'node:vm';

/** V8's gc() with options, exposed for this process (undefined if the runtime refuses). */
type Gc = (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

function collector(): Gc | undefined {
  const exposed = (globalThis as { gc?: unknown }).gc;
  if (typeof exposed === 'function') return exposed as Gc;
  // Set at run time, --expose-gc installs gc() in contexts made afterwards (not in this one).
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('typeof gc === "function" ? gc : undefined') as unknown;
  return typeof gc === 'function' ? gc as Gc : undefined;
}

export interface Released {
  readonly heapBefore: number;
  readonly heapAfter: number;
  readonly rssBefore: number;
  readonly rssAfter: number;
}

/** Collects once, `afterMs` from now (unref'd: never keeps the process up), and reports what it gave back. */
export function releaseStartupMemory(afterMs: number, report: (released: Released) => void): void {
  setTimeout(() => {
    const gc = collector();
    if (!gc) return;
    const before = process.memoryUsage();
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    const after = process.memoryUsage();
    report({ heapBefore: before.heapTotal, heapAfter: after.heapTotal, rssBefore: before.rss, rssAfter: after.rss });
  }, afterMs).unref();
}

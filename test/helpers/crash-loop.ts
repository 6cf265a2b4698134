// The soak's "embedded node in a crash loop": one embedded node (test/fixtures/counter-node.ts,
// its own DATA_DIR) under a burst of counter commands, killed with SIGKILL mid-burst and
// started again on the same DATA_DIR, round after round. A command the node did not
// acknowledge (in flight at the kill) is sent again with the same command id until it is, as
// a client would; so in the end every command was acknowledged, and each must be journaled
// exactly once. Used by scripts/soak.ts (`npm run soak`, 20 rounds) and test/crash-loop.test.ts.
//
// A SIGKILL seldom lands inside the write of one small record, so with `tear` each kill is
// also made to look like one that did: the newest segment of every partition of the command
// log gets half a record with no newline, as a write cut short leaves it. The journal is on
// PostgreSQL (DATABASE_URL) so it can be read while the node runs; the command log under test
// is the node's own, in DATA_DIR either way.

import { randomUUID } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { eventually, startNodeProcess, type NodeProcess } from './node-process.ts';

export interface CrashLoopOptions {
  /** PostgreSQL for the node's journal: a database of its own (freshDatabase()). */
  readonly databaseUrl: string;
  /** How many times the node is killed and started again. */
  readonly rounds: number;
  /** The kill comes once this many commands were acknowledged in the round. */
  readonly acksPerRound?: number;
  /** Clients sending at once. */
  readonly concurrency?: number;
  /** How long a round may take to acknowledge its commands before that is a violation (and the kill comes anyway). */
  readonly roundBoundMs?: number;
  /** Cut each partition's newest segment mid-record after each kill (see the top of the file). */
  readonly tear?: boolean;
  readonly log?: (line: string) => void;
}

export interface CrashLoopResult {
  /** Kills done (fewer than asked for if a round stalled). */
  readonly rounds: number;
  /** Commands the node acknowledged (202), each counted once however often it was sent. */
  readonly acknowledged: number;
  /** Acknowledged commands journaled (once or more). */
  readonly applied: number;
  /** Acknowledged commands never journaled. */
  readonly lost: number;
  /** Command ids journaled more than once. */
  readonly doubled: number;
  /** The counters' totals against what was acknowledged for them (every add is n=1). */
  readonly totals: { readonly counted: number; readonly acknowledged: number };
  readonly torn: number;
  readonly violations: string[];
}

const FIXTURE = 'test/fixtures/counter-node.ts';
const COUNTERS = 8;
const SHARDS = 4;

export async function runCrashLoop(options: CrashLoopOptions): Promise<CrashLoopResult> {
  const log = options.log ?? (() => undefined);
  const dataDir = mkdtempSync(join(tmpdir(), 'crash-loop-'));
  const prefix = `cl${randomUUID().slice(0, 8)}`;
  const env = { MODE: 'embedded', DATABASE_URL: options.databaseUrl, DATA_DIR: dataDir, SHARDS: String(SHARDS), NODE_ID: 'crash-loop' };
  const counters = Array.from({ length: COUNTERS }, (_, i) => `${prefix}-c${i}`);
  /** Command id -> counter, for commands sent but not acknowledged yet (sent again next round). */
  const unacked = new Map<string, string>();
  const acked = new Map<string, string>();
  let sequence = 0;
  let torn = 0;
  let kills = 0;
  const stalls: string[] = [];
  const bound = options.roundBoundMs ?? 120_000;
  let node: NodeProcess | undefined;
  try {
    for (let round = 1; round <= options.rounds + 1; round++) {
      // A node that stopped taking commands is not killed further: its state is what the check reads.
      const last = round > options.rounds || stalls.length > 0;
      node = await startNodeProcess(FIXTURE, env);
      const before = acked.size;
      // The last run only has the commands still unacknowledged sent again, and is not killed.
      const target = last ? unacked.size : options.acksPerRound ?? 60;
      const sending = burst(node.url, target, options.concurrency ?? 8, () => {
        const retry = unacked.entries().next().value;
        if (retry) { unacked.delete(retry[0]); return retry; }
        if (last) return undefined;
        const id = `${prefix}-k${++sequence}`;
        return [id, counters[sequence % COUNTERS]!];
      }, (id, counter, ok) => (ok ? acked : unacked).set(id, counter));
      const what = last ? sending.done : sending.reached;
      if (!(await within(what, bound))) {
        stalls.push(`${last ? 'last start' : `round ${round}`}: ${acked.size - before} of ${target} commands acknowledged within ${bound} ms`);
        log(`crash loop: ${stalls.at(-1)}`);
      }
      if (last) {
        sending.stop();
        log(`crash loop: last start: ${acked.size - before} left-over commands acknowledged`);
        break;
      }
      await node.kill('SIGKILL');
      kills++;
      sending.stop();
      await sending.done;
      if (options.tear) torn += tearTails(join(dataDir, 'log'));
      log(`crash loop: round ${round}: SIGKILL after ${acked.size - before} acknowledged (${unacked.size} in flight, sent again next round)`);
    }
    const report = await check(options.databaseUrl, node!.url, prefix, acked);
    await within(node!.kill('SIGTERM'), 60_000); // else SIGKILL, below
    const result = { rounds: kills, torn, ...report, violations: [...stalls, ...report.violations] };
    if (stalls.length > 0) log('crash loop: stopped after the first round that stalled');
    log(`crash loop: ${crashLoopSummary(result)}`);
    return result;
  } finally {
    await node?.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  }
}

export function crashLoopSummary(r: CrashLoopResult): string {
  return `${r.rounds} rounds (${r.torn} tails torn): acknowledged ${r.acknowledged}, applied ${r.applied}, lost ${r.lost}, doubled ${r.doubled}; ` +
    `counter totals ${r.totals.counted} for ${r.totals.acknowledged} acknowledged adds`;
}

/** True if `promise` settled within `ms`. */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), ms); });
  const settled = await Promise.race([promise.then(() => true, () => true), late]);
  clearTimeout(timer);
  return settled;
}

interface Burst { readonly reached: Promise<void>; readonly done: Promise<void>; stop(): void }

/**
 * `concurrency` clients sending `add n=1` with the command ids `next` gives, until it gives
 * none or stop(); `reached` resolves once `target` of them were acknowledged. A request that
 * fails (the node was killed under it) leaves its command unacknowledged.
 */
function burst(url: string, target: number, concurrency: number, next: () => [string, string] | undefined,
  settle: (id: string, counter: string, ok: boolean) => void): Burst {
  let stopped = false;
  let acks = 0;
  let reach!: () => void;
  const reached = new Promise<void>((r) => { reach = r; });
  if (target === 0) reach();
  const client = async () => {
    while (!stopped) {
      const command = next();
      if (!command) return;
      const [id, counter] = command;
      const ok = await fetch(`${url}/counter/${counter}/add?n=1&cmd=${id}`, { method: 'POST', signal: AbortSignal.timeout(30_000) })
        .then((r) => r.status === 202, () => false);
      settle(id, counter, ok);
      if (ok && ++acks === target) reach();
      if (!ok && !stopped) await new Promise((r) => setTimeout(r, 100));
    }
  };
  const done = Promise.all(Array.from({ length: concurrency }, client)).then(() => undefined);
  return { reached, done, stop: () => { stopped = true; } };
}

/** Half a record, no newline, at the end of each partition's newest segment: what a write cut short leaves. */
function tearTails(logDir: string): number {
  const newest = new Map<string, string>();
  for (const file of readdirSync(logDir).filter((f) => /^p\d+-\d+\.log$/.test(f)).sort()) newest.set(file.split('-')[0]!, file);
  for (const file of newest.values()) {
    const path = join(logDir, file);
    const lines = readFileSync(path, 'utf8').split('\n').length - 1;
    const base = Number(file.slice(file.indexOf('-') + 1, -'.log'.length));
    const record = JSON.stringify({ o: base + lines, c: { id: 'cut-short', to: { kind: 'counter', id: 'x' }, message: { type: 'add', n: 1 }, at: 0 } });
    appendFileSync(path, record.slice(0, record.length >> 1));
  }
  return newest.size;
}

/** Waits (60 s at most) until every acknowledged command is journaled, then counts. */
async function check(databaseUrl: string, url: string, prefix: string, acked: ReadonlyMap<string, string>) {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    let journaled = new Map<string, number>();
    const count = async () => {
      const { rows } = await client.query<{ cmd: string; n: string }>(
        `select data->>'cmd' as cmd, count(*) as n from journal where persistence_key like $1 group by 1`, [`counter:${prefix}-%`]);
      journaled = new Map(rows.map((r) => [r.cmd, Number(r.n)]));
      return [...acked.keys()].every((id) => journaled.has(id));
    };
    await eventually(count, 60_000, 500);
    const lost = [...acked.keys()].filter((id) => !journaled.has(id));
    const doubled = [...journaled].filter(([, n]) => n > 1).map(([id]) => id);
    let counted = 0;
    for (const counter of new Set(acked.values())) {
      const res = await fetch(`${url}/counter/${counter}`, { signal: AbortSignal.timeout(30_000) });
      counted += res.ok ? ((await res.json()) as { total: number }).total : Number.NaN;
    }
    const violations = [
      ...lost.slice(0, 10).map((id) => `command ${id} (counter ${acked.get(id)}) was acknowledged and never applied`),
      ...(lost.length > 10 ? [`... and ${lost.length - 10} more acknowledged commands never applied`] : []),
      ...doubled.slice(0, 10).map((id) => `command ${id} was journaled ${journaled.get(id)} times`),
      ...(counted === acked.size ? [] : [`the counters total ${counted}, the acknowledged adds ${acked.size}`]),
    ];
    return {
      acknowledged: acked.size, applied: acked.size - lost.length, lost: lost.length, doubled: doubled.length,
      totals: { counted, acknowledged: acked.size }, violations,
    };
  } finally {
    await client.end();
  }
}

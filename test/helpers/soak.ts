// The soak: three cluster nodes (test/fixtures/soak-node.ts: main.ts's entities plus the
// counter) under a steady load, while nodes leave and join, one is paused past the
// session timeout, one is killed with SIGKILL right after a join starts, and (optionally)
// the soak's own Kafka broker is restarted. Then test/helpers/invariants.ts checks what is
// left. Used by scripts/soak.ts (`npm run soak`) and, compressed, by test/soak.test.ts.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { SignJWT } from 'jose';
import pg from 'pg';
import { Kafka, logLevel } from 'kafkajs';
import { checkInvariants, type InvariantReport } from './invariants.ts';
import { eventually, freePort, repoRoot, startNodeProcess, type NodeProcess } from './node-process.ts';
import { TEST_CLUSTER_KEY, TEST_DATA_KEYS, freshDatabase, kafkaBrokers, redisUrl } from './services.ts';

export interface SoakOptions {
  readonly durationMs: number;
  /** A node leaves and another joins this often (the first time with the SIGKILL). */
  readonly churnEveryMs: number;
  /** When to pause a node with SIGSTOP (for twice the session timeout), from the start of the load. */
  readonly pauseAtMs: number;
  /** Restart the soak's own broker at this time; without it, the shared broker is used. */
  readonly brokerRestartAtMs?: number;
  readonly driversPerNode?: number;
  readonly bookingsPerMinPerNode?: number;
  /** The nodes' DISPATCH_MODE (absent: their default, greedy). */
  readonly dispatchMode?: 'greedy' | 'batched';
  readonly log?: (line: string) => void;
  /** Each node's whole output goes to <logDir>/<node id>.log as well (for reading after a finding). */
  readonly logDir?: string;
}

export interface SoakResult {
  readonly report: InvariantReport;
  readonly violations: string[];
  readonly acknowledged: number;
  readonly longestUnavailableMs: number;
  readonly serveAgainAfterKillMs: number | undefined;
  readonly longestCounterAckMs: number;
  readonly fencedWrites: Record<string, string>;
  readonly faults: string[];
}

const SHARDS = 12;
const SESSION_TIMEOUT_MS = 6_000;
const SECRET = 'soak-jwt-secret-long-enough-for-cluster-mode-0123456789';
const QUOTE_SECRET = 'soak-quote-secret-long-enough-for-cluster-mode-9876543210';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Member { id: string; node: NodeProcess; sim?: ChildProcess; simDone?: Promise<void>; paused: boolean; stopping?: boolean }

/** The soak's own broker: scripts/kafka.sh with its own ports and data directory. */
async function ownBroker(log: (l: string) => void) {
  const port = await freePort();
  const controllerPort = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'soak-kafka-'));
  const env = { ...process.env, KAFKA_PORT: String(port), KAFKA_CONTROLLER_PORT: String(controllerPort), KAFKA_DATA_DIR: dataDir };
  const run = (cmd: string) => new Promise<void>((resolve, reject) => {
    const child = spawn('bash', ['scripts/kafka.sh', cmd], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`kafka.sh ${cmd}: ${code}\n${out}`))));
  });
  await run('start');
  log(`soak: own Kafka broker on 127.0.0.1:${port} (data ${dataDir})`);
  return {
    brokers: `127.0.0.1:${port}`,
    restart: async () => { await run('stop'); await run('start'); },
    stop: async () => { await run('stop').catch(() => undefined); rmSync(dataDir, { recursive: true, force: true }); },
  };
}

/** Waits until the cluster's consumer group is rebalancing; its state, or undefined at the deadline. */
async function rebalancing(brokers: string, prefix: string, timeoutMs: number): Promise<string | undefined> {
  const admin = new Kafka({ brokers: brokers.split(','), clientId: `${prefix}-soak-watch`, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(prefix));
      if (groups.length > 0) {
        const described = await admin.describeGroups(groups);
        const state = described.groups.find((g) => g.state === 'PreparingRebalance' || g.state === 'CompletingRebalance')?.state;
        if (state) return state;
      }
      await sleep(50);
    }
    return undefined;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const log = options.log ?? (() => undefined);
  const faults: string[] = [];
  const fault = (line: string) => { faults.push(line); log(`soak: ${line}`); };
  const cleanup: (() => Promise<unknown>)[] = [];
  const members: Member[] = [];
  const gone: Member[] = [];
  const fencedWrites: Record<string, string> = {};
  const died: string[] = [];
  /** Stale answers of a node back from a pause (see staleReads). */
  const returned: string[] = [];
  const work = mkdtempSync(join(tmpdir(), 'soak-'));
  const recordFile = join(work, 'bookings.jsonl');
  writeFileSync(recordFile, '');
  try {
    const broker = options.brokerRestartAtMs !== undefined ? await ownBroker(log) : undefined;
    if (broker) cleanup.push(() => broker.stop());
    const db = await freshDatabase();
    cleanup.push(() => db.drop());
    const prefix = `soak${randomUUID().slice(0, 8)}`;
    const env: Record<string, string> = {
      MODE: 'cluster',
      KAFKA_BROKERS: broker?.brokers ?? await kafkaBrokers(),
      DATABASE_URL: db.url,
      REDIS_URL: await redisUrl(),
      JWT_SECRET: SECRET,
      QUOTE_SECRET,
      ...TEST_DATA_KEYS,
      ...TEST_CLUSTER_KEY,
      KAFKA_TOPIC_PREFIX: prefix,
      KAFKA_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS),
      SHARDS: String(SHARDS),
      ASK_TIMEOUT_MS: '3000',
      SHUTDOWN_TIMEOUT_MS: '30000',
      RATE_LIMIT_BOOKINGS_PER_MIN: '1000',
      LOG_LEVEL: 'info',
      // Batched: every window waits (no contention needed), so faults meet open windows.
      ...(options.dispatchMode ? { DISPATCH_MODE: options.dispatchMode, DISPATCH_BATCH_CONTENTION: '0' } : {}),
    };
    const admin = await new SignJWT({ role: 'admin' }).setProtectedHeader({ alg: 'HS256' }).setSubject('soak-admin')
      .setIssuer('dispatch').setIssuedAt().setExpirationTime('6h').sign(new TextEncoder().encode(SECRET));
    const auth = { authorization: `Bearer ${admin}` };
    const live = () => members.filter((m) => !m.paused);
    const urls = () => live().map((m) => m.node.url);

    let seq = 0;
    const startMember = async (): Promise<Member> => {
      const id = `s${++seq}`;
      const node = await startNodeProcess('test/fixtures/soak-node.ts', { ...env, NODE_ID: id, DATA_DIR: mkdtempSync(join(work, `${id}-`)) }, 180_000);
      const m: Member = { id, node, paused: false };
      if (options.logDir) {
        mkdirSync(options.logDir, { recursive: true });
        const file = join(options.logDir, `${id}.log`);
        writeFileSync(file, `${node.output.join('\n')}\n`);
        for (const stream of [node.child.stdout, node.child.stderr]) stream?.on('data', (chunk: Buffer) => appendFileSync(file, chunk));
      }
      // A node that dies without being told to is a finding: say so, with its last words, and take it out of the load.
      void node.exited.then((code) => {
        if (m.stopping) return;
        died.push(`node ${id} exited on its own (code ${code}, signal ${node.child.signalCode})`);
        fault(`${id} EXITED on its own (code ${code}); last lines:\n${node.output.slice(-15).join('\n')}`);
        const i = members.indexOf(m);
        if (i >= 0) { members.splice(i, 1); gone.push(m); }
        m.sim?.kill('SIGKILL');
      });
      return m;
    };
    const startSim = (m: Member) => {
      const sim = spawn(process.execPath, ['scripts/simulate.ts'], {
        cwd: repoRoot,
        env: {
          // A cluster issues no development tokens: the simulator signs its own with the cluster's secret.
          ...process.env, URL: m.node.url, JWT_SECRET: SECRET, RECORD_FILE: recordFile, DRIVERS: String(options.driversPerNode ?? 8),
          BOOKINGS_PER_MIN: String(options.bookingsPerMinPerNode ?? 20), SPEEDUP: '30', SCHEDULED_SHARE: '0.05', PROGRESS_S: '30', CLEANUP_S: '30',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      createInterface({ input: sim.stdout! }).on('line', (l) => { if (l.trim()) log(`  sim@${m.id}: ${l.trim()}`); });
      createInterface({ input: sim.stderr! }).on('line', (l) => { if (l.trim()) log(`  sim@${m.id} (stderr): ${l.trim()}`); });
      m.sim = sim;
      m.simDone = new Promise((r) => sim.once('exit', () => r()));
    };
    const stopSim = async (m: Member, signal: NodeJS.Signals) => {
      if (m.sim && m.sim.exitCode === null && m.sim.signalCode === null) m.sim.kill(signal);
      await Promise.race([m.simDone, sleep(60_000)]);
      if (m.sim && m.sim.exitCode === null && m.sim.signalCode === null) { m.sim.kill('SIGKILL'); await m.simDone; }
    };
    cleanup.push(async () => {
      for (const m of [...members, ...gone]) {
        m.stopping = true;
        if (m.sim && m.sim.exitCode === null && m.sim.signalCode === null) m.sim.kill('SIGKILL');
        if (m.paused) m.node.child.kill('SIGCONT');
        await m.node.kill('SIGKILL');
      }
    });
    const view = async (url: string) => {
      const res = await fetch(`${url}/v1/admin/cluster`, { headers: auth, signal: AbortSignal.timeout(5_000) });
      if (!res.ok) throw new Error(`cluster view ${res.status}`);
      return (await res.json()) as { nodes: string[]; shards: { node: string | null }[] };
    };
    const settled = async () => {
      const ids = members.map((m) => m.id).sort();
      for (const m of members) {
        const v = await view(m.node.url);
        if (JSON.stringify([...v.nodes].sort()) !== JSON.stringify(ids) || v.shards.some((s) => s.node === null)) return false;
      }
      return true;
    };
    const shardsOf = async (m: Member) => (await view(m.node.url)).shards
      .flatMap((s, shard) => (s.node === m.id ? [shard] : []));
    const metric = async (m: Member) => {
      try {
        const res = await fetch(`${m.node.url}/metrics`, { headers: auth, signal: AbortSignal.timeout(5_000) });
        const text = await res.text();
        const lines = text.split('\n').filter((l) => l.startsWith('dispatch_fenced_writes_total'));
        fencedWrites[m.id] = lines.length === 0 ? 'n/a' : String(lines.reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0));
      } catch { fencedWrites[m.id] ??= 'n/a'; }
    };

    // --- three nodes, one after the other (joining together rebalances twice) ---
    for (let i = 0; i < 3; i++) members.push(await startMember());
    if (!(await eventually(settled, 120_000, 500))) throw new Error('the three nodes did not settle into one cluster');
    log(`soak: ${members.map((m) => `${m.id} ${m.node.url}`).join(', ')} (topic prefix ${prefix})`);

    // --- load: simulators (riders, drivers over WebSocket) per node, and the counter ---
    for (const m of members) startSim(m);
    const counterIds = Array.from({ length: 24 }, (_, i) => `${prefix}-c${i}`);
    const sent = new Map(counterIds.map((id) => [id, 0]));
    let longestCounterAckMs = 0;
    let loading = true;
    const counterLoad = (async () => {
      for (let i = 0; loading; i++) {
        const id = counterIds[i % counterIds.length]!;
        const cmd = `k${i}-${randomUUID().slice(0, 6)}`;
        const first = Date.now();
        for (let attempt = 0; ; attempt++) {
          const targets = urls();
          const url = targets[(i + attempt) % Math.max(targets.length, 1)];
          const ok = url !== undefined && await fetch(`${url}/counter/${id}/add?n=1&cmd=${cmd}`, { method: 'POST', signal: AbortSignal.timeout(5_000) })
            .then((r) => r.status === 202, () => false);
          if (ok) break;
          await sleep(100);
        }
        longestCounterAckMs = Math.max(longestCounterAckMs, Date.now() - first);
        sent.set(id, sent.get(id)! + 1);
        await sleep(20);
      }
    })();
    // Availability: every probe id (spread over the shards) read through a live node; the
    // longest gap between two answers for any id is the longest unavailability.
    const lastOk = new Map<string, number>();
    const firstOkAfterKill = new Map<string, number>();
    let killedAt: number | undefined;
    let longestUnavailableMs = 0;
    let probing = true;
    const probe = (async () => {
      const t0 = Date.now();
      for (const id of counterIds) lastOk.set(id, t0);
      for (let round = 0; probing; round++) {
        await Promise.all(counterIds.map(async (id, k) => {
          const targets = urls();
          if (targets.length === 0) return;
          const ok = await fetch(`${targets[(round + k) % targets.length]}/counter/${id}`, { signal: AbortSignal.timeout(4_000) }).then((r) => r.ok, () => false);
          if (!ok) return;
          const now = Date.now();
          longestUnavailableMs = Math.max(longestUnavailableMs, now - lastOk.get(id)!);
          lastOk.set(id, now);
          if (killedAt !== undefined && !firstOkAfterKill.has(id)) firstOkAfterKill.set(id, now);
        }));
        await sleep(500);
      }
      const end = Date.now();
      for (const id of counterIds) longestUnavailableMs = Math.max(longestUnavailableMs, end - lastOk.get(id)!);
    })();

    // --- the faults, in order; each waits for the cluster to settle before the next ---
    const started = Date.now();
    const at = async (ms: number) => { const wait = started + ms - Date.now(); if (wait > 0) await sleep(wait); };
    const settle = async (what: string) => {
      const t = Date.now();
      const ok = await eventually(settled, 180_000, 500);
      log(`soak: ${what}: ${ok ? `settled in ${Date.now() - t} ms` : 'NOT settled within 180 s'}`);
    };
    const leave = async (m: Member, how: 'SIGTERM' | 'SIGKILL') => {
      m.stopping = true;
      // It may be gone already (a node that died on its own): splice(-1) would drop another member.
      const i = members.indexOf(m);
      if (i >= 0) { members.splice(i, 1); gone.push(m); }
      if (how === 'SIGTERM') {
        await metric(m);
        await stopSim(m, 'SIGTERM'); // its simulator cleans up against its node first
        await m.node.kill('SIGTERM');
      } else {
        m.sim?.kill('SIGKILL');
        await m.node.kill('SIGKILL');
      }
    };
    const join_ = async () => { const m = await startMember(); members.push(m); startSim(m); return m; };

    type Step = { atMs: number; run: () => Promise<void> };
    const steps: Step[] = [];
    steps.push({ atMs: options.pauseAtMs, run: async () => {
      const m = members[members.length - 1]!;
      const before = await shardsOf(m);
      m.paused = true;
      m.node.child.kill('SIGSTOP');
      fault(`SIGSTOP ${m.id} for ${2 * SESSION_TIMEOUT_MS + 3_000} ms (session timeout ${SESSION_TIMEOUT_MS} ms)`);
      await sleep(2 * SESSION_TIMEOUT_MS + 3_000);
      m.node.child.kill('SIGCONT');
      fault(`SIGCONT ${m.id}`);
      await eventually(async () => (await fetch(`${m.node.url}/ready`, { signal: AbortSignal.timeout(3_000) })).ok, 120_000, 500);
      await settle(`after pausing ${m.id}`);
      const back = (await shardsOf(m)).filter((s) => before.includes(s));
      fault(`${m.id} got back ${back.length} of its ${before.length} old shard(s)${back.length ? `: ${back.join(', ')}` : ''}`);
      // Reads through the returned node are the journal's, never a copy from before the pause.
      const stale = await staleReads(m, counterIds, db.url);
      if (stale.length > 0) returned.push(...stale.map((v) => `after its return, ${m.id} answered ${v}`));
      fault(`${m.id}: ${counterIds.length} counters read through it after its return, ${stale.length} stale`);
      m.paused = false; // commands through it from now on: the final check counts them applied exactly once
    } });
    for (let k = 1; options.churnEveryMs * k < options.durationMs; k++) {
      steps.push({ atMs: options.churnEveryMs * k, run: async () => {
        if (k === 1) {
          // A join starts (the process is up and its consumer is joining), and an old member dies mid-rebalance.
          const victim = members[0]!;
          const joining = startMember();
          joining.catch(() => undefined);
          const seen = await rebalancing(env.KAFKA_BROKERS!, prefix, 180_000);
          fault(`join started; SIGKILL ${victim.id} ${seen ? `during the rebalance (group ${seen})` : '(no rebalance observed within 180 s)'}`);
          await metric(victim);
          await leave(victim, 'SIGKILL');
          killedAt = Date.now();
          firstOkAfterKill.clear();
          const m = await joining;
          members.push(m);
          startSim(m);
          fault(`${m.id} joined`);
        } else {
          const m = await join_();
          fault(`${m.id} joined`);
          await settle(`after ${m.id} joined`);
          const leaving = members[0]!;
          fault(`${leaving.id} leaves (SIGTERM)`);
          await leave(leaving, 'SIGTERM');
        }
        await settle(`churn ${k}`);
      } });
    }
    if (broker && options.brokerRestartAtMs !== undefined) steps.push({ atMs: options.brokerRestartAtMs, run: async () => {
      fault('restarting the soak\'s Kafka broker');
      const t = Date.now();
      await broker.restart();
      fault(`broker back in ${Date.now() - t} ms`);
      await settle('after the broker restart');
    } });
    steps.sort((a, b) => a.atMs - b.atMs);
    for (const step of steps) { await at(step.atMs); await step.run(); }
    await at(options.durationMs);

    // --- stop the load, let simulators clean up, then check ---
    loading = false;
    await counterLoad;
    probing = false;
    await probe;
    await Promise.all(members.map((m) => stopSim(m, 'SIGTERM')));
    for (const m of members) await metric(m);
    const acknowledged = [...new Set(readFileSync(recordFile, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { id: string }).id))];
    const serveAgainAfterKillMs = killedAt === undefined || firstOkAfterKill.size < counterIds.length ? undefined
      : Math.max(...firstOkAfterKill.values()) - killedAt;
    log(`soak: load stopped; ${acknowledged.length} bookings acknowledged; checking invariants`);
    const report = await checkInvariants({ databaseUrl: db.url, urls, adminToken: admin, bookings: acknowledged, counterSent: sent, log });
    return { report, violations: [...died, ...returned, ...report.violations], acknowledged: acknowledged.length, longestUnavailableMs, serveAgainAfterKillMs, longestCounterAckMs, fencedWrites, faults };
  } finally {
    for (const c of cleanup.reverse()) await c().catch((e) => log(`soak: cleanup: ${e instanceof Error ? e.message : e}`));
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Counters whose answer through `m` is older than the journal was before the read: the
 * journal's row count for the counter is read before and after (the load goes on), and the
 * answer's `applied` must lie between them.
 */
async function staleReads(m: Member, ids: readonly string[], databaseUrl: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const rows = async (id: string) => Number((await client.query<{ n: string }>(
    'select count(*) as n from journal where persistence_key = $1', [`counter:${id}`],
  )).rows[0]!.n);
  try {
    const stale: string[] = [];
    for (const id of ids) {
      const low = await rows(id);
      const res = await fetch(`${m.node.url}/counter/${id}`, { signal: AbortSignal.timeout(10_000) }).catch(() => undefined);
      if (!res?.ok) { stale.push(`${id}: no answer (${res?.status ?? 'timeout'})`); continue; }
      const applied = ((await res.json()) as { applied: number }).applied;
      const high = await rows(id);
      if (applied < low || applied > high) stale.push(`${id}: applied ${applied} where the journal held ${low}..${high}`);
    }
    return stale;
  } finally {
    await client.end();
  }
}

export function summary(r: SoakResult): string {
  const ms = (v: number | undefined) => (v === undefined ? 'n/a' : `${(v / 1000).toFixed(1)} s`);
  return [
    `bookings acknowledged:        ${r.acknowledged} (${JSON.stringify(r.report.statuses)})`,
    `counter commands:             ${r.report.counterCommands} (longest until acknowledged ${ms(r.longestCounterAckMs)})`,
    `drivers / assignments:        ${r.report.driversChecked} / ${r.report.assignments}`,
    `violations:                   ${r.violations.length}`,
    ...r.violations.slice(0, 30).map((v) => `  - ${v}`),
    `longest unavailability:       ${ms(r.longestUnavailableMs)}`,
    `serving again after SIGKILL:  ${ms(r.serveAgainAfterKillMs)}`,
    `dispatch_fenced_writes_total: ${Object.entries(r.fencedWrites).map(([id, v]) => `${id}=${v}`).join(' ') || 'n/a'}`,
    `faults:                       ${r.faults.length}`,
    ...r.faults.map((f) => `  - ${f}`),
  ].join('\n');
}

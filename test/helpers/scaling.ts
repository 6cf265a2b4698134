// Scaling under load: a join, a graceful leave, a rolling restart of every node and a
// SIGKILL, each measured from the client's side. Counter commands (test/fixtures/counter-node.ts)
// go at a steady rate to entities spread over every shard, each answered once its owner has
// applied it (`?wait`), through a node chosen the way a load balancer would (a request whose
// connection is refused goes to another node; an HTTP answer, 503 included, is final).
// Per event: requests sent and failed, p99 before and during, the longest wait of a command
// to a shard that did not move and of one to a shard that moved, and how long the moved
// shards took to serve again. Used by test/scaling.test.ts (short) and scripts/soak.ts
// (`npm run soak -- --scaling`, full).

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { shardOf } from '../../runtime/entity.ts';
import { eventually, startNodeProcess, type NodeProcess } from './node-process.ts';
import { TEST_CLUSTER_KEY, TEST_DATA_KEYS, freshDatabase, kafkaBrokers, redisUrl } from './services.ts';

export interface ScalingOptions {
  /** Commands per second, open loop. */
  readonly rate: number;
  /** Quiet time before each event (its "before" window) and after it settles. */
  readonly quietMs: number;
  readonly shards?: number;
  readonly sessionTimeoutMs?: number;
  readonly log?: (line: string) => void;
}

export interface EventRow {
  readonly event: string;
  readonly requests: number;
  readonly failed: number;
  /** Requests a node refused to connect (stopping, dead) and the client sent elsewhere: not failures, shown apart. */
  readonly rerouted: number;
  readonly p99BeforeMs: number;
  readonly p99DuringMs: number;
  readonly longestUnmovedMs: number;
  readonly longestMovedMs: number;
  readonly moved: number;
}

export interface ScalingResult {
  readonly rows: EventRow[];
  readonly acknowledged: number;
  /**
   * Counters whose applied count is below the commands acknowledged for them, or above those
   * plus the ones whose outcome the client never heard (a timeout: it may have been applied).
   */
  readonly wrong: string[];
  readonly failures: string[];
}

interface Sent { readonly id: string; readonly shard: number; readonly start: number; end?: number; ok?: boolean; rerouted: boolean; why?: string }
interface Member { readonly id: string; node: NodeProcess; ready: boolean; stopping: boolean }

const SECRET = 'scaling-jwt-secret-long-enough-for-cluster-mode-0123456789';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function runScaling(o: ScalingOptions): Promise<ScalingResult> {
  const log = o.log ?? (() => undefined);
  const shards = o.shards ?? 24;
  const db = await freshDatabase();
  const work = mkdtempSync(join(tmpdir(), 'scaling-'));
  const prefix = `scale${randomUUID().slice(0, 8)}`;
  const env: Record<string, string> = {
    MODE: 'cluster', KAFKA_BROKERS: await kafkaBrokers(), DATABASE_URL: db.url, REDIS_URL: await redisUrl(),
    JWT_SECRET: SECRET, QUOTE_SECRET: `${SECRET}-quote`, ...TEST_DATA_KEYS, ...TEST_CLUSTER_KEY, KAFKA_TOPIC_PREFIX: prefix,
    KAFKA_SESSION_TIMEOUT_MS: String(o.sessionTimeoutMs ?? 10_000), SHARDS: String(shards),
    // Longer than a session, so a command to a killed node's shard waits for the survivors instead of timing out.
    ASK_TIMEOUT_MS: String((o.sessionTimeoutMs ?? 10_000) + 10_000),
    SHUTDOWN_TIMEOUT_MS: '30000', LOG_LEVEL: 'info',
  };
  const admin = await new SignJWT({ role: 'admin' }).setProtectedHeader({ alg: 'HS256' }).setSubject('scaling')
    .setIssuer('dispatch').setIssuedAt().setExpirationTime('6h').sign(new TextEncoder().encode(SECRET));
  const members: Member[] = [];
  const sent: Sent[] = [];
  const failures: string[] = [];
  const start = async (id: string): Promise<Member> => {
    const node = await startNodeProcess('test/fixtures/soak-node.ts', { ...env, NODE_ID: id, DATA_DIR: mkdtempSync(join(work, `${id}-`)) }, 180_000);
    const m: Member = { id, node, ready: false, stopping: false };
    members.push(m);
    return m;
  };
  const view = async (url: string) => {
    const res = await fetch(`${url}/v1/admin/cluster`, { headers: { authorization: `Bearer ${admin}` }, signal: AbortSignal.timeout(5_000) });
    if (!res.ok) throw new Error(`cluster view ${res.status}`);
    return (await res.json()) as { nodes: string[]; shards: { shard: number; node: string | null }[] };
  };
  const live = () => members.filter((m) => !m.stopping);
  /** Every live member sees the same whole map naming exactly the live members. */
  const settled = async () => {
    const ids = live().map((m) => m.id).sort();
    const maps = await Promise.all(live().map(async (m) => view(m.node.url)));
    return maps.every((v) => JSON.stringify([...v.nodes].sort()) === JSON.stringify(ids) && v.shards.every((s) => s.node !== null))
      && new Set(maps.map((v) => JSON.stringify(v.shards.map((s) => s.node)))).size === 1;
  };
  const owners = async () => (await view(live()[0]!.node.url)).shards.map((s) => s.node);

  // Readiness as a load balancer sees it: polled, and a node answering 503 (stopping) gets no new requests.
  let polling = true;
  const poller = (async () => {
    while (polling) {
      await Promise.all(members.map(async (m) => {
        m.ready = !m.stopping && await fetch(`${m.node.url}/ready`, { signal: AbortSignal.timeout(1_000) }).then((r) => r.ok, () => false);
      }));
      await sleep(200);
    }
  })();

  const ids = Array.from({ length: 200 }, (_, i) => `${prefix}-${i}`);
  const placement = { shards, placementRes: 4 };
  const shardOfId = new Map(ids.map((id) => [id, shardOf({ kind: 'counter', id }, placement)]));
  const send = async (s: Sent, cmd: string) => {
    for (let attempt = 0; attempt < 20; attempt++) {
      const targets = members.filter((m) => m.ready);
      const m = targets[Math.floor(Math.random() * targets.length)];
      if (!m) { await sleep(100); continue; }
      try {
        const res = await fetch(`${m.node.url}/counter/${s.id}/add?n=1&cmd=${cmd}&wait`, { method: 'POST', signal: AbortSignal.timeout(30_000) });
        const body = await res.json().catch(() => undefined) as { status?: string } | undefined;
        s.ok = res.status === 200 && (body?.status === 'applied' || body?.status === 'duplicate');
        if (!s.ok) s.why = `${res.status} ${JSON.stringify(body)}`;
        break;
      } catch (error) {
        const code = (error as { cause?: { code?: string } }).cause?.code;
        // Refused or reset before an answer: a balancer sends it on (the command id makes a second delivery harmless).
        if (code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') { s.rerouted = true; continue; }
        s.ok = false;
        s.why = (error as Error).message;
        break;
      }
    }
    s.ok ??= false;
    s.end = Date.now();
  };
  let loading = true;
  const inFlight = new Set<Promise<void>>();
  const load = (async () => {
    const every = 1_000 / o.rate;
    for (let k = 0, next = Date.now(); loading; k++) {
      const id = ids[k % ids.length]!;
      const s: Sent = { id, shard: shardOfId.get(id)!, start: Date.now(), rerouted: false };
      sent.push(s);
      const p = send(s, `${id}-${k}`);
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
      next += every;
      await sleep(Math.max(0, next - Date.now()));
    }
  })();

  const rows: EventRow[] = [];
  const measure = async (event: string, act: () => Promise<void>) => {
    const beforeFrom = Date.now();
    await sleep(o.quietMs);
    const map0 = await owners();
    const at = Date.now();
    log(`scaling: ${event}`);
    await act();
    if (!(await eventually(settled, 180_000, 250))) failures.push(`${event}: the cluster did not settle within 180 s`);
    const map1 = await owners();
    await sleep(o.quietMs);
    const until = Date.now();
    // Everything sent in the window is answered (or timed out) before it is read.
    await eventually(async () => sent.filter((s) => s.start < until).every((s) => s.end !== undefined), 60_000, 100);
    const moved = new Set(map0.flatMap((owner, shard) => (owner !== map1[shard] ? [shard] : [])));
    const before = sent.filter((s) => s.start >= beforeFrom && s.start < at);
    const during = sent.filter((s) => s.start >= at && s.start < until);
    const latency = (s: Sent) => s.end! - s.start;
    const movedOnes = during.filter((s) => moved.has(s.shard));
    const row: EventRow = {
      event, requests: during.length, failed: during.filter((s) => !s.ok).length, rerouted: during.filter((s) => s.rerouted).length,
      p99BeforeMs: p99(before.map(latency)), p99DuringMs: p99(during.map(latency)),
      longestUnmovedMs: Math.max(0, ...during.filter((s) => !moved.has(s.shard)).map(latency)),
      longestMovedMs: Math.max(0, ...movedOnes.map(latency)), moved: moved.size,
    };
    for (const s of during.filter((x) => !x.ok).slice(0, 5)) failures.push(`${event}: ${s.id} (shard ${s.shard}) failed: ${s.why}`);
    rows.push(row);
    log(`scaling: ${event}: ${JSON.stringify(row)}`);
  };

  try {
    const n1 = await start('n1');
    await start('n2');
    if (!(await eventually(settled, 180_000, 250))) throw new Error('two nodes did not settle');
    void n1;
    await measure('a node joins (2 → 3)', async () => { await start('n3'); });
    await measure('a node leaves gracefully (3 → 2, SIGTERM)', async () => { await stop(members.at(-1)!, 'SIGTERM'); });
    await measure('a node joins again (2 → 3)', async () => { await start('n4'); });
    for (const m of [...live()]) {
      await measure(`rolling restart: ${m.id} (SIGTERM, then started again)`, async () => {
        await stop(m, 'SIGTERM');
        await start(`${m.id}r`);
      });
    }
    await measure('a node is killed (SIGKILL)', async () => { await stop(live().at(-1)!, 'SIGKILL'); });
  } finally {
    loading = false;
    await load;
    await Promise.allSettled([...inFlight]);
  }
  // Every acknowledged command applied exactly once; one whose answer never came, at most once.
  const acked = new Map<string, number>();
  const unknown = new Map<string, number>();
  for (const s of sent) (s.ok ? acked : unknown).set(s.id, ((s.ok ? acked : unknown).get(s.id) ?? 0) + 1);
  const wrong: string[] = [];
  const reader = live()[0]!;
  for (const id of ids) {
    const [n, maybe] = [acked.get(id) ?? 0, unknown.get(id) ?? 0];
    const state = await fetch(`${reader.node.url}/counter/${id}`, { signal: AbortSignal.timeout(10_000) })
      .then((r) => r.json() as Promise<{ applied: number }>).catch(() => undefined);
    const applied = state?.applied;
    if (applied === undefined || applied < n || applied > n + maybe) {
      wrong.push(`${id}: ${n} acknowledged (${maybe} unanswered), ${applied ?? 'no answer'} applied`);
    }
  }
  polling = false;
  await poller;
  for (const m of members) await m.node.kill('SIGKILL');
  await db.drop().catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
  return { rows, acknowledged: [...acked.values()].reduce((a, b) => a + b, 0), wrong, failures };

  async function stop(m: Member, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    m.stopping = true;
    m.ready = false;
    await m.node.kill(signal);
    members.splice(members.indexOf(m), 1);
  }
}

function p99(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)]!;
}

/** The rows as a Markdown table, for the README and the soak's output. */
export function scalingTable(rows: readonly EventRow[]): string {
  const ms = (v: number) => `${Math.round(v)} ms`;
  return [
    '| event | requests | failed | p99 before | p99 during | longest wait, unmoved shards | longest wait, moved shards | shards moved |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map((r) => `| ${r.event} | ${r.requests} | ${r.failed} | ${ms(r.p99BeforeMs)} | ${ms(r.p99DuringMs)} | ${ms(r.longestUnmovedMs)} | ` +
      `${ms(r.longestMovedMs)} | ${r.moved} |`),
  ].join('\n');
}

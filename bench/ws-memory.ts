// Heap per connected driver on a real node process: 3,000 drivers, each on an
// authenticated WebSocket session, online with one fix. The heap is the node's own
// (/metrics, prom-client's nodejs_heap_size_used_bytes), the lowest of several readings
// so garbage not yet collected does not count, less the same reading before connecting.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { eventually, startNodeProcess, type NodeProcess } from '../test/helpers/node-process.ts';
import { calls as nodeCalls, metric } from './cluster.ts';
import { GOALS } from './goals.ts';
import type { Row } from './stats.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every call this bench makes to the node, in one place (switch here when the API changes). */
const calls = {
  token: async (url: string, sub: string, role: 'driver' | 'admin') => {
    const res = await fetch(`${url}/v1/auth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sub, role }) });
    if (!res.ok) throw new Error(`token: ${res.status} ${await res.text()}`);
    return ((await res.json()) as { token: string }).token;
  },
  /** A driver's session: auth, online, one fix, each waited for its ack. Resolves with the open socket. */
  driverSession: async (url: string, token: string, fix: { lat: number; lng: number }): Promise<WebSocket> => {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/ws`);
    const answers = new Map<string, (m: { type: string; code?: string }) => void>();
    ws.on('message', (data) => {
      const m = JSON.parse(String(data)) as { type: string; ref?: string; code?: string };
      if ((m.type === 'ack' || m.type === 'error') && typeof m.ref === 'string') answers.get(m.ref)?.(m);
    });
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
    const send = (message: Record<string, unknown>, ref: string) => new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${ref}: no answer in 60 s`)), 60_000);
      answers.set(ref, (m) => { clearTimeout(timer); if (m.type === 'ack') resolve(); else reject(new Error(`${ref}: ${m.code}`)); });
      ws.send(JSON.stringify({ ...message, ref }));
    });
    try {
      await send({ type: 'auth', token }, 'auth');
      await send({ type: 'online', vehicleType: 'economy' }, 'online');
      await send({ type: 'location', lat: fix.lat, lng: fix.lng, at: new Date().toISOString() }, 'fix');
    } catch (e) {
      ws.terminate();
      throw e;
    }
    return ws;
  },
  heapUsed: async (url: string, admin: string) => metric(await nodeCalls.metrics(url, admin), 'nodejs_heap_size_used_bytes'),
};

/** A session, tried again (up to 3 times) when the node answers `unavailable` (a command timed out on a loaded machine). */
async function session(url: string, token: string, fix: { lat: number; lng: number }, retried: { n: number }): Promise<WebSocket> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await calls.driverSession(url, token, fix);
    } catch (e) {
      if (attempt >= 3 || !/unavailable|no answer/.test(String((e as Error).message))) throw e;
      retried.n++;
      await sleep(500);
    }
  }
}

/** The lowest of `readings` heap readings a second apart (a collection in between brings it down to what is live). */
async function lowestHeap(url: string, admin: string, readings: number): Promise<number> {
  let lowest = Number.POSITIVE_INFINITY;
  for (let i = 0; i < readings; i++) {
    if (i > 0) await sleep(1_000);
    lowest = Math.min(lowest, await calls.heapUsed(url, admin));
  }
  return lowest;
}

export async function wsMemoryBench(options: { quick?: boolean }): Promise<Row[]> {
  // --quick: 500 sessions (3,000 take a minute on a loaded machine); the goal is for 3,000.
  const drivers = options.quick ? 500 : 3_000;
  const readings = options.quick ? 2 : 8;
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-ws-'));
  let node: NodeProcess | undefined;
  const sockets: WebSocket[] = [];
  try {
    node = await startNodeProcess('main.ts', {
      // A node of its own: the shared services of .ci/with-services.sh stay out (empty is unset), so no other
      // run's shards, fences or drivers meet this one (PGlite under DATA_DIR, everything else in-process).
      DATABASE_URL: '', REDIS_URL: '', KAFKA_BROKERS: '',
      MODE: 'embedded', DATA_DIR: dataDir, AUTH_DEV_TOKENS: 'true', JWT_SECRET: 'bench-secret-of-sufficient-length',
      // One client address holds every session, and asks for every token.
      WS_MAX_SOCKETS_PER_IP: String(drivers + 100), RATE_LIMIT_API_PER_MIN: '1000000', LOG_LEVEL: 'info',
    }, 120_000);
    const url = node.url;
    // 'node started' comes once the port is bound; storage (PGlite here) opens after: wait for /ready.
    if (!await eventually(async () => (await fetch(`${url}/ready`)).ok, 120_000, 200)) throw new Error('node not ready within 120 s');
    const admin = await calls.token(url, 'bench-admin', 'admin');
    // Tokens first, so only the sessions are in the heap's difference.
    const tokens: string[] = [];
    for (let i = 0; i < drivers; i += 100) tokens.push(...await Promise.all(Array.from({ length: Math.min(100, drivers - i) }, (_, k) => calls.token(url, `ws-driver-${i + k}`, 'driver'))));
    // One session before the baseline, so what the first session builds once (the WebSocket server's own) is in it.
    const retried = { n: 0 };
    try {
      sockets.push(await session(url, await calls.token(url, 'ws-driver-warm', 'driver'), { lat: 40.73, lng: -73.99 }, retried));
    } catch (e) {
      throw new Error(`the first driver session failed (${(e as Error).message}); the node said:\n${node.output.filter((l) => /"level":"(warn|error)"/.test(l)).slice(-5).join('\n')}`);
    }
    const before = await lowestHeap(url, admin, readings);
    const t0 = performance.now();
    let failed = 0;
    const reasons = new Map<string, number>();
    for (let i = 0; i < drivers; i += 50) {
      const batch = await Promise.allSettled(tokens.slice(i, i + 50).map((token, k) => session(url, token, {
        lat: 40.73 + (((i + k) * 7919) % 1000 - 500) * 0.00027, lng: -73.99 + (((i + k) * 104729) % 1000 - 500) * 0.00036,
      }, retried)));
      for (const b of batch) {
        if (b.status === 'fulfilled') { sockets.push(b.value); continue; }
        failed++;
        const reason = String((b.reason as Error)?.message ?? b.reason);
        reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
      }
    }
    const connectSeconds = (performance.now() - t0) / 1000;
    const after = await lowestHeap(url, admin, readings);
    const connected = sockets.length - 1;
    const note = `${connected} drivers connected (auth, online, one fix acknowledged${retried.n ? `; ${retried.n} tries again after unavailable` : ''}${failed ? `; ${failed} failed: ${[...reasons].map(([r, n]) => `${n} ${r}`).join(', ')}` : ''}) in ${Math.round(connectSeconds)} s; `
      + `lowest of ${readings} /metrics readings a second apart, less the same before connecting (${Math.round(before / 2 ** 20)} MiB); embedded node process${options.quick ? '; --quick: 500 drivers, the goal is for 3,000' : ''}`;
    return [{
      bench: 'memory', case: `heap per connected driver, WebSocket session included, ${drivers.toLocaleString('en-US')} drivers`,
      value: Math.round(((after - before) / Math.max(1, connected)) / 102.4) / 10, unit: 'KiB', note, goal: GOALS.heapPerConnectedDriver,
    }];
  } finally {
    for (const ws of sockets) ws.terminate();
    await node?.kill('SIGTERM');
    rmSync(dataDir, { recursive: true, force: true });
  }
}

// The bench's clients of a real node process (main.ts, as `npm start` runs it): drivers on
// WebSocket sessions that go online, send fixes, and answer offers (accept with a given
// probability, then arrive, start and complete at once; or decline), riders over HTTP
// (quote, book), and the node's own memory read through its inspector after forced
// collections (the node runs with --expose-gc). Every call to the node is here.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { WebSocket } from 'ws';
import { eventually, startCommand, type NodeProcess } from '../test/helpers/node-process.ts';
import { npmStart } from '../test/helpers/npm-start.ts';
import type { Point } from '../actors/geo.ts';
import { seeded } from './city.ts';

export const JWT_SECRET = 'bench-secret-of-sufficient-length';
const KEY = new TextEncoder().encode(JWT_SECRET);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A token signed with the nodes' secret, as the identity provider would issue it (no request to the node). */
export const tokenFor = (sub: string, role: 'driver' | 'rider' | 'admin') =>
  new SignJWT({ role }).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuer('dispatch').setIssuedAt().setExpirationTime('2h').sign(KEY);

/** Limits a bench load would trip over from one client address (they are per user or IP in production). */
export const OPEN_LIMITS = {
  WS_MAX_SOCKETS_PER_IP: '100000', RATE_LIMIT_API_PER_MIN: '1000000', RATE_LIMIT_BOOKINGS_PER_MIN: '1000000',
  // Each bench socket sends as fast as it is answered (tens of messages a second, a phone about one): over
  // the default 20 a second per user, a message is refused with an error that names no ref, and its sender
  // waited 60 s for an answer (counted as refused) instead of measuring.
  WS_MESSAGES_PER_SECOND: '10000', LOCATION_FIXES_PER_MINUTE: '60000', AUTH_DEV_TOKENS: 'true', JWT_SECRET,
};

export interface BenchNode {
  readonly proc: NodeProcess;
  readonly url: string;
  readonly pid: number;
  /** heapUsed and RSS after two forced collections, read inside the node. */
  memory(): Promise<{ heapUsed: number; rss: number }>;
  /** Live entities holding a mailbox now (the node's actors_holding_mailbox gauge). */
  mailboxes(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * The bench's node command: `npm start`'s (its variables and Node flags, read from
 * package.json), with --expose-gc and an inspector on a free port added, logging at info
 * as by default.
 */
export function benchNodeCommand(env: Record<string, string>): { args: string[]; env: Record<string, string> } {
  const start = npmStart();
  return { args: [...start.flags, '--expose-gc', '--inspect=127.0.0.1:0', start.script], env: { ...start.env, LOG_LEVEL: 'info', ...env } };
}

/** Starts the node as `npm start` does (benchNodeCommand) and waits for /ready. */
export async function startBenchNode(env: Record<string, string>): Promise<BenchNode> {
  const dataDir = env.DATA_DIR ?? mkdtempSync(join(tmpdir(), 'bench-node-'));
  const command = benchNodeCommand({ DATA_DIR: dataDir, ...env });
  const proc = await startCommand(process.execPath, command.args, command.env, 240_000);
  const url = proc.url;
  if (!await eventually(async () => (await fetch(`${url}/ready`)).ok, 240_000, 200)) throw new Error(`node at ${url} not ready within 240 s`);
  const inspectorUrl = proc.output.map((l) => /Debugger listening on (ws:\/\/\S+)/.exec(l)?.[1]).find(Boolean);
  let inspector: WebSocket | undefined;
  let seq = 0;
  const evaluate = async (expression: string): Promise<string> => {
    if (!inspectorUrl) throw new Error('the node printed no inspector address');
    if (!inspector) {
      inspector = new WebSocket(inspectorUrl);
      await new Promise<void>((resolve, reject) => { inspector!.once('open', () => resolve()); inspector!.once('error', reject); });
    }
    const id = ++seq;
    return new Promise((resolve, reject) => {
      const onMessage = (data: unknown) => {
        const m = JSON.parse(String(data)) as { id?: number; result?: { result?: { value?: string } }; error?: { message: string } };
        if (m.id !== id) return;
        inspector!.off('message', onMessage);
        if (m.error) reject(new Error(m.error.message)); else resolve(m.result?.result?.value ?? '');
      };
      inspector!.on('message', onMessage);
      inspector!.send(JSON.stringify({ id, method: 'Runtime.evaluate', params: { expression, returnByValue: true, awaitPromise: true } }));
    });
  };
  return {
    proc, url, pid: proc.child.pid!,
    async memory() {
      const value = await evaluate('(async () => { for (let i = 0; i < 3; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 50)); } '
        + 'const m = process.memoryUsage(); return JSON.stringify({ heapUsed: m.heapUsed, rss: m.rss }); })()');
      return JSON.parse(value) as { heapUsed: number; rss: number };
    },
    async mailboxes() {
      const admin = await tokenFor('bench-admin', 'admin');
      const text = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${admin}` } }).then((r) => r.text());
      const value = /^actors_holding_mailbox (\d+)$/m.exec(text)?.[1];
      if (value === undefined) throw new Error('the node\'s /metrics has no actors_holding_mailbox');
      return Number(value);
    },
    async stop() {
      inspector?.terminate();
      await proc.kill('SIGTERM');
    },
  };
}

export interface OfferPolicy {
  /** Probability a driver accepts an offer (then arrives, starts and completes at once). */
  accept: number;
}

/** Counts of the commands the clients made that the node answered, by name. */
export type Tally = Map<string, number>;
export const count = (t: Tally, name: string, n = 1) => t.set(name, (t.get(name) ?? 0) + n);

/** A driver on a WebSocket session. */
export class BenchDriver {
  readonly id: string;
  readonly #ws: WebSocket;
  readonly #answers = new Map<string, (m: { type: string; code?: string }) => void>();
  #ref = 0;
  /** Set by the bench: when and what it offered, and how to answer. */
  onOffer: ((bookingId: string, at: number) => void) | undefined;
  policy: OfferPolicy = { accept: 0 };
  rand: () => number;
  tally: Tally | undefined;
  /** When set, each command's round trip (sent → ack), ms. */
  timings: number[] | undefined;
  /** Called once a ride this driver accepted is completed. */
  onDone: ((bookingId: string) => void) | undefined;

  private constructor(id: string, ws: WebSocket, seed: number) {
    this.id = id;
    this.#ws = ws;
    this.rand = seeded(seed);
    ws.on('message', (data) => {
      const at = performance.now();
      const m = JSON.parse(String(data)) as { type: string; ref?: string; code?: string; bookingId?: string };
      if ((m.type === 'ack' || m.type === 'error') && typeof m.ref === 'string') {
        const answer = this.#answers.get(m.ref);
        this.#answers.delete(m.ref);
        answer?.(m);
      } else if (m.type === 'offer' && m.bookingId) {
        this.onOffer?.(m.bookingId, at);
        if (this.tally) count(this.tally, 'offer');
        void this.#answer(m.bookingId);
      }
    });
  }

  static async connect(url: string, id: string, seed: number): Promise<BenchDriver> {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/ws`);
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
    const driver = new BenchDriver(id, ws, seed);
    try {
      await driver.call({ type: 'auth', token: await tokenFor(id, 'driver') });
      await driver.call({ type: 'online', vehicleType: 'economy' });
    } catch (e) {
      ws.terminate();
      throw e;
    }
    return driver;
  }

  /** Sends and waits for its ack; an error answer rejects with its code. */
  call(message: Record<string, unknown>, timeoutMs = 60_000): Promise<void> {
    const ref = `r${++this.#ref}`;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { this.#answers.delete(ref); reject(new Error(`${String(message.type)}: no answer in ${timeoutMs / 1000} s`)); }, timeoutMs);
      this.#answers.set(ref, (m) => { clearTimeout(timer); if (m.type === 'ack') resolve(); else reject(new Error(`${String(message.type)}: ${m.code}`)); });
      this.#ws.send(JSON.stringify({ ...message, ref }));
    });
  }

  fix(p: Point): Promise<void> {
    return this.call({ type: 'location', lat: p.lat, lng: p.lng, at: new Date().toISOString() });
  }

  fixes(points: readonly Point[]): Promise<void> {
    const now = Date.now();
    return this.call({ type: 'location.batch', fixes: points.map((p, i) => ({ lat: p.lat, lng: p.lng, at: new Date(now - (points.length - 1 - i)).toISOString() })) });
  }

  async #timed(message: Record<string, unknown>): Promise<void> {
    const t0 = performance.now();
    await this.call(message);
    this.timings?.push(performance.now() - t0);
  }

  async #answer(bookingId: string): Promise<void> {
    const t = this.tally;
    try {
      if (this.rand() >= this.policy.accept) {
        await this.#timed({ type: 'offer.decline', bookingId });
        if (t) count(t, 'decline');
        return;
      }
      await this.#timed({ type: 'offer.accept', bookingId });
      if (t) count(t, 'accept');
      for (const step of ['trip.arrived', 'trip.start', 'trip.complete']) {
        await this.#timed({ type: step, bookingId });
        if (t) count(t, step);
      }
      this.onDone?.(bookingId);
    } catch (e) {
      // An offer withdrawn or expired meanwhile is answered with an error: counted, not fatal.
      if (t) count(t, `refused: ${(e as Error).message}`);
    }
  }

  close(): void {
    this.#ws.terminate();
  }
}

/**
 * A cluster node lets a driver without a vehicle go online only with a type an admin allowed
 * (a development node allows any): allow these drivers economy first, 20 requests at a time.
 */
export async function allowEconomy(url: string, ids: readonly string[]): Promise<void> {
  const admin = await tokenFor('bench-admin', 'admin');
  for (let i = 0; i < ids.length; i += 20) {
    await Promise.all(ids.slice(i, i + 20).map(async (id) => {
      const res = await fetch(`${url}/v1/admin/drivers`, {
        method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` },
        body: JSON.stringify({ id, name: `Bench driver ${id}`, vehicleTypes: ['economy'] }),
      });
      if (res.status !== 201) throw new Error(`allowing ${id} economy: HTTP ${res.status} ${await res.text()}`);
    }));
  }
}

/** Connects `n` drivers at `positions`, 50 at a time, round-robin over `urls`, each online with one fix. */
export async function connectDrivers(urls: readonly string[], prefix: string, positions: readonly Point[], from = 0): Promise<BenchDriver[]> {
  const out: BenchDriver[] = [];
  for (let i = 0; i < positions.length; i += 50) {
    const batch = await Promise.all(positions.slice(i, i + 50).map(async (p, k) => {
      const n = from + i + k;
      for (let attempt = 1; ; attempt++) {
        try {
          const d = await BenchDriver.connect(urls[n % urls.length]!, `${prefix}-${n}`, n + 1);
          await d.fix(p);
          return d;
        } catch (e) {
          if (attempt >= 3) throw e;
          await sleep(500);
        }
      }
    }));
    out.push(...batch);
  }
  return out;
}

export interface RiderAnswer { readonly status: number; readonly id?: string; readonly quoteId?: string; readonly error?: string }

async function post(url: string, path: string, token: string, body: unknown): Promise<RiderAnswer> {
  try {
    const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify(body) });
    const json = await res.json().catch(() => ({})) as { id?: string; quoteId?: string; error?: { code?: string } };
    return { status: res.status, id: json.id, quoteId: json.quoteId, error: res.ok ? undefined : `${res.status} ${json.error?.code ?? ''}`.trim() };
  } catch (e) {
    return { status: 0, error: (e as Error).message };
  }
}

export const rider = {
  quote: (url: string, token: string, pickup: Point, dropoff: Point) => post(url, '/v1/quotes', token, { pickup, dropoff, vehicleType: 'economy' }),
  book: (url: string, token: string, body: { quoteId: string } | { pickup: Point; dropoff: Point; vehicleType: string }) => post(url, '/v1/bookings', token, body),
};

// `npm run simulate`: a city of driver apps and riders against any node URL.
// Drivers hold real WebSockets, cruise around, accept most offers, drive to the
// pickup and on to the dropoff (trip.arrived, trip.start, trip.complete); riders
// book at a steady rate (some for later) and follow their bookings on sockets of
// their own. Driving runs SPEEDUP times faster than real (20 by default: a 2 km
// ride takes about 10 s; timeouts on the node keep real time). One progress line
// rewrites itself on a terminal (a line every PROGRESS_S seconds otherwise).
// Needs a node with AUTH_DEV_TOKENS=true (it asks for tokens), or, against a cluster (which
// refuses development tokens), the cluster's JWT_SECRET (and JWT_ISSUER if not the default)
// in its environment: it then signs its riders' and drivers' tokens itself. Sockets
// authenticate with their first message, so tokens stay out of URLs.
//
// Drivers come online 50 at a time. A socket the node refuses (a cap on sockets per
// address or per user, a token refused) is tried again with backoff and, failing that,
// counted and reported with the node's setting that refused it; it never ends the run.
// A development node (AUTH_DEV_TOKENS=true) sets its caps per address to fit thousands of
// drivers from this one address; against another node, raise WS_MAX_SOCKETS_PER_IP and
// RATE_LIMIT_API_PER_MIN on it for more than about 150 drivers.
//
// When it stops (DURATION_S reached, SIGINT or SIGTERM) it leaves nothing behind:
// no new bookings; trips under way are driven straight to their dropoff and
// completed; every other booking it made that has not finished is cancelled by
// its rider (POST /v1/bookings/:id/cancel); drivers go offline; then a summary.
// Exit status 0 when every booking it made ended, 1 if some were left open.
// Cleanup is bounded by CLEANUP_S; further signals do not cut it short (under npm one
// Ctrl-C arrives twice, from the terminal and forwarded by npm), SIGKILL does.
//
//   URL=http://localhost:8000 DRIVERS=60 BOOKINGS_PER_MIN=40 DURATION_S=120 npm run simulate
//   more knobs: SPEEDUP, SCHEDULED_SHARE (0.1), SCHEDULE_AHEAD_S (900), PROGRESS_S (10), CLEANUP_S (30)
//   SEED (1): drivers' starts and cruising, the booking stream (times, places, vehicle types, which
//   are for later) and each driver's answer to each booking come from it (scripts/rng.ts), so runs
//   with one SEED see the same city; what the node does with it (who is offered what) may differ.
//   RESULT_FILE: the run's figures as JSON (scripts/sim-metrics.ts), raw samples included
//   WARMUP_S (0): the figures leave out the first seconds of bookings, while the fleet fills up
//   --compare: greedy against batched dispatch on fresh nodes (scripts/simulate-compare.ts)
//   RECORD_FILE: appends one JSON line { id, riderId, at } per booking the node acknowledged
//   (201), for a checker to verify afterwards (the soak, scripts/soak.ts, does)

import { randomUUID } from 'node:crypto';
import { appendFileSync, writeFileSync } from 'node:fs';
import { SignJWT } from 'jose';
import { WebSocket } from 'ws';
import { streamOf, type Random } from './rng.ts';
import {
  distanceKm, DRIVE_KMH, driverStart, KM_PER_DEG_LAT, kmPerDegLng, planned, pointNear, STREAM, type Planned, type Point, type VehicleType,
} from './sim-city.ts';
import { metricLines, summarise, type RawSamples } from './sim-metrics.ts';

const env = (name: string, fallback: number): number => {
  const raw = process.env[name];
  const value = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isFinite(value) || value < 0) { console.error(`${name} must be a number >= 0 (got ${raw})`); process.exit(2); }
  return value;
};

const URL_BASE = (process.env.URL ?? 'http://localhost:8000').replace(/\/$/, '');
const DRIVERS = env('DRIVERS', 40);
const BOOKINGS_PER_MIN = env('BOOKINGS_PER_MIN', 30);
const DURATION_S = env('DURATION_S', 0); // 0: until interrupted
const SPEEDUP = Math.max(env('SPEEDUP', 20), 0.1); // driving runs this many times faster than real
const SCHEDULED_SHARE = Math.min(env('SCHEDULED_SHARE', 0.1), 1); // bookings made for later
const PROGRESS_S = Math.max(env('PROGRESS_S', 10), 1); // a progress line this often when stdout is not a terminal
const CLEANUP_S = Math.max(env('CLEANUP_S', 30), 1); // how long the clean-up at the end may take
const RECORD_FILE = process.env.RECORD_FILE || undefined; // acknowledged bookings, one JSON line each
const RESULT_FILE = process.env.RESULT_FILE || undefined; // the run's figures, JSON
const SEED = Math.floor(env('SEED', 1));
const WARMUP_S = env('WARMUP_S', 0);
const ACCEPT_RATE = 0.9;
const STARTS_AT_ONCE = 50; // drivers coming online together
// Bookings for later: past the node's dispatch lead (SCHEDULE_LEAD_MS, 10 min by default) they wait as `scheduled`.
// The compare sets it shorter, with a shorter lead on its nodes, so bookings for later activate within a run.
const SCHEDULE_AHEAD_MS = env('SCHEDULE_AHEAD_S', 15 * 60) * 1000;
const CRUISE_KMH = 20; // looking for fares
const FIX_MS = 1_000; // one GPS fix a second (real time)
const LIVE = new Set(['scheduled', 'searching', 'offered', 'accepted', 'arriving', 'in_progress']);
const CANCELLABLE = new Set(['scheduled', 'searching', 'offered', 'accepted', 'arriving']);

interface BookingView { id: string; status: string; driverId?: string }
interface SimBooking {
  id: string; riderId: string; status: string; scheduled: boolean; requestedAt: number; rider?: Conn; cancelledAtStop?: string;
  /** Its place in the booking stream: what seeds the drivers' answers to it. */
  seq: number;
  /** When its 201 arrived (Date.now()). */
  ackAt: number;
}

const stats = {
  online: 0, peakOnline: 0, unstarted: 0, refusals: 0, lastRefusal: '', booked: 0, scheduled: 0, offers: 0, accepted: 0, declined: 0, tripsDone: 0,
  completed: 0, noDriver: 0, cancelled: 0, finishedAtStop: 0, errors: 0, lastError: '', waits: [] as number[], startedAt: Date.now(),
};
const bookings = new Map<string, SimBooking>();
/** Drivers' offers for a booking whose 201 has not arrived yet (a fast node offers first): woken when it does. */
const awaitingAck = new Map<string, (() => void)[]>();
/** First offer frame for each booking at any driver (Date.now()). */
const firstOfferAt = new Map<string, number>();
const raw: RawSamples = { firstOfferMs: [], pickupKm: [], pickupSimS: [], onlineMs: 0, engagedMs: 0 };
/** The measured window: from all drivers online (and WARMUP_S) to the stop. Samples, driver time and trips outside it are not counted. */
const span = { from: Date.now(), to: Number.POSITIVE_INFINITY };
let tripsInWindow = 0;
/** Real ms of [from, to) inside the measured window. */
const inWindow = (from: number, to: number) => Math.max(0, Math.min(to, span.to) - Math.max(from, span.from));
const measuring = () => !stopping && Date.now() >= span.from;
const inflight = new Set<Promise<void>>();
let stopping = false; // no new bookings, no new offers
let finishing = false; // trips under way drive straight to their dropoff

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function error(context: string, e: unknown): void {
  stats.errors++;
  stats.lastError = `${context}: ${e instanceof Error ? e.message : String(e)}`;
}

/** Nothing to simulate against (no node, no development tokens): the run ends, saying why. */
class Fatal extends Error {}

/** The node's settings behind each refusal it can answer a socket or a token request with. */
const CAPS: Readonly<Record<string, string>> = {
  'from this address': 'WS_MAX_SOCKETS_PER_IP',
  'for this user': 'WS_MAX_SOCKETS_PER_USER',
};

/** A socket or request the node refused, with the setting that refused it when there is one. */
class Refused extends Error {
  constructor(status: number, code: string, message: string) {
    const cap = Object.entries(CAPS).find(([phrase]) => message.includes(phrase))?.[1];
    super(`the node refused it: ${status} ${code}, ${message}${cap ? ` (its ${cap}: raise it on the node, or run fewer DRIVERS)` : ''}`);
  }
}

/** Tries `attempt` again after a refusal (1, 2, 4, 8 s), counting each; other failures pass through. */
async function retryRefused<T>(attempt: () => Promise<T>): Promise<T> {
  for (let wait = 1_000; ; wait *= 2) {
    try {
      return await attempt();
    } catch (e) {
      if (!(e instanceof Refused) || wait > 8_000 || stopping) throw e;
      stats.refusals++;
      stats.lastRefusal = e.message;
      await sleep(wait);
    }
  }
}

// ---- HTTP ------------------------------------------------------------------

async function api<T>(method: string, path: string, tok?: string, body?: unknown): Promise<{ status: number; body: T }> {
  const headers: Record<string, string> = {};
  if (tok) headers.authorization = `Bearer ${tok}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${URL_BASE}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  }).catch((e: unknown) => {
    if ((e as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED') throw new Fatal(`nothing answers at ${URL_BASE}: start a node first`);
    throw e;
  });
  const text = await res.text();
  let parsed: unknown = text;
  try { parsed = text ? JSON.parse(text) : undefined; } catch { /* not JSON */ }
  return { status: res.status, body: parsed as T };
}

const tokens = new Map<string, { token: string; at: number }>();
const SIGNING_SECRET = process.env.JWT_SECRET ? new TextEncoder().encode(process.env.JWT_SECRET) : undefined;

/** A token signed here with the cluster's JWT_SECRET, as the nodes sign them (HS256, 15 minutes). */
function signed(sub: string, role: 'rider' | 'driver' | 'admin', secret: Uint8Array): Promise<string> {
  return new SignJWT({ role }).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuer(process.env.JWT_ISSUER || 'dispatch')
    .setIssuedAt().setExpirationTime('15m').sign(secret);
}

/** A token (development, or signed here), reused for five minutes (tokens live 15 by default). */
async function token(sub: string, role: 'rider' | 'driver'): Promise<string> {
  const cached = tokens.get(sub);
  if (cached && Date.now() - cached.at < 5 * 60_000) return cached.token;
  if (SIGNING_SECRET) {
    const made = await signed(sub, role, SIGNING_SECRET);
    tokens.set(sub, { token: made, at: Date.now() });
    return made;
  }
  const res = await retryRefused(async () => {
    const answer = await api<{ token: string; error?: { code: string; message: string } }>('POST', '/v1/auth/token', undefined, { sub, role });
    // Development tokens are asked for from this one address: the node's limit per address (not per user) applies.
    if (answer.status === 429) throw new Refused(429, 'rate_limited', 'too many requests from this address (its RATE_LIMIT_API_PER_MIN)');
    return answer;
  });
  if (res.status === 404) {
    throw new Fatal(`${URL_BASE} does not issue development tokens: start it with AUTH_DEV_TOKENS=true, or give this JWT_SECRET`);
  }
  if (res.status !== 200) throw new Error(`token: HTTP ${res.status}`);
  tokens.set(sub, { token: res.body.token, at: Date.now() });
  return res.body.token;
}

/**
 * A node without development tokens (a cluster) lets a driver go online only as its vehicle's
 * type or one an admin allowed it: signing with the cluster's secret, the simulator is that
 * admin, and allows its drivers the types it drives. A development node needs nothing.
 */
async function allowTypes(driverId: string): Promise<void> {
  if (!SIGNING_SECRET) return;
  const admin = await signed('simulator', 'admin', SIGNING_SECRET);
  const types = { vehicleTypes: ['economy', 'comfort'] };
  const made = await api('POST', '/v1/admin/drivers', admin, { id: driverId, name: `Simulated driver ${driverId}`, ...types });
  if (made.status === 201) return;
  // Registered by an earlier run: its allowed types are set again.
  const changed = await api('PATCH', `/v1/admin/drivers/${driverId}`, admin, types);
  if (changed.status !== 200) throw new Error(`allowing ${driverId} its vehicle types: HTTP ${made.status}, then ${changed.status}`);
}

// ---- WebSocket ---------------------------------------------------------------

interface Reply { type: 'ack' | 'error'; code?: string; message?: string }

/** One socket, authenticated by its first message (tokens stay out of URLs), with request/reply by `ref`. */
class Conn {
  readonly #ws: WebSocket;
  readonly #pending = new Map<string, (r: Reply) => void>();
  #refs = 0;
  onPush: (m: Record<string, unknown>) => void = () => undefined;
  onClose: () => void = () => undefined;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.on('message', (data) => {
      let m: Record<string, unknown>;
      try { m = JSON.parse(data.toString()); } catch { return; }
      const waiter = typeof m.ref === 'string' ? this.#pending.get(m.ref) : undefined;
      if (waiter && (m.type === 'ack' || m.type === 'error')) {
        this.#pending.delete(m.ref as string);
        waiter(m as unknown as Reply);
        return;
      }
      this.onPush(m);
    });
    ws.on('close', () => {
      for (const w of this.#pending.values()) w({ type: 'error', code: 'closed', message: 'socket closed' });
      this.#pending.clear();
      this.onClose();
    });
    ws.on('error', () => undefined); // a close follows
  }

  /** An authenticated socket; a refusal by the node is retried a few times, then thrown naming the node's setting. */
  static open(tok: string): Promise<Conn> {
    return retryRefused(() => Conn.#open(tok));
  }

  static async #open(tok: string): Promise<Conn> {
    const ws = new WebSocket(`${URL_BASE.replace(/^http/, 'ws')}/v1/ws`);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      // Refused before the upgrade (a cap on sockets per address): the node's JSON error says which.
      ws.once('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => { text += chunk.toString(); });
        res.on('end', () => {
          let body: { error?: { code?: string; message?: string } } = {};
          try { body = JSON.parse(text); } catch { /* not JSON */ }
          reject(new Refused(res.statusCode ?? 0, body.error?.code ?? 'refused', body.error?.message ?? text));
          ws.on('error', () => undefined); // the aborted handshake's own error: already answered
          ws.terminate();
        });
      });
      ws.once('error', reject);
    });
    const conn = new Conn(ws);
    const reply = await conn.call({ type: 'auth', token: tok });
    if (reply.type !== 'ack') {
      ws.close();
      if (reply.code === 'too_many_sockets') throw new Refused(429, reply.code, reply.message ?? '');
      throw new Error(`websocket auth: ${reply.code} ${reply.message}`);
    }
    return conn;
  }

  get isOpen(): boolean {
    return this.#ws.readyState === WebSocket.OPEN;
  }

  send(m: Record<string, unknown>): void {
    if (this.isOpen) this.#ws.send(JSON.stringify(m));
  }

  /** Sends and waits for the ack or error (an error reply if the socket closes or nothing comes within 10 s). */
  call(m: Record<string, unknown>): Promise<Reply> {
    if (!this.isOpen) return Promise.resolve({ type: 'error', code: 'closed', message: 'socket closed' });
    const ref = `r${++this.#refs}`;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(ref);
        resolve({ type: 'error', code: 'timeout', message: `no reply to ${String(m.type)}` });
      }, 10_000);
      this.#pending.set(ref, (r) => { clearTimeout(timer); resolve(r); });
      this.send({ ...m, ref });
    });
  }

  close(): void {
    if (this.#ws.readyState === WebSocket.OPEN || this.#ws.readyState === WebSocket.CONNECTING) this.#ws.close(1000, 'simulation over');
  }
}

// ---- Drivers -----------------------------------------------------------------

interface Job { readonly bookingId: string; aborted: boolean }
interface Offer { bookingId: string; pickup: Point; dropoff: Point }

/** The booking behind an offer, once its 201 is in (at most 5 s: a booking another client made never comes). */
async function bookingOf(id: string): Promise<SimBooking | undefined> {
  const known = bookings.get(id);
  if (known) return known;
  await Promise.race([new Promise<void>((resolve) => awaitingAck.set(id, [...(awaitingAck.get(id) ?? []), resolve])), sleep(5_000)]);
  return bookings.get(id);
}

/** A stable number for a string (FNV-1a), for a booking outside this run's stream. */
const hashOf = (text: string) => [...text].reduce((h, c) => Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0, 2166136261);

class SimDriver {
  readonly id = `sim-d-${randomUUID().slice(0, 8)}`;
  readonly #index: number;
  readonly #cruising: Random;
  readonly #vehicleType: VehicleType;
  #conn!: Conn;
  #at: Point;
  #heading = 0;
  #job: Job | undefined;
  #onlineAt: number | undefined;
  /** Since when it holds an offer or a trip (undefined: free). */
  #engagedAt: number | undefined;

  /** Driver number `index` of the city: where it starts, what it drives and how it cruises come from SEED and the number. */
  constructor(index: number) {
    this.#index = index;
    ({ at: this.#at, vehicleType: this.#vehicleType } = driverStart(SEED, index));
    this.#cruising = streamOf(SEED, STREAM.cruise, index);
  }

  get busy(): boolean {
    return this.#job !== undefined;
  }

  async start(): Promise<void> {
    await allowTypes(this.id);
    this.#conn = await Conn.open(await token(this.id, 'driver'));
    this.#conn.onPush = (m) => this.#onPush(m);
    this.#fix(); // a position first, so the node can place the driver in a cell
    const online = await this.#conn.call({ type: 'online', vehicleType: this.#vehicleType });
    if (online.type !== 'ack') throw new Error(`driver online: ${online.code} ${online.message}`);
    stats.online++;
    stats.peakOnline = Math.max(stats.peakOnline, stats.online);
    this.#onlineAt = Date.now();
    this.#conn.onClose = () => { stats.online--; this.#offline(); };
    void this.#cruise();
  }

  /** Offline (only once no booking is in hand) and close the socket. */
  async stop(): Promise<void> {
    for (let i = 0; i < 10 && this.#job; i++) await sleep(300);
    const reply = await this.#conn.call({ type: 'offline' });
    if (reply.type === 'error' && reply.code !== 'closed') error(`${this.id} offline`, reply.message);
    this.#offline();
    this.#conn.close();
  }

  /** Its online time (and engaged time) so far goes into the figures, once. */
  #offline(): void {
    if (this.#onlineAt === undefined) return;
    this.#release();
    raw.onlineMs += inWindow(this.#onlineAt, Date.now());
    this.#onlineAt = undefined;
  }

  #engage(): void {
    this.#engagedAt ??= Date.now();
  }

  #release(): void {
    if (this.#engagedAt === undefined) return;
    raw.engagedMs += inWindow(this.#engagedAt, Date.now());
    this.#engagedAt = undefined;
  }

  #fix(): void {
    this.#conn.send({
      type: 'location', lat: this.#at.lat, lng: this.#at.lng, heading: this.#heading, speed: DRIVE_KMH / 3.6, at: new Date().toISOString(),
    });
  }

  /** Moves toward `to`, one fix a second; false when `interrupted` says to stop first. */
  async #driveTo(to: Point, kmh: number, interrupted: () => boolean, rush = () => false): Promise<boolean> {
    const stepKm = (kmh / 3_600_000) * FIX_MS * SPEEDUP;
    for (;;) {
      if (interrupted() || !this.#conn.isOpen) return false;
      const km = distanceKm(this.#at, to);
      if (km <= stepKm || rush()) { this.#at = to; this.#fix(); return true; }
      const f = stepKm / km;
      this.#heading = Math.round(
        ((Math.atan2((to.lng - this.#at.lng) * kmPerDegLng(this.#at.lat), (to.lat - this.#at.lat) * KM_PER_DEG_LAT) * 180) / Math.PI + 360)
          % 360,
      );
      this.#at = { lat: this.#at.lat + (to.lat - this.#at.lat) * f, lng: this.#at.lng + (to.lng - this.#at.lng) * f };
      this.#fix();
      await sleep(FIX_MS);
    }
  }

  /** Free drivers drift around town until an offer is taken. */
  async #cruise(): Promise<void> {
    while (this.#conn.isOpen) {
      if (this.#job || stopping) { await sleep(FIX_MS); continue; }
      const to = pointNear(this.#at, 0.5 + this.#cruising() * 1.5, this.#cruising);
      await this.#driveTo(to, CRUISE_KMH, () => this.#job !== undefined || stopping);
    }
  }

  #onPush(m: Record<string, unknown>): void {
    const bookingId = typeof m.bookingId === 'string' ? m.bookingId : undefined;
    if (m.type === 'offer' && bookingId) { void this.#onOffer(m as unknown as Offer); return; }
    // The booking went away (cancelled, or the offer was withdrawn after its timeout).
    if ((m.type === 'booking.cancelled' || m.type === 'offer.expired') && this.#job?.bookingId === bookingId) this.#job!.aborted = true;
  }

  async #onOffer(offer: Offer): Promise<void> {
    stats.offers++;
    if (!firstOfferAt.has(offer.bookingId)) firstOfferAt.set(offer.bookingId, Date.now());
    if (this.#job) return; // the node offers to free drivers only; nothing to do
    this.#engage();
    const job: Job = { bookingId: offer.bookingId, aborted: false };
    this.#job = job;
    try {
      // This driver's answer to this booking, and how long it reads it, are the same in every run with this SEED.
      const b = await bookingOf(offer.bookingId);
      const answer = streamOf(SEED, STREAM.answer, this.#index * 1_000_003 + (b ? b.seq : hashOf(offer.bookingId)));
      const accepts = answer() < ACCEPT_RATE;
      const readMs = 300 + answer() * 900;
      if (stopping || !accepts) {
        await sleep(readMs);
        stats.declined++;
        this.#conn.send({ type: 'offer.decline', bookingId: offer.bookingId });
        return;
      }
      await sleep(readMs); // the driver reads the offer
      if (job.aborted || stopping) { this.#conn.send({ type: 'offer.decline', bookingId: offer.bookingId }); return; }
      const accepted = await this.#conn.call({ type: 'offer.accept', bookingId: offer.bookingId });
      if (accepted.type !== 'ack') return; // expired or given to someone else meanwhile
      stats.accepted++;
      await this.#trip(job, offer);
    } catch (e) {
      error(`${this.id} trip`, e);
    } finally {
      if (this.#job === job) { this.#job = undefined; this.#release(); }
    }
  }

  /** Pickup, wait for the rider, ride, drop off: each step acknowledged by the node before the next. */
  async #trip(job: Job, offer: Offer): Promise<void> {
    const step = async (type: 'trip.arrived' | 'trip.start' | 'trip.complete'): Promise<boolean> => {
      if (job.aborted) return false;
      const reply = await this.#conn.call({ type, bookingId: job.bookingId });
      if (reply.type === 'ack') return true;
      // Refused because the booking was cancelled under us: not an error of the simulation.
      if (!job.aborted && reply.code !== 'closed') error(`${type} ${job.bookingId}`, `${reply.code} ${reply.message}`);
      return false;
    };
    const aborted = () => job.aborted;
    const acceptedAt = Date.now();
    const counted = measuring(); // accepted inside the window: its pickup is a sample
    if (counted) raw.pickupKm.push(distanceKm(this.#at, offer.pickup));
    if (!(await this.#driveTo(offer.pickup, DRIVE_KMH, aborted))) return;
    if (!(await step('trip.arrived'))) return;
    if (counted) raw.pickupSimS.push(((Date.now() - acceptedAt) * SPEEDUP) / 1000);
    for (let waited = 0; waited < 2_000 && !finishing && !job.aborted; waited += 250) await sleep(250); // the rider gets in
    if (!(await step('trip.start'))) return;
    // A trip under way when the simulation stops cannot be cancelled: it is driven to its end at once.
    if (!(await this.#driveTo(offer.dropoff, DRIVE_KMH, aborted, () => finishing))) return;
    if (await step('trip.complete')) {
      stats.tripsDone++;
      if (measuring()) tripsInWindow++;
    }
  }
}

// ---- Riders ------------------------------------------------------------------

function track(b: SimBooking, status: string): void {
  if (b.status === status) return;
  const was = b.status;
  b.status = status;
  if (status === 'accepted' && !b.scheduled) stats.waits.push(Date.now() - b.requestedAt);
  if (status === 'completed') { stats.completed++; if (finishing && was === 'in_progress') stats.finishedAtStop++; }
  if (status === 'no_driver') stats.noDriver++;
  if (status === 'cancelled') stats.cancelled++;
  if (!LIVE.has(status)) b.rider?.close();
}

async function book(plan: Planned): Promise<void> {
  const riderId = `sim-r-${randomUUID().slice(0, 8)}`;
  const tok = await token(riderId, 'rider');
  const { pickup, dropoff, vehicleType, scheduled } = plan;
  const body = {
    pickup,
    dropoff,
    vehicleType,
    ...(scheduled ? { scheduledAt: new Date(Date.now() + SCHEDULE_AHEAD_MS).toISOString() } : {}),
  };
  const requestedAt = Date.now();
  const res = await api<BookingView>('POST', '/v1/bookings', tok, body);
  if (res.status !== 201) { error('booking', `HTTP ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`); return; }
  const b: SimBooking = { id: res.body.id, riderId, status: '', scheduled, requestedAt, seq: plan.seq, ackAt: Date.now() };
  bookings.set(b.id, b);
  for (const wake of awaitingAck.get(b.id) ?? []) wake();
  awaitingAck.delete(b.id);
  // Written before anything else can fail: a booking the node acknowledged is on record.
  if (RECORD_FILE) appendFileSync(RECORD_FILE, `${JSON.stringify({ id: b.id, riderId, at: requestedAt })}\n`);
  stats.booked++;
  if (scheduled) stats.scheduled++;
  track(b, res.body.status);
  if (!LIVE.has(b.status)) return;
  // The rider follows the booking; the clean-up at the end asks the node again, so a lost socket loses nothing.
  const rider = await Conn.open(tok);
  b.rider = rider;
  rider.onPush = (m) => {
    const view = (m as { type: string; booking?: BookingView }).booking;
    if (m.type === 'booking.updated' && view?.id === b.id) track(b, view.status);
  };
  const sub = await rider.call({ type: 'subscribe', bookingId: b.id });
  if (sub.type !== 'ack') error(`subscribe ${b.id}`, sub.message);
  if (!LIVE.has(b.status)) rider.close();
}

// ---- Progress and the end ----------------------------------------------------

const tty = process.stdout.isTTY === true;
let phase = '';

function progressLine(): string {
  const seconds = Math.round((Date.now() - stats.startedAt) / 1000);
  const minutes = Math.max(seconds / 60, 1 / 60);
  const waits = [...stats.waits].sort((a, b) => a - b);
  const p50 = waits.length ? `${(waits[Math.floor(waits.length / 2)]! / 1000).toFixed(1)} s` : '-';
  const open = [...bookings.values()].filter((b) => LIVE.has(b.status)).length;
  return `${phase}${seconds}s | drivers ${stats.online} | booked ${stats.booked} (${(stats.booked / minutes).toFixed(1)}/min)` +
    ` | in play ${open} | completed ${stats.completed} | no driver ${stats.noDriver} | cancelled ${stats.cancelled}` +
    ` | p50 wait ${p50} | errors ${stats.errors}`;
}

function progress(): void {
  // Cut to the terminal's width: a wrapped line cannot be rewritten with \r.
  if (tty) process.stdout.write(`\r${progressLine().slice(0, Math.max(20, (process.stdout.columns || 200) - 1))}\x1b[K`);
  else process.stdout.write(`${progressLine()}\n`);
}

/** Asks the node for each booking still open; cancels those that can be; repeats until none is left or time runs out. */
async function cancelOpen(deadline: number): Promise<SimBooking[]> {
  for (;;) {
    const open = [...bookings.values()].filter((b) => b.status === '' || LIVE.has(b.status));
    if (open.length === 0 || Date.now() > deadline) return open;
    await Promise.all(open.map(async (b) => {
      try {
        const tok = await token(b.riderId, 'rider');
        const was = b.status;
        if (CANCELLABLE.has(was)) {
          const res = await api<BookingView>(
            'POST', `/v1/bookings/${encodeURIComponent(b.id)}/cancel`, tok, { reason: 'simulation stopped' },
          );
          if (res.status === 200) { b.cancelledAtStop = was; track(b, res.body.status); return; }
          if (res.status !== 409) error(`cancel ${b.id}`, `HTTP ${res.status}`);
        }
        // In progress (its driver is finishing it), or it moved on under us: ask the node where it stands.
        const res = await api<BookingView>('GET', `/v1/bookings/${encodeURIComponent(b.id)}`, tok);
        if (res.status === 200) track(b, res.body.status);
        else error(`get ${b.id}`, `HTTP ${res.status}`);
      } catch (e) {
        error(`clean-up ${b.id}`, e);
      }
    }));
    if ([...bookings.values()].some((b) => LIVE.has(b.status))) await sleep(500);
  }
}

let ticker: NodeJS.Timeout | undefined;
let stopRequested: (reason: string) => void = () => undefined;
const stopReason = new Promise<string>((resolve) => { stopRequested = resolve; });

/** The run's figures: time to first offer from the 201 (an offer seen before the 201 counts as 0) of bookings not made for later. */
function measured(leftOpen: number) {
  // Bookings made inside the window are the ones measured: their first offers and how many ended no_driver.
  const inside = [...bookings.values()].filter((b) => b.ackAt >= span.from);
  for (const b of inside) {
    const offered = firstOfferAt.get(b.id);
    if (!b.scheduled && offered !== undefined) raw.firstOfferMs.push(Math.max(0, offered - b.ackAt));
  }
  const counts = {
    booked: stats.booked, scheduled: stats.scheduled, completed: stats.completed, noDriver: stats.noDriver, cancelled: stats.cancelled, leftOpen,
    offers: stats.offers, accepted: stats.accepted, declined: stats.declined, tripsInWindow, errors: stats.errors,
    measuredBookings: inside.length, measuredNoDriver: inside.filter((b) => b.status === 'no_driver').length,
  };
  const settings = {
    seed: SEED, warmupS: WARMUP_S, drivers: DRIVERS, bookingsPerMin: BOOKINGS_PER_MIN, durationS: DURATION_S, speedup: SPEEDUP,
    scheduledShare: SCHEDULED_SHARE,
    url: URL_BASE,
  };
  return summarise(settings, counts, raw);
}

async function finish(reason: string, drivers: SimDriver[]): Promise<number> {
  stopping = true;
  span.to = Date.now();
  phase = 'stopping: ';
  progress();
  // Bookings being made now are waited for, so they are cleaned up too.
  await Promise.race([Promise.allSettled([...inflight]), sleep(15_000)]);
  finishing = true;
  const deadline = Date.now() + CLEANUP_S * 1000;
  const left = await cancelOpen(deadline);
  await Promise.all(drivers.map((d) => d.stop().catch((e: unknown) => error('driver stop', e))));
  for (const b of bookings.values()) b.rider?.close();
  if (ticker) clearInterval(ticker);
  if (tty) process.stdout.write('\r\x1b[K'); // the summary replaces the progress line
  const cancelledAtStop = [...bookings.values()].filter((b) => b.cancelledAtStop);
  const byStatus = Object.entries(Object.groupBy(cancelledAtStop, (b) => b.cancelledAtStop!))
    .map(([s, list]) => `${list!.length} ${s}`)
    .join(', ');
  const seconds = Math.round((Date.now() - stats.startedAt) / 1000);
  const result = measured(left.length);
  const lines = [
    `simulation over (${reason}) after ${seconds} s against ${URL_BASE}`,
    `  bookings  ${stats.booked} made (${stats.scheduled} for later): ` +
      `${stats.completed} completed, ${stats.noDriver} no driver, ${stats.cancelled} cancelled`,
    `  at stop   ${stats.finishedAtStop} trips under way driven to their end; ` +
      `${cancelledAtStop.length} cancelled${byStatus ? ` (${byStatus})` : ''}; ${left.length} left open`,
    `  drivers   ${DRIVERS} asked, ${stats.peakOnline} online at most${stats.unstarted ? `, ${stats.unstarted} could not start` : ''}: ` +
      `${stats.offers} offers, ${stats.accepted} accepted, ${stats.declined} declined, ` +
      `${stats.tripsDone} trips driven; p50 wait to accept ` +
      `${stats.waits.length ? `${(([...stats.waits].sort((a, b) => a - b)[Math.floor(stats.waits.length / 2)]!) / 1000).toFixed(1)} s` : '-'}`,
    ...metricLines(result),
    `  errors    ${stats.errors}${stats.lastError ? ` (last: ${stats.lastError})` : ''}`,
    ...(stats.refusals ? [`  refused   ${stats.refusals} times, tried again (last: ${stats.lastRefusal})`] : []),
  ];
  if (left.length) lines.push(`  left open: ${left.map((b) => `${b.id} (${b.status || 'unknown'})`).join(', ')}`);
  if (RESULT_FILE) writeFileSync(RESULT_FILE, `${JSON.stringify(result)}\n`);
  await new Promise<void>((resolve) => process.stdout.write(`${lines.join('\n')}\n`, () => resolve()));
  return left.length ? 1 : 0;
}

async function main(): Promise<void> {
  let signals = 0;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (++signals === 2) process.stdout.write(`\nstill cleaning up (at most ${CLEANUP_S} s)\n`);
      stopRequested(signal);
    });
  }
  // Started with an IPC channel (`npm run demo`): the channel closes when the node's process is
  // gone, and with it anything to clean up against.
  if (process.send) process.on('disconnect', () => { process.stdout.write('\nthe node is gone: simulation over\n'); process.exit(1); });
  console.log(
    `simulating ${DRIVERS} drivers and ${BOOKINGS_PER_MIN} bookings/min against ${URL_BASE}, ` +
    `driving ${SPEEDUP}x real time${DURATION_S ? ` for ${DURATION_S} s` : ' until interrupted'}`,
  );
  const drivers: SimDriver[] = [];
  // In waves, so that a city of thousands comes online in moments, not one driver at a time.
  for (let i = 0; i < DRIVERS && !signals; i += STARTS_AT_ONCE) {
    await Promise.all(Array.from({ length: Math.min(STARTS_AT_ONCE, DRIVERS - i) }, async (_, k) => {
      const d = new SimDriver(i + k);
      try {
        await d.start();
        drivers.push(d);
      } catch (e) {
        if (e instanceof Fatal) throw e;
        stats.unstarted++;
        error(`${d.id} start`, e);
      }
    }));
  }
  stats.startedAt = Date.now();
  span.from = stats.startedAt + WARMUP_S * 1000;
  ticker = setInterval(progress, tty ? 1_000 : PROGRESS_S * 1000);
  if (DURATION_S > 0) setTimeout(() => stopRequested(`${DURATION_S} s`), DURATION_S * 1000).unref();
  let stopped: string | undefined;
  void stopReason.then((r) => { stopped = r; });
  for (let seq = 0; stopped === undefined && !signals && BOOKINGS_PER_MIN > 0; seq++) {
    const plan = planned(SEED, seq, BOOKINGS_PER_MIN, SCHEDULED_SHARE);
    const p = book(plan).catch((e: unknown) => error('booking', e)).finally(() => inflight.delete(p));
    inflight.add(p);
    await Promise.race([sleep(plan.gapMs), stopReason]);
  }
  const reason = await stopReason;
  process.exit(await finish(reason, drivers));
}

// `npm run simulate -- --compare` is the compare's, which runs this file as a child per mode and load.
if (process.argv.includes('--compare')) await import('./simulate-compare.ts');
else main().catch((e: unknown) => {
  process.stdout.write('\n');
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});

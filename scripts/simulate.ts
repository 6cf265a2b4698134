// `npm run simulate`: a city of driver apps and riders against any node URL.
// Drivers hold real WebSockets, drive between random points, accept most offers,
// drive to the pickup and the dropoff; riders book at a steady rate (some for
// later) and follow their bookings on sockets of their own. A progress line shows
// what happened. Needs a node with AUTH_DEV_TOKENS=true (it asks for tokens).
//
//   URL=http://localhost:8000 DRIVERS=60 BOOKINGS_PER_MIN=40 DURATION_S=120 npm run simulate

import { randomUUID } from 'node:crypto';
import { WebSocket } from 'ws';

const URL_BASE = process.env.URL ?? 'http://localhost:8000';
const DRIVERS = Number(process.env.DRIVERS ?? 40);
const BOOKINGS_PER_MIN = Number(process.env.BOOKINGS_PER_MIN ?? 30);
const DURATION_S = Number(process.env.DURATION_S ?? 0); // 0: until interrupted
const SPEED = Number(process.env.SPEEDUP ?? 1); // time compression for driving
const ACCEPT_RATE = 0.9;
// A bundled city: central Berlin, about 10 x 8 km. No map data is fetched.
const CITY = { south: 52.48, north: 52.56, west: 13.33, east: 13.47 };

const stats = { online: 0, booked: 0, completed: 0, noDriver: 0, cancelled: 0, offers: 0, waits: [] as number[], errors: 0, startedAt: Date.now() };

interface Point { lat: number; lng: number }
const randomPoint = (): Point => ({ lat: CITY.south + Math.random() * (CITY.north - CITY.south), lng: CITY.west + Math.random() * (CITY.east - CITY.west) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function token(sub: string, role: 'rider' | 'driver'): Promise<string> {
  const res = await fetch(`${URL_BASE}/v1/auth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sub, role }) });
  if (res.status === 404) throw new Error(`${URL_BASE} does not issue development tokens: start it with AUTH_DEV_TOKENS=true`);
  if (!res.ok) throw new Error(`token: ${res.status}`);
  return ((await res.json()) as { token: string }).token;
}

function socket(tok: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${URL_BASE.replace(/^http/, 'ws')}/v1/ws?token=${tok}`);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

class SimDriver {
  readonly id = `sim-d-${randomUUID().slice(0, 8)}`;
  #ws!: WebSocket;
  #at: Point = randomPoint();
  #busy = false;

  async start(): Promise<void> {
    this.#ws = await socket(await token(this.id, 'driver'));
    this.#ws.on('message', (data) => void this.#onMessage(JSON.parse(data.toString())));
    this.#ws.on('close', () => { stats.online--; });
    this.#send({ type: 'online', vehicleType: Math.random() < 0.8 ? 'economy' : 'comfort' });
    stats.online++;
    void this.#cruise();
  }

  #send(m: Record<string, unknown>): void {
    if (this.#ws.readyState === WebSocket.OPEN) this.#ws.send(JSON.stringify(m));
  }

  #fix(): void {
    this.#send({ type: 'location', lat: this.#at.lat, lng: this.#at.lng, heading: 0, speed: 8, at: new Date().toISOString() });
  }

  /** Drives toward `to` at about 30 km/h, a fix every 2 s. */
  async #driveTo(to: Point): Promise<void> {
    const stepKm = (30 / 3600) * 2 * SPEED;
    for (;;) {
      const dLat = to.lat - this.#at.lat;
      const dLng = to.lng - this.#at.lng;
      const km = Math.hypot(dLat * 111, dLng * 68);
      if (km <= stepKm) { this.#at = to; this.#fix(); return; }
      this.#at = { lat: this.#at.lat + (dLat * stepKm) / km, lng: this.#at.lng + (dLng * stepKm) / km };
      this.#fix();
      await sleep(2_000);
    }
  }

  async #cruise(): Promise<void> {
    while (this.#ws.readyState === WebSocket.OPEN) {
      if (this.#busy) { await sleep(1_000); continue; }
      const target = randomPoint();
      const legs = 3 + Math.floor(Math.random() * 5);
      for (let i = 0; i < legs && !this.#busy && this.#ws.readyState === WebSocket.OPEN; i++) {
        this.#at = { lat: this.#at.lat + (target.lat - this.#at.lat) / (legs - i), lng: this.#at.lng + (target.lng - this.#at.lng) / (legs - i) };
        this.#fix();
        await sleep(2_000);
      }
    }
  }

  async #onMessage(m: { type: string; bookingId?: string; pickup?: Point; dropoff?: Point }): Promise<void> {
    if (m.type !== 'offer' || this.#busy) return;
    stats.offers++;
    await sleep(500 + Math.random() * 1_500);
    if (Math.random() > ACCEPT_RATE) { this.#send({ type: 'offer.decline', bookingId: m.bookingId }); return; }
    this.#busy = true;
    this.#send({ type: 'offer.accept', bookingId: m.bookingId });
    try {
      await this.#driveTo(m.pickup!);
      this.#send({ type: 'trip.arrived', bookingId: m.bookingId });
      await sleep(2_000);
      this.#send({ type: 'trip.start', bookingId: m.bookingId });
      await this.#driveTo(m.dropoff!);
      this.#send({ type: 'trip.complete', bookingId: m.bookingId });
    } finally {
      this.#busy = false;
    }
  }
}

async function book(): Promise<void> {
  const riderId = `sim-r-${randomUUID().slice(0, 8)}`;
  const tok = await token(riderId, 'rider');
  const pickup = randomPoint();
  const dropoff = randomPoint();
  const scheduled = Math.random() < 0.1;
  const body = { pickup, dropoff, vehicleType: Math.random() < 0.85 ? 'economy' : 'comfort', ...(scheduled ? { scheduledAt: new Date(Date.now() + 3 * 60_000).toISOString() } : {}) };
  const requested = Date.now();
  const res = await fetch(`${URL_BASE}/v1/bookings`, { method: 'POST', headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (res.status !== 201) { stats.errors++; return; }
  const booking = (await res.json()) as { id: string };
  stats.booked++;
  const ws = await socket(tok);
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString()) as { type: string; booking?: { status: string } };
    if (m.type !== 'booking.updated') return;
    const status = m.booking!.status;
    if (status === 'accepted' && !scheduled) stats.waits.push(Date.now() - requested);
    if (status === 'completed') { stats.completed++; ws.close(); }
    if (status === 'no_driver') { stats.noDriver++; ws.close(); }
    if (status === 'cancelled') { stats.cancelled++; ws.close(); }
  });
  ws.send(JSON.stringify({ type: 'subscribe', bookingId: booking.id }));
}

function progress(): void {
  const minutes = (Date.now() - stats.startedAt) / 60_000;
  const waits = [...stats.waits].sort((a, b) => a - b);
  const p50 = waits.length ? `${(waits[Math.floor(waits.length / 2)]! / 1000).toFixed(1)} s` : '-';
  process.stdout.write(`\rdrivers online ${stats.online} | bookings/min ${(stats.booked / Math.max(minutes, 1 / 60)).toFixed(1)} | booked ${stats.booked} | offers ${stats.offers} | completed ${stats.completed} | no_driver ${stats.noDriver} | p50 wait ${p50} | errors ${stats.errors}   `);
}

async function main(): Promise<void> {
  console.log(`simulating ${DRIVERS} drivers and ${BOOKINGS_PER_MIN} bookings/min against ${URL_BASE}`);
  const drivers = Array.from({ length: DRIVERS }, () => new SimDriver());
  for (const d of drivers) { await d.start(); await sleep(20); }
  const ticker = setInterval(progress, 2_000);
  const every = 60_000 / Math.max(BOOKINGS_PER_MIN, 0.1);
  const until = DURATION_S > 0 ? Date.now() + DURATION_S * 1000 : Number.POSITIVE_INFINITY;
  while (Date.now() < until) {
    book().catch(() => { stats.errors++; });
    await sleep(every * (0.5 + Math.random()));
  }
  clearInterval(ticker);
  progress();
  process.stdout.write('\n');
  process.exit(0);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});

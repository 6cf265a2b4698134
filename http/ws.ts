// WebSocket sessions at /v1/ws. A driver's session is bound to its driver actor:
// every message is validated and becomes a command to that actor, answered with
// `ack` or `error` (the socket stays open). A rider subscribes to their bookings.
// Notifications for the session's user are pushed as they come (from any node,
// through the notifier). Dead sockets are closed by ping/pong; a slow reader
// loses superseded location pushes first and is closed if it falls far behind;
// a flood is rate-limited per socket.

import type { IncomingMessage, Server } from 'node:http';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { z } from 'zod';
import type { Logger } from '../runtime/logger.ts';
import type { Notifier } from '../runtime/ports.ts';
import type { Authenticator, Principal } from './auth.ts';
import type { Edge } from './edge.ts';
import type { Metrics } from './metrics.ts';
import { mayRead } from './routes/bookings.ts';
import { opsSnapshot } from './ops-feed.ts';

const Fix = z.object({
  lat: z.number().min(-90).max(90), lng: z.number().min(-180).max(180),
  heading: z.number().min(0).max(360).optional(), speed: z.number().min(0).max(120).optional(), at: z.iso.datetime({ offset: true }),
}).strict();
const ref = { ref: z.union([z.string().max(64), z.number()]).optional() };
const booking = { bookingId: z.string().min(1).max(128) };

const ClientMessage = z.discriminatedUnion('type', [
  z.object({ type: z.literal('auth'), token: z.string().max(4096), ...ref }).strict(),
  z.object({ type: z.literal('online'), vehicleType: z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/), ...ref }).strict(),
  z.object({ type: z.literal('offline'), ...ref }).strict(),
  z.object({ type: z.literal('location'), ...Fix.shape, ...ref }).strict(),
  z.object({ type: z.literal('location.batch'), fixes: z.array(Fix).min(1).max(500), ...ref }).strict(),
  z.object({ type: z.literal('offer.accept'), ...booking, ...ref }).strict(),
  z.object({ type: z.literal('offer.decline'), ...booking, ...ref }).strict(),
  z.object({ type: z.literal('trip.arrived'), ...booking, ...ref }).strict(),
  z.object({ type: z.literal('trip.start'), ...booking, ...ref }).strict(),
  z.object({ type: z.literal('trip.complete'), ...booking, ...ref }).strict(),
  z.object({ type: z.literal('subscribe'), ...booking, ...ref }).strict(),
  z.object({ type: z.literal('ops.subscribe'), ...ref }).strict(),
]);
type ClientMessage = z.infer<typeof ClientMessage>;

const DRIVER_ONLY = new Set(['online', 'offline', 'location', 'location.batch', 'offer.accept', 'offer.decline', 'trip.arrived', 'trip.start', 'trip.complete']);
const DRIVER_COMMAND: Record<string, string> = { 'trip.start': 'trip.start', 'trip.complete': 'trip.complete', 'trip.arrived': 'trip.arrived' };

export interface WsOptions {
  readonly edge: Edge;
  readonly auth: Authenticator;
  readonly notifier: Notifier;
  readonly logger: Logger;
  readonly metrics?: Metrics;
  readonly heartbeatMs?: number;
  readonly messagesPerSecond?: number;
  /** Past this many buffered bytes, location pushes are dropped; past 8x the socket is closed. */
  readonly maxBufferedBytes?: number;
}

interface Session {
  readonly socket: WebSocket;
  principal?: Principal;
  alive: boolean;
  readonly subscriptions: Set<string>;
  tokens: number;
  refilledAt: number;
  ops?: NodeJS.Timeout;
}

export class WsGateway {
  readonly #o: WsOptions;
  readonly #wss = new WebSocketServer({ noServer: true, maxPayload: 256 * 1024 });
  readonly #sessions = new Set<Session>();
  readonly #byUser = new Map<string, Set<Session>>();
  #heartbeat: NodeJS.Timeout | undefined;
  #unsubscribe: (() => void) | undefined;

  constructor(options: WsOptions) {
    this.#o = options;
  }

  attach(server: Server): void {
    server.on('upgrade', (req, socket, head) => {
      const url = new URL(req.url ?? '/', 'http://local');
      if (url.pathname !== '/v1/ws') { socket.destroy(); return; }
      void this.#upgrade(req, url, socket, head);
    });
    this.#unsubscribe = this.#o.notifier.subscribe((userId, message) => this.#push(userId, message));
    this.#heartbeat = setInterval(() => this.#beat(), this.#o.heartbeatMs ?? 30_000);
    this.#heartbeat.unref();
  }

  get open(): number {
    return this.#sessions.size;
  }

  /** Closes every socket with a reason (graceful shutdown). */
  close(reason = 'server shutting down'): void {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#unsubscribe?.();
    for (const s of this.#sessions) s.socket.close(1001, reason);
    this.#wss.close();
  }

  async #upgrade(req: IncomingMessage, url: URL, socket: import('node:stream').Duplex, head: Buffer): Promise<void> {
    let principal: Principal | undefined;
    const token = url.searchParams.get('token');
    if (token) {
      try {
        principal = await this.#o.auth.verify(token);
      } catch {
        socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Type: application/json\r\n\r\n{"error":{"code":"unauthenticated","message":"invalid token"}}');
        return;
      }
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#open(ws, principal));
  }

  #open(socket: WebSocket, principal: Principal | undefined): void {
    const session: Session = { socket, alive: true, subscriptions: new Set(), tokens: this.#burst, refilledAt: Date.now() };
    this.#sessions.add(session);
    if (principal) this.#bind(session, principal);
    else setTimeout(() => { if (!session.principal) socket.close(4401, 'authenticate first'); }, 10_000).unref();
    socket.on('pong', () => { session.alive = true; });
    socket.on('message', (data, isBinary) => void this.#receive(session, data, isBinary));
    socket.on('close', () => this.#drop(session));
    socket.on('error', () => this.#drop(session));
  }

  get #burst(): number {
    return (this.#o.messagesPerSecond ?? 20) * 2;
  }

  #bind(session: Session, principal: Principal): void {
    session.principal = principal;
    let set = this.#byUser.get(principal.sub);
    if (!set) this.#byUser.set(principal.sub, (set = new Set()));
    set.add(session);
    this.#o.metrics?.openSockets.inc({ role: principal.role });
  }

  #drop(session: Session): void {
    if (session.ops) clearInterval(session.ops);
    if (!this.#sessions.delete(session)) return;
    if (session.principal) {
      this.#byUser.get(session.principal.sub)?.delete(session);
      if (this.#byUser.get(session.principal.sub)?.size === 0) this.#byUser.delete(session.principal.sub);
      this.#o.metrics?.openSockets.dec({ role: session.principal.role });
    }
  }

  #beat(): void {
    for (const s of this.#sessions) {
      if (!s.alive) { s.socket.terminate(); this.#drop(s); continue; }
      s.alive = false;
      s.socket.ping();
    }
  }

  #send(session: Session, message: unknown): void {
    const limit = this.#o.maxBufferedBytes ?? 512 * 1024;
    const buffered = session.socket.bufferedAmount;
    if (buffered > limit * 8) { session.socket.close(1013, 'client too slow'); return; }
    // A newer position is coming: a slow reader loses the older ones first.
    if (buffered > limit && (message as { type?: string }).type === 'driver.location') return;
    if (session.socket.readyState === WebSocket.OPEN) session.socket.send(JSON.stringify(message));
  }

  #error(session: Session, code: string, message: string, refValue?: string | number): void {
    this.#send(session, { type: 'error', code, message, ...(refValue !== undefined ? { ref: refValue } : {}) });
  }

  #push(userId: string, message: unknown): void {
    const sessions = this.#byUser.get(userId);
    if (!sessions) return;
    const m = message as { type?: string; booking?: { id: string }; bookingId?: string };
    for (const s of sessions) {
      // A rider hears about a booking once subscribed; drivers hear everything addressed to them.
      if (s.principal?.role === 'rider' && (m.type === 'booking.updated' || m.type === 'driver.location')) {
        const id = m.booking?.id ?? m.bookingId;
        if (!id || !s.subscriptions.has(id)) continue;
      }
      this.#send(s, message);
    }
  }

  #allow(session: Session): boolean {
    const now = Date.now();
    const rate = this.#o.messagesPerSecond ?? 20;
    session.tokens = Math.min(this.#burst, session.tokens + ((now - session.refilledAt) / 1000) * rate);
    session.refilledAt = now;
    if (session.tokens < 1) return false;
    session.tokens -= 1;
    return true;
  }

  async #receive(session: Session, data: RawData, isBinary: boolean): Promise<void> {
    if (!this.#allow(session)) { this.#error(session, 'rate_limited', 'too many messages; slow down'); return; }
    if (isBinary) { this.#error(session, 'bad_message', 'messages are JSON text'); return; }
    let raw: unknown;
    try { raw = JSON.parse(data.toString()); } catch { this.#error(session, 'malformed_json', 'the message is not valid JSON'); return; }
    const parsed = ClientMessage.safeParse(raw);
    if (!parsed.success) {
      const type = (raw as { type?: unknown })?.type;
      const known = typeof type === 'string' && ClientMessage.options.some((o) => o.shape.type.value === type);
      const issue = parsed.error.issues[0];
      this.#error(session, known ? 'invalid_message' : 'unknown_type',
        known ? `${issue?.path.join('.') || 'message'}: ${issue?.message}` : `unknown message type ${JSON.stringify(type ?? null)}`,
        (raw as { ref?: string | number })?.ref);
      return;
    }
    const m = parsed.data;
    try {
      await this.#handle(session, m);
    } catch (error) {
      this.#o.logger.warn({ err: error }, 'websocket message failed');
      this.#error(session, 'unavailable', 'the message could not be handled; try again', m.ref);
    }
  }

  async #handle(session: Session, m: ClientMessage): Promise<void> {
    if (m.type === 'auth') {
      if (session.principal) { this.#error(session, 'already_authenticated', 'this socket is already authenticated', m.ref); return; }
      try {
        this.#bind(session, await this.#o.auth.verify(m.token));
        this.#send(session, { type: 'ack', ref: m.ref ?? null });
      } catch {
        this.#error(session, 'unauthenticated', 'invalid token', m.ref);
        session.socket.close(4401, 'invalid token');
      }
      return;
    }
    const p = session.principal;
    if (!p) { this.#error(session, 'unauthenticated', 'send { type: "auth", token } first', m.ref); return; }
    if (DRIVER_ONLY.has(m.type) && p.role !== 'driver') { this.#error(session, 'forbidden', `${m.type} is for drivers`, m.ref); return; }
    const region = this.#o.edge.region;
    const driver = { kind: 'driver', id: p.sub };
    const fix = (f: { lat: number; lng: number; heading?: number; speed?: number; at: string }) => ({ lat: f.lat, lng: f.lng, heading: f.heading, speed: f.speed, at: Date.parse(f.at) });
    switch (m.type) {
      case 'location':
        // Fixes are many and soft: durable in the log, not waited for.
        await region.tell(driver, { type: 'location', fix: fix(m) });
        this.#send(session, { type: 'ack', ref: m.ref ?? null });
        return;
      case 'location.batch':
        await region.tell(driver, { type: 'location.batch', fixes: m.fixes.map(fix) });
        this.#send(session, { type: 'ack', ref: m.ref ?? null });
        return;
      case 'ops.subscribe': {
        if (p.role !== 'admin') { this.#error(session, 'forbidden', 'the operations feed is for admins', m.ref); return; }
        this.#send(session, { type: 'ack', ref: m.ref ?? null });
        const push = () => void opsSnapshot(this.#o.edge).then((snap) => this.#send(session, snap), (e) => this.#o.logger.warn({ err: e }, 'ops snapshot'));
        if (!session.ops) { push(); session.ops = setInterval(push, 2_000); }
        return;
      }
      case 'subscribe': {
        const view = await region.ask<{ riderId: string; driverId?: string } | null>({ kind: 'booking', id: m.bookingId }, { type: 'get' });
        if (!view || !mayRead(p, view)) { this.#error(session, 'not_found', `no booking ${m.bookingId}`, m.ref); return; }
        session.subscriptions.add(m.bookingId);
        this.#send(session, { type: 'ack', ref: m.ref ?? null });
        this.#send(session, { type: 'booking.updated', booking: view });
        return;
      }
      default: {
        const command = m.type === 'online' ? { type: 'online', vehicleType: m.vehicleType }
          : m.type === 'offline' ? { type: 'offline' }
          : { type: DRIVER_COMMAND[m.type] ?? m.type, bookingId: m.bookingId };
        const result = await region.request(driver, command);
        if (result.status === 'rejected') this.#error(session, result.rejection!.code, result.rejection!.message, m.ref);
        else if (result.status === 'failed') this.#error(session, 'unavailable', 'try again', m.ref);
        else this.#send(session, { type: 'ack', ref: m.ref ?? null });
      }
    }
  }
}

// WebSocket sessions at /v1/ws. A driver's session is bound to its driver actor:
// every message is validated and becomes a command to that actor, answered with
// `ack` or `error` (the socket stays open). A rider subscribes to their bookings.
// Notifications for the session's user are pushed as they come (from any node,
// through the notifier). Dead sockets are closed by ping/pong; a slow reader
// loses superseded location pushes first and is closed if it falls far behind.
// Limits are per user and per client address, not per socket, so opening more
// sockets buys nothing: sockets per user and per IP are capped, messages and
// location fixes are metered per user across their sockets (on this node), and
// a session ends when its token does unless a fresh `auth` message extends it.

import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { Logger } from '../runtime/logger.ts';
import type { Notifier } from '../runtime/ports.ts';
import type { SoftDelivery } from '../runtime/region.ts';
import { endSpan, SpanKind, startRootSpan, startSpan, withSpan } from '../runtime/tracing.ts';
import type { Authenticator, Principal } from './auth.ts';
import type { Edge } from './edge.ts';
import type { Metrics } from './metrics.ts';
import { mayRead } from './booking-access.ts';
import { opsSnapshot } from './ops-feed.ts';
import { commandError } from './rejections.ts';
import { ClientMessage, DRIVER_ONLY } from './ws-messages.ts';
import { TokenBucket } from './token-bucket.ts';
import { BookingId } from './ids.ts';

/** Socket messages that start no trace: location fixes are soft state, sent about once a second per driver. */
const UNTRACED: ReadonlySet<string> = new Set(['location', 'location.batch']);

export interface WsOptions {
  readonly edge: Edge;
  readonly auth: Authenticator;
  readonly notifier: Notifier;
  readonly logger: Logger;
  readonly metrics?: Metrics;
  readonly heartbeatMs?: number;
  /** Past this many buffered bytes, location pushes are dropped; past 8x the socket is closed. */
  readonly maxBufferedBytes?: number;
  readonly limits: WsLimits;
  /** The client's address (TRUST_PROXY decides whose X-Forwarded-For counts). */
  readonly addressOf: (req: IncomingMessage) => { ip: string };
}

export interface WsLimits {
  readonly maxSocketsPerUser: number;
  readonly maxSocketsPerIp: number;
  readonly authTimeoutMs: number;
  readonly messagesPerSecond: number;
  readonly fixesPerMinute: number;
}

/** Close codes of the protocol (docs/API.md lists them). */
export const CLOSE = { unauthenticated: 4401, tooMany: 4429 } as const;

interface Session {
  readonly socket: WebSocket;
  readonly ip: string;
  principal?: Principal;
  alive: boolean;
  readonly subscriptions: Set<string>;
  /** Before auth the socket has a bucket of its own; after, its user's. */
  readonly bucket: TokenBucket;
  ops?: NodeJS.Timeout;
  /** Closes the socket when its token expires (or when no auth came in time). */
  expiry?: NodeJS.Timeout;
}

/** What one user may still send, across all their sockets on this node. */
interface Allowance {
  readonly messages: TokenBucket;
  readonly fixes: TokenBucket;
}

export class WsGateway {
  readonly #o: WsOptions;
  readonly #wss = new WebSocketServer({ noServer: true, maxPayload: 256 * 1024 });
  readonly #sessions = new Set<Session>();
  readonly #byUser = new Map<string, Set<Session>>();
  readonly #byIp = new Map<string, number>();
  readonly #allowances = new Map<string, Allowance>();
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
    this.#unsubscribe = this.#o.notifier.subscribe((userId, message, trace) => this.#push(userId, message, trace));
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
    const refuse = (status: string, code: string, message: string) =>
      socket.end(
        `HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: application/json\r\nX-Request-Id: ${randomUUID()}\r\n\r\n` +
          JSON.stringify({ error: { code, message } }),
      );
    const { ip } = this.#o.addressOf(req);
    if ((this.#byIp.get(ip) ?? 0) >= this.#o.limits.maxSocketsPerIp) {
      refuse('429 Too Many Requests', 'too_many_sockets', 'too many open sockets from this address');
      return;
    }
    let principal: Principal | undefined;
    const token = url.searchParams.get('token');
    if (token) {
      try {
        principal = await this.#o.auth.verify(token);
      } catch {
        refuse('401 Unauthorized', 'unauthenticated', 'invalid or expired token');
        return;
      }
      if (this.#userSockets(principal.sub) >= this.#o.limits.maxSocketsPerUser) {
        refuse('429 Too Many Requests', 'too_many_sockets', 'too many open sockets for this user');
        return;
      }
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#open(ws, ip, principal));
  }

  #open(socket: WebSocket, ip: string, principal: Principal | undefined): void {
    const { messagesPerSecond } = this.#o.limits;
    const session: Session = {
      socket, ip, alive: true, subscriptions: new Set(), bucket: new TokenBucket(messagesPerSecond, messagesPerSecond * 5),
    };
    this.#sessions.add(session);
    this.#byIp.set(ip, (this.#byIp.get(ip) ?? 0) + 1);
    if (principal) this.#bind(session, principal);
    else session.expiry = setTimeout(() => socket.close(CLOSE.unauthenticated, 'authenticate first'), this.#o.limits.authTimeoutMs);
    socket.on('pong', () => { session.alive = true; });
    socket.on('message', (data, isBinary) => void this.#receive(session, data, isBinary));
    socket.on('close', () => this.#drop(session));
    socket.on('error', () => this.#drop(session));
  }

  #userSockets(sub: string): number {
    return this.#byUser.get(sub)?.size ?? 0;
  }

  #allowance(sub: string): Allowance {
    let a = this.#allowances.get(sub);
    if (!a) {
      const { messagesPerSecond, fixesPerMinute } = this.#o.limits;
      // A batch sent after a dead zone may carry up to ten minutes of fixes at once.
      a = {
        messages: new TokenBucket(messagesPerSecond, messagesPerSecond * 5),
        fixes: new TokenBucket(fixesPerMinute / 60, fixesPerMinute * 10),
      };
      this.#allowances.set(sub, a);
    }
    return a;
  }

  #bind(session: Session, principal: Principal): void {
    session.principal = principal;
    let set = this.#byUser.get(principal.sub);
    if (!set) this.#byUser.set(principal.sub, (set = new Set()));
    set.add(session);
    this.#expireAt(session, principal.expiresAt);
    this.#o.metrics?.openSockets.inc({ role: principal.role });
  }

  /** The session ends with its token; a fresh `auth` message moves the end. */
  #expireAt(session: Session, expiresAt: number | undefined): void {
    clearTimeout(session.expiry);
    session.expiry = undefined;
    if (expiresAt === undefined) return;
    // setTimeout holds at most ~24.8 days; a longer token is re-armed when that passes.
    const wait = Math.min(Math.max(0, expiresAt - Date.now()), 2 ** 31 - 1);
    session.expiry = setTimeout(() => {
      if (Date.now() < expiresAt) this.#expireAt(session, expiresAt);
      else session.socket.close(CLOSE.unauthenticated, 'token expired');
    }, wait);
    session.expiry.unref();
  }

  #drop(session: Session): void {
    if (session.ops) clearInterval(session.ops);
    clearTimeout(session.expiry);
    if (!this.#sessions.delete(session)) return;
    const left = (this.#byIp.get(session.ip) ?? 1) - 1;
    if (left > 0) this.#byIp.set(session.ip, left);
    else this.#byIp.delete(session.ip);
    if (session.principal) {
      this.#byUser.get(session.principal.sub)?.delete(session);
      if (this.#byUser.get(session.principal.sub)?.size === 0) this.#byUser.delete(session.principal.sub);
      this.#o.metrics?.openSockets.dec({ role: session.principal.role });
    }
  }

  #beat(): void {
    // Allowances of users who stopped sending are full again: nothing to remember.
    for (const [sub, a] of this.#allowances) if (a.messages.full() && a.fixes.full() && !this.#byUser.has(sub)) this.#allowances.delete(sub);
    for (const s of this.#sessions) {
      if (!s.alive) { s.socket.terminate(); this.#drop(s); continue; }
      s.alive = false;
      s.socket.ping();
    }
  }

  /** A fix nobody could take (its shard is moving) is not acknowledged: the app sends it again. */
  #ackSoft(session: Session, delivery: SoftDelivery, ref: string | number | undefined): void {
    if (delivery === 'dropped') this.#error(session, 'unavailable', 'the fix could not be handed on right now; send it again', ref);
    else this.#send(session, { type: 'ack', ref: ref ?? null });
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

  #push(userId: string, message: unknown, trace?: string): void {
    const sessions = this.#byUser.get(userId);
    if (!sessions) return;
    const m = message as { type?: string; booking?: { id: string }; bookingId?: string };
    // Only the node holding the user's sockets records the push, in the trace of the handling that sent it.
    const span = trace === undefined ? undefined
      : startSpan(
        'notify', SpanKind.CONSUMER, { 'dispatch.notification.type': m.type ?? 'unknown', 'dispatch.sessions': sessions.size }, trace,
      );
    let pushed = 0;
    for (const s of sessions) {
      // A rider hears about a booking once subscribed; drivers hear everything addressed to them.
      if (s.principal?.role === 'rider' && (m.type === 'booking.updated' || m.type === 'driver.location')) {
        const id = m.booking?.id ?? m.bookingId;
        if (!id || !s.subscriptions.has(id)) continue;
      }
      this.#send(s, message);
      pushed++;
    }
    span?.setAttribute('dispatch.pushed', pushed);
    endSpan(span);
  }

  #allow(session: Session): boolean {
    return session.principal ? this.#allowance(session.principal.sub).messages.take() : session.bucket.take();
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
    // A command over the socket starts its own trace; GPS fixes (soft state, many a second) do not.
    const span = UNTRACED.has(m.type) ? undefined : startRootSpan(`ws ${m.type}`, SpanKind.SERVER, { 'dispatch.ws.message': m.type });
    try {
      await withSpan(span, () => this.#handle(session, m));
      endSpan(span);
    } catch (error) {
      endSpan(span, error);
      this.#o.logger.warn({ err: error }, 'websocket message failed');
      this.#error(session, 'unavailable', 'the message could not be handled; try again', m.ref);
    }
  }

  async #handle(session: Session, m: ClientMessage): Promise<void> {
    if (m.type === 'auth') {
      let principal: Principal;
      try {
        principal = await this.#o.auth.verify(m.token);
      } catch {
        this.#error(session, 'unauthenticated', 'invalid or expired token', m.ref);
        session.socket.close(CLOSE.unauthenticated, 'invalid token');
        return;
      }
      const current = session.principal;
      if (current && (current.sub !== principal.sub || current.role !== principal.role)) {
        this.#error(session, 'already_authenticated', 'this socket belongs to another user; open a new one', m.ref);
        return;
      }
      if (current) {
        // A fresh token for the same user: the session now ends when it does.
        session.principal = principal;
        this.#expireAt(session, principal.expiresAt);
      } else if (this.#userSockets(principal.sub) >= this.#o.limits.maxSocketsPerUser) {
        this.#error(session, 'too_many_sockets', 'too many open sockets for this user', m.ref);
        session.socket.close(CLOSE.tooMany, 'too many sockets for this user');
        return;
      } else {
        this.#bind(session, principal);
      }
      this.#send(session, { type: 'ack', ref: m.ref ?? null });
      return;
    }
    const p = session.principal;
    if (!p) { this.#error(session, 'unauthenticated', 'send { type: "auth", token } first', m.ref); return; }
    if (DRIVER_ONLY.has(m.type) && p.role !== 'driver') { this.#error(session, 'forbidden', `${m.type} is for drivers`, m.ref); return; }
    const region = this.#o.edge.region;
    const driver = { kind: 'driver', id: p.sub };
    const fix = (f: { lat: number; lng: number; heading?: number; speed?: number; at: string }) =>
      ({ lat: f.lat, lng: f.lng, heading: f.heading, speed: f.speed, at: Date.parse(f.at) });
    const fixes = m.type === 'location' ? 1 : m.type === 'location.batch' ? m.fixes.length : 0;
    if (fixes > 0 && !this.#allowance(p.sub).fixes.take(fixes)) {
      this.#error(
        session, 'rate_limited', `more location fixes than ${this.#o.limits.fixesPerMinute} a minute; send one every few seconds`, m.ref,
      );
      return;
    }
    switch (m.type) {
      case 'location':
        // Fixes are many and soft: the soft path (no command id, no journal, no log record
        // when this node serves the driver); acked once handed to the driver or its owner.
        this.#ackSoft(session, await region.tellSoft(driver, { type: 'location', fix: fix(m) }), m.ref);
        return;
      case 'location.batch':
        this.#ackSoft(session, await region.tellSoft(driver, { type: 'location.batch', fixes: m.fixes.map(fix) }), m.ref);
        return;
      case 'ops.subscribe': {
        if (p.role !== 'admin') { this.#error(session, 'forbidden', 'the operations feed is for admins', m.ref); return; }
        this.#send(session, { type: 'ack', ref: m.ref ?? null });
        const push = () => void opsSnapshot(this.#o.edge).then(
          (snap) => this.#send(session, snap),
          (e) => this.#o.logger.warn({ err: e }, 'ops snapshot'),
        );
        if (!session.ops) { push(); session.ops = setInterval(push, 2_000); }
        return;
      }
      case 'subscribe': {
        // Not a booking id at all: nothing to ask anyone.
        if (!BookingId.safeParse(m.bookingId).success) { this.#error(session, 'not_found', `no booking ${m.bookingId}`, m.ref); return; }
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
          : { type: m.type, bookingId: m.bookingId };
        // The same error a REST route would answer, without the status: a refusal's code, or
        // internal_error / unprocessable / unavailable for a command that failed.
        const error = commandError(await region.request(driver, command));
        if (error) this.#error(session, error.code, error.message, m.ref);
        else this.#send(session, { type: 'ack', ref: m.ref ?? null });
      }
    }
  }
}

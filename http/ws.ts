// WebSocket sessions at /v1/ws. A driver's session is bound to its driver actor:
// every message is validated and becomes a command to that actor, answered with
// `ack` or `error` (the socket stays open). A rider subscribes to their bookings.
// Notifications for the session's user are pushed as they come (from any node,
// through the notifier). Dead sockets are closed by ping/pong; a slow reader
// loses superseded location pushes first and is closed if it falls far behind.
// Limits are per user and per client address, not per socket, so opening more
// sockets buys nothing: sockets per user are capped and messages and location fixes
// metered per user across all their sockets on every node (the RateLimiter port: Redis
// in a cluster, this process when embedded), sockets per IP are capped per node, and
// a session ends when its token does unless a fresh `auth` message extends it. A socket
// opened without a token may send one small message, its `auth`: anything else first
// closes it before a large payload is parsed.

import { randomBytes, randomUUID } from 'node:crypto';
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
import { checkOnline } from './online.ts';
import { opsSnapshot } from './ops-feed.ts';
import { commandError } from './rejections.ts';
import { ClientMessage, DRIVER_ONLY } from './ws-messages.ts';
import { TokenBucket } from '../runtime/token-bucket.ts';
import type { Budget, Place } from './ports.ts';
import { BookingId } from './ids.ts';
import { Session } from './ws-session.ts';
import { Deadlines } from '../runtime/deadlines.ts';

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
  /**
   * Whether `?token=` on the upgrade URL is accepted (WS_QUERY_TOKEN). Off by default: the
   * request line, token included, lands in every proxy's access log; the first message does not.
   */
  readonly queryToken?: boolean;
}

export interface WsLimits {
  readonly maxSocketsPerUser: number;
  readonly maxSocketsPerIp: number;
  readonly authTimeoutMs: number;
  readonly messagesPerSecond: number;
  readonly fixesPerMinute: number;
}

/** Messages up to this size are read for their `ref` when refused before they are handled. */
const REF_READ_MAX_BYTES = 4 * 1024;

/** The `ref` of a refused message, when it is small JSON text that has one. */
function refOf(data: RawData, isBinary: boolean): string | number | undefined {
  const size = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength;
  if (isBinary || size > REF_READ_MAX_BYTES) return undefined;
  try {
    const ref = (JSON.parse(data.toString()) as { ref?: unknown } | null)?.ref;
    return typeof ref === 'string' || typeof ref === 'number' ? ref : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Node caches a socket's peer address ({address, family, port}, 56 bytes) the first time it
 * is read, and keeps it for the socket's life: a session holds its address as `ip` and never
 * reads it again, so the cache goes (a later read of remoteAddress asks the handle again).
 */
function forgetPeer(socket: import('node:stream').Duplex): void {
  const s = socket as { _peername?: unknown };
  if (s._peername !== undefined) s._peername = undefined;
}

/** A user's socket place: the scope and id their places are counted under, and this socket's hold on one. */
const placeOf = (sub: string, holder: string): Place => ({ scope: 'ws:sockets', id: sub, holder });

/**
 * A session's place holder: unique among its user's sessions on every node, which 96 random
 * bits are. A session keeps it for its life, and a UUID's 36 characters were 56 bytes of
 * heap per connected driver, these 16 are 32.
 */
export const placeHolderId = (): string => randomBytes(12).toString('base64url');

/** Close codes of the protocol (docs/API.md lists them). */
export const CLOSE = { unauthenticated: 4401, tooMany: 4429, tooBig: 1009 } as const;

/**
 * The largest message a socket may send before it is authenticated: an `auth` message
 * with a token of up to 4096 characters (ws-messages.ts) fits, a payload to make the node
 * parse does not.
 */
export const FIRST_MESSAGE_MAX_BYTES = 8 * 1024;

/** The close reason of a socket opened with ?token= while WS_QUERY_TOKEN is off (at most 123 bytes). */
export const QUERY_TOKEN_REFUSED = 'token in the URL refused: send {"type":"auth","token":"..."} as the first message';

export class WsGateway {
  readonly #o: WsOptions;
  // No client tracking: the gateway keeps its sessions itself, and ws's tracking added a
  // close listener (a closure) and a Set entry per socket.
  readonly #wss = new WebSocketServer<typeof Session>({
    noServer: true, maxPayload: 256 * 1024, clientTracking: false, WebSocket: Session,
    // Pings are answered by the gateway's listener: ws's own answer keeps a closure per socket.
    autoPong: false,
  });
  readonly #sessions = new Set<Session>();
  /** A user's sessions: the session itself while they have one (most users), a Set when more. */
  readonly #byUser = new Map<string, Session | Set<Session>>();
  /** When each session's auth is due, then its token expires: one timer for all of them. */
  readonly #deadlines = new Deadlines<Session>((session) => this.#expire(session));
  /**
   * Open sockets by client address, with the address as the first of them brought it: each
   * session keeps that one string as its ip. Each socket reads its own copy of its peer's
   * address, and the sockets behind one address (a load balancer's, a carrier's NAT) kept one
   * string each for their lives, 32 bytes per connected driver.
   */
  readonly #byIp = new Map<string, { readonly ip: string; open: number }>();
  #heartbeat: NodeJS.Timeout | undefined;
  #unsubscribe: (() => void) | undefined;
  /**
   * One set of socket listeners for every session (ws calls them on the socket, which is the
   * session): four closures and their context per session were about 280 bytes of heap per
   * connected driver.
   */
  readonly #listeners = (() => {
    const receive = (session: Session, data: RawData, isBinary: boolean) => void this.#receive(session, data, isBinary);
    const drop = (session: Session) => this.#drop(session);
    const answer = (session: Session, data: Buffer) => this.#answerPing(session, data);
    return {
      ping(this: WebSocket, data: Buffer): void {
        answer(this as Session, data);
      },
      pong(this: WebSocket): void {
        (this as Session).alive = true;
      },
      message(this: WebSocket, data: RawData, isBinary: boolean): void {
        receive(this as Session, data, isBinary);
      },
      gone(this: WebSocket): void {
        drop(this as Session);
      },
    };
  })();

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
    for (const s of this.#sessions) s.close(1001, reason);
    this.#wss.close();
  }

  async #upgrade(req: IncomingMessage, url: URL, socket: import('node:stream').Duplex, head: Buffer): Promise<void> {
    const refuse = (status: string, code: string, message: string) =>
      socket.end(
        `HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: application/json\r\nX-Request-Id: ${randomUUID()}\r\n\r\n` +
          JSON.stringify({ error: { code, message } }),
      );
    const { ip } = this.#o.addressOf(req);
    forgetPeer(socket);
    if ((this.#byIp.get(ip)?.open ?? 0) >= this.#o.limits.maxSocketsPerIp) {
      refuse('429 Too Many Requests', 'too_many_sockets', 'too many open sockets from this address');
      return;
    }
    let principal: Principal | undefined;
    let place: Place | undefined;
    const token = url.searchParams.get('token');
    if (token !== null && !this.#o.queryToken) {
      // Upgraded, then closed: a browser's WebSocket sees a close reason, never an HTTP status.
      this.#wss.handleUpgrade(req, socket, head, (ws) => ws.close(CLOSE.unauthenticated, QUERY_TOKEN_REFUSED));
      return;
    }
    if (token) {
      try {
        principal = await this.#o.auth.verify(token);
      } catch {
        refuse('401 Unauthorized', 'unauthenticated', 'invalid or expired token');
        return;
      }
      place = await this.#acquire(principal);
      if (!place) {
        refuse('429 Too Many Requests', 'too_many_sockets', 'too many open sockets for this user');
        return;
      }
      // Before the socket opens, so that what the client causes next is pushed to it.
      await this.#watch(principal.sub);
    }
    // The client may have gone while its place was taken: a place nobody opened is given back.
    let opened = false;
    const giveBack = () => { if (!opened && place) this.#giveUp(principal!.sub, place); };
    if (socket.destroyed) { giveBack(); return; }
    socket.once('close', giveBack);
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      opened = true;
      // The session gives its place back when it closes (#drop): this listener, and all it
      // holds (the principal, the place, the request's socket), would stay for the session's life.
      socket.off('close', giveBack);
      this.#open(ws, ip, principal, place);
    });
  }

  /** A session's socket place and its user's channel here, given back when it closes (or goes before it is bound). */
  #giveUp(sub: string, place: Place): void {
    void this.#o.edge.limiter.release(place);
    this.#o.notifier.unwatch?.(sub);
  }

  /** Notifications for the user routed to this node (given up with the session's place, #giveUp). */
  async #watch(userId: string): Promise<void> {
    await this.#o.notifier.watch?.(userId);
  }

  /** One of the user's socket places, held cluster-wide; undefined when they hold them all. */
  async #acquire(principal: Principal): Promise<Place | undefined> {
    const place = placeOf(principal.sub, placeHolderId());
    return (await this.#o.edge.limiter.acquire(place, this.#o.limits.maxSocketsPerUser, this.#leaseMs)) ? place : undefined;
  }

  /** A place outlives a node that died holding it by this long: three heartbeats, each renewing it. */
  get #leaseMs(): number {
    return 3 * (this.#o.heartbeatMs ?? 30_000);
  }

  #open(session: Session, ip: string, principal: Principal | undefined, place: Place | undefined): void {
    const { messagesPerSecond } = this.#o.limits;
    let sharing = this.#byIp.get(ip);
    if (!sharing) this.#byIp.set(ip, (sharing = { ip, open: 0 }));
    sharing.open++;
    session.ip = sharing.ip;
    this.#sessions.add(session);
    if (principal) this.#bind(session, principal, place!);
    else {
      session.bucket = new TokenBucket(messagesPerSecond, messagesPerSecond * 5);
      this.#deadlines.set(session, Date.now() + this.#o.limits.authTimeoutMs);
    }
    session.on('ping', this.#listeners.ping);
    session.on('pong', this.#listeners.pong);
    session.on('message', this.#listeners.message);
    session.on('close', this.#listeners.gone);
    session.on('error', this.#listeners.gone);
  }

  /** The limiter's answer: at once from one that keeps its buckets here (embedded), else a promise (Redis). */
  #take(scope: string, user: string, n: number, budget: Budget): boolean | Promise<boolean> {
    const limiter = this.#o.edge.limiter;
    return limiter.takeNow ? limiter.takeNow(scope, user, n, budget) : limiter.take(scope, user, n, budget);
  }

  /** A user's messages across all their sockets: bursts of 5 seconds' worth. */
  get #messageBudget(): Budget {
    const { messagesPerSecond } = this.#o.limits;
    return { perSecond: messagesPerSecond, burst: messagesPerSecond * 5 };
  }

  /** A driver's fixes: a batch sent after a dead zone may carry up to ten minutes of them at once. */
  get #fixBudget(): Budget {
    const { fixesPerMinute } = this.#o.limits;
    return { perSecond: fixesPerMinute / 60, burst: fixesPerMinute * 10 };
  }

  #bind(session: Session, principal: Principal, place: Place): void {
    session.principal = principal;
    session.bucket = undefined;
    session.placeHolder = place.holder;
    const held = this.#byUser.get(principal.sub);
    if (!held) this.#byUser.set(principal.sub, session);
    else if (held instanceof Set) held.add(session);
    else this.#byUser.set(principal.sub, new Set([held, session]));
    this.#expireAt(session, principal.expiresAt);
    this.#o.metrics?.openSockets.inc({ role: principal.role });
  }

  /** The session ends with its token; a fresh `auth` message moves the end. */
  #expireAt(session: Session, expiresAt: number | undefined): void {
    if (expiresAt === undefined) this.#deadlines.clear(session);
    else this.#deadlines.set(session, expiresAt);
  }

  /** Its deadline came: the auth it waited for, or its token's expiry. */
  #expire(session: Session): void {
    session.close(CLOSE.unauthenticated, session.principal ? 'token expired' : 'authenticate first');
  }

  #drop(session: Session): void {
    if (session.ops) clearInterval(session.ops);
    this.#deadlines.clear(session);
    if (!this.#sessions.delete(session)) return;
    const sharing = this.#byIp.get(session.ip);
    if (sharing && --sharing.open <= 0) this.#byIp.delete(session.ip);
    if (session.principal) {
      if (session.placeHolder) this.#giveUp(session.principal.sub, placeOf(session.principal.sub, session.placeHolder));
      this.#forget(session.principal.sub, session);
      this.#o.metrics?.openSockets.dec({ role: session.principal.role });
    }
  }

  /** Takes the session out of its user's; a user left with one holds it alone again. */
  #forget(sub: string, session: Session): void {
    const held = this.#byUser.get(sub);
    if (held === session) { this.#byUser.delete(sub); return; }
    if (!(held instanceof Set)) return;
    held.delete(session);
    if (held.size === 1) this.#byUser.set(sub, held.values().next().value!);
    else if (held.size === 0) this.#byUser.delete(sub);
  }

  #beat(): void {
    // The places of open sockets are held for another lease; a dead node's run out.
    const places = [...this.#sessions].flatMap((s) => (s.principal && s.placeHolder ? [placeOf(s.principal.sub, s.placeHolder)] : []));
    void this.#o.edge.limiter.renew(places, this.#leaseMs).catch((e: unknown) => this.#o.logger.warn({ err: e }, 'renewing socket places'));
    for (const s of this.#sessions) {
      if (!s.alive) { s.terminate(); this.#drop(s); continue; }
      s.alive = false;
      s.ping();
    }
  }

  /**
   * A client's ping is answered, unless it does not read what it is sent (a ping flood, say):
   * then it is cut off, as ws's own answer did after 60 pongs unsent (a closing handshake
   * would wait on a client that reads nothing).
   */
  #answerPing(session: Session, data: Buffer): void {
    if (session.bufferedAmount > this.#maxBufferedBytes * 8) { session.terminate(); return; }
    if (session.readyState === WebSocket.OPEN) session.pong(data);
  }

  get #maxBufferedBytes(): number {
    return this.#o.maxBufferedBytes ?? 512 * 1024;
  }

  /** A fix nobody could take (its shard is moving) is not acknowledged: the app sends it again. */
  #ackSoft(session: Session, delivery: SoftDelivery, ref: string | number | undefined): void {
    if (delivery === 'dropped') this.#error(session, 'unavailable', 'the fix could not be handed on right now; send it again', ref);
    else this.#send(session, { type: 'ack', ref: ref ?? null });
  }

  #send(session: Session, message: unknown): void {
    const limit = this.#maxBufferedBytes;
    const buffered = session.bufferedAmount;
    if (buffered > limit * 8) { session.close(1013, 'client too slow'); return; }
    // A newer position is coming: a slow reader loses the older ones first.
    if (buffered > limit && (message as { type?: string }).type === 'driver.location') return;
    if (session.readyState === WebSocket.OPEN) session.send(JSON.stringify(message));
  }

  #error(session: Session, code: string, message: string, refValue?: string | number): void {
    this.#send(session, { type: 'error', code, message, ...(refValue !== undefined ? { ref: refValue } : {}) });
  }

  #push(userId: string, message: unknown, trace?: string): void {
    const held = this.#byUser.get(userId);
    if (!held) return;
    const sessions = held instanceof Set ? held : [held];
    const count = held instanceof Set ? held.size : 1;
    const m = message as { type?: string; booking?: { id: string }; bookingId?: string };
    // Only the node holding the user's sockets records the push, in the trace of the handling that sent it.
    const span = trace === undefined ? undefined
      : startSpan(
        'notify', SpanKind.CONSUMER, { 'dispatch.notification.type': m.type ?? 'unknown', 'dispatch.sessions': count }, trace,
      );
    let pushed = 0;
    for (const s of sessions) {
      // A rider hears about a booking once subscribed; drivers hear everything addressed to them.
      if (s.principal?.role === 'rider' && (m.type === 'booking.updated' || m.type === 'driver.location')) {
        const id = m.booking?.id ?? m.bookingId;
        if (!id || !s.subscriptions?.has(id)) continue;
      }
      this.#send(s, message);
      pushed++;
    }
    span?.setAttribute('dispatch.pushed', pushed);
    endSpan(span);
  }

  async #receive(session: Session, data: RawData, isBinary: boolean): Promise<void> {
    // What arrives while an auth is checked is read once it has been decided.
    if (!session.principal && session.authenticating) await session.authenticating;
    if (!session.principal) { this.#receiveFirst(session, data, isBinary); return; }
    const allowed = this.#take('ws:messages', session.principal.sub, 1, this.#messageBudget);
    if (!(typeof allowed === 'boolean' ? allowed : await allowed)) {
      // Said with the message's ref, so the client knows which one to send again (a small message only is read for it).
      this.#error(session, 'rate_limited', 'too many messages; slow down', refOf(data, isBinary));
      return;
    }
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

  /**
   * A socket opened without a token may send one thing: a small `auth` message. Anything
   * larger is refused unread, anything else after reading it; both close the socket.
   */
  #receiveFirst(session: Session, data: RawData, isBinary: boolean): void {
    if (session.readyState !== WebSocket.OPEN) return;
    const { messagesPerSecond } = this.#o.limits;
    session.bucket ??= new TokenBucket(messagesPerSecond, messagesPerSecond * 5);
    if (!session.bucket.take()) { this.#error(session, 'rate_limited', 'too many messages; slow down'); return; }
    const size = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength;
    if (isBinary || size > FIRST_MESSAGE_MAX_BYTES) {
      const why = isBinary ? 'the first message must be an auth message (JSON text)'
        : `the first message must be an auth message of at most ${FIRST_MESSAGE_MAX_BYTES / 1024} KiB`;
      this.#error(session, 'unauthenticated', why);
      session.close(isBinary ? CLOSE.unauthenticated : CLOSE.tooBig, isBinary ? 'authenticate first' : 'auth message too large');
      return;
    }
    let raw: unknown;
    try { raw = JSON.parse(data.toString()); } catch { raw = undefined; }
    const parsed = ClientMessage.safeParse(raw);
    if (!parsed.success || parsed.data.type !== 'auth') {
      const ref = (raw as { ref?: unknown } | undefined)?.ref;
      this.#error(session, 'unauthenticated', 'send { type: "auth", token } first; nothing else is read before it',
        typeof ref === 'string' || typeof ref === 'number' ? ref : undefined);
      session.close(CLOSE.unauthenticated, 'authenticate first');
      return;
    }
    const auth = parsed.data;
    session.authenticating = this.#handle(session, auth).catch((error: unknown) => {
      this.#o.logger.warn({ err: error }, 'websocket auth failed');
      this.#error(session, 'unavailable', 'the message could not be handled; try again', auth.ref);
    }).finally(() => { session.authenticating = undefined; });
  }

  async #handle(session: Session, m: ClientMessage): Promise<void> {
    if (m.type === 'auth') {
      let principal: Principal;
      try {
        principal = await this.#o.auth.verify(m.token);
      } catch {
        this.#error(session, 'unauthenticated', 'invalid or expired token', m.ref);
        session.close(CLOSE.unauthenticated, 'invalid token');
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
      } else {
        const place = await this.#acquire(principal);
        if (!place) {
          this.#error(session, 'too_many_sockets', 'too many open sockets for this user', m.ref);
          session.close(CLOSE.tooMany, 'too many sockets for this user');
          return;
        }
        await this.#watch(principal.sub);
        // Closed while the place was taken: give it back rather than bind a dead session.
        if (!this.#sessions.has(session)) { this.#giveUp(principal.sub, place); return; }
        this.#bind(session, principal, place);
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
    const fixesAllowed = fixes === 0 || this.#take('ws:fixes', p.sub, fixes, this.#fixBudget);
    if (!(typeof fixesAllowed === 'boolean' ? fixesAllowed : await fixesAllowed)) {
      this.#error(
        session, 'rate_limited', `more location fixes than ${this.#o.limits.fixesPerMinute} a minute; send one every few seconds`, m.ref,
      );
      return;
    }
    switch (m.type) {
      case 'location':
      case 'location.batch': {
        // Fixes are many and soft: the soft path (no command id, no journal, no log record
        // when this node serves the driver); acked once handed to the driver or its owner,
        // at once when the driver took them at once (the common case): no await, no promise.
        const delivered = region.tellSoftSoon(driver, m.type === 'location'
          ? { type: 'location', fix: fix(m) } : { type: 'location.batch', fixes: m.fixes.map(fix) });
        this.#ackSoft(session, typeof delivered === 'string' ? delivered : await delivered, m.ref);
        return;
      }
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
        (session.subscriptions ??= new Set()).add(m.bookingId);
        this.#send(session, { type: 'ack', ref: m.ref ?? null });
        this.#send(session, { type: 'booking.updated', booking: view });
        return;
      }
      default: {
        let command;
        if (m.type === 'online') {
          // The vehicle type sets the fares: only the driver's vehicle's, or one an admin allowed it (http/online.ts).
          const check = await checkOnline(this.#o.edge, p.sub, m.vehicleType);
          if (!check.ok) { this.#error(session, check.code, check.message, m.ref); return; }
          command = { type: 'online', vehicleType: m.vehicleType, ...(check.vehicleId ? { vehicleId: check.vehicleId } : {}) };
        } else {
          command = m.type === 'offline' ? { type: 'offline' } : { type: m.type, bookingId: m.bookingId };
        }
        // The same error a REST route would answer, without the status: a refusal's code, or
        // internal_error / unprocessable / unavailable for a command that failed.
        const error = commandError(await region.request(driver, command));
        if (error) this.#error(session, error.code, error.message, m.ref);
        else this.#send(session, { type: 'ack', ref: m.ref ?? null });
      }
    }
  }
}

// Ports of the edge: what the HTTP and WebSocket edge needs from storage, with only the
// methods it calls. Adapters implement them (adapters/postgres for accounts, read models,
// settings, projections and the audit log; adapters/memory and adapters/redis for the rate limiter);
// node.ts chooses the adapters and hands them to the edge. Nothing under http/ imports
// adapters/ (test/imports.test.ts checks it; docs/DESIGN.md, "Layers").

import type { summarize } from '../actors/analytics.ts';
import type { Budget } from '../runtime/token-buckets.ts';

// ---- Accounts (deployments without their own identity provider) ----

export interface AccountRecord {
  readonly id: string;
  readonly email: string;
  readonly name: string;
  readonly phone?: string;
  readonly role: string;
  readonly passwordHash: string;
}

/** An account for this email exists already: `Accounts.create` wrote nothing. */
export class DuplicateEmailError extends Error {
  override readonly name = 'DuplicateEmailError';
}

export interface Accounts {
  /** Fails with DuplicateEmailError when an account for the email exists. */
  create(account: AccountRecord): Promise<void>;
  /** Replaces a password hash (an old-cost hash upgraded at login). */
  setPasswordHash(id: string, passwordHash: string): Promise<void>;
  byEmail(email: string): Promise<AccountRecord | undefined>;
}

// ---- Read models (projections of the journal, read side) ----

export interface BookingFilter {
  readonly riderId?: string;
  readonly driverId?: string;
  readonly status?: string;
  readonly from?: number;
  readonly to?: number;
  readonly limit: number;
  /** Where the previous page ended; the edge decodes and validates the client's opaque token into this. */
  readonly cursor?: BookingCursor;
}

/** A position in the newest-first booking list: the last row of a page, by (created_at, id). */
export interface BookingCursor {
  readonly createdAt: Date;
  readonly id: string;
}

export type AnalyticsItem = ReturnType<typeof summarize>;

export interface AnalyticsReport {
  groupBy: 'hour' | 'cell';
  from: string;
  to: string;
  items: AnalyticsItem[];
  totals: { activeDrivers: number; newRiders: number };
  /** The busiest pickup cells (by cell only). */
  topPickupCells: { cell: string; requests: number }[] | undefined;
}

export interface ReadModelQueries {
  listDrivers(status?: string): Promise<Record<string, unknown>[]>;
  listVehicles(): Promise<Record<string, unknown>[]>;
  listBookings(filter: BookingFilter): Promise<{ items: Record<string, unknown>[]; nextCursor?: BookingCursor }>;
  /** Bookings still in play, newest first (for the operations page). */
  activeBookings(limit?: number): Promise<Record<string, unknown>[]>;
  /** Bookings per status created since `since`. */
  statusCounts(since: number): Promise<Record<string, number>>;
  analytics(from: number, to: number, groupBy: 'hour' | 'cell'): Promise<AnalyticsReport>;
}

// ---- Settings (cluster-wide, such as the pricing policy) ----

export interface Settings {
  get<T>(key: string, fallback: T): Promise<T>;
  put(key: string, value: unknown): Promise<void>;
}

// ---- Projections: how far behind the read models are, rebuilds ----

export interface ProjectionStatus {
  readonly name: string;
  /** How far behind the journal this projection may be, on this node's shards (0: caught up). */
  readonly lagMs: number;
  readonly shards: number;
  readonly rowsProjected: number;
  readonly failures: number;
  readonly lastError?: string;
}

/** What /metrics and the cluster status read. */
export interface ProjectionMonitor {
  status(): ProjectionStatus[];
}

export interface Projections extends ProjectionMonitor {
  /** The largest lag of the named projections (all when none are named), in milliseconds. */
  lagMs(...names: string[]): number;
  /** Empties a projection and projects it again from the start of the journal. */
  rebuild(name: string): Promise<{ rows: number; ms: number }>;
}

// ---- Rate limiter (http/rate-limit.ts makes middleware of it; http/ws.ts meters sockets with it) ----
//
// Counted where every node sees the same numbers (Redis in a cluster, this process in an
// embedded node): a user's allowance is the same however many nodes their requests and
// sockets land on.

/** A token bucket: refilled at `perSecond`, holding at most `burst` (the runtime's buckets take it as it is). */
export type { Budget };

/**
 * One place held under a capped key, `<scope>:<id>` (one open socket of a user: ws:sockets and
 * the user's id). Scope and id apart, as a bucket's: a limiter that keeps places in this
 * process keys them by the id the caller holds anyway.
 */
export interface Place {
  readonly scope: string;
  readonly id: string;
  /** Unique per holder (a session), so a holder's renewal and release touch only its place. */
  readonly holder: string;
}

export interface RateLimiter {
  /** Counts one hit; `allowed` false once `limit` hits happened in the current window. */
  hit(key: string, limit: number, windowMs: number): Promise<{ allowed: boolean; retryAfterMs: number; count: number }>;
  /** Holds `key` back for `ms` (a penalty: the failed-login throttle). */
  block(key: string, ms: number): Promise<void>;
  /** How long `key` is still held back; 0 when it is not. */
  blockedFor(key: string): Promise<number>;
  /**
   * Takes `n` tokens from `id`'s bucket of `scope` (the bucket `<scope>:<id>`); false, and
   * nothing taken, when it holds fewer. Scope and id apart, a limiter that keeps its buckets
   * in this process keys them by the id the caller already holds (a user's), not by a string
   * of its own per bucket.
   */
  take(scope: string, id: string, n: number, budget: Budget): Promise<boolean>;
  /**
   * `take` answered at once, by a limiter that keeps its buckets in this process: the socket
   * gateway takes twice per GPS fix, and a promise and an await each were garbage and turns.
   */
  takeNow?(scope: string, id: string, n: number, budget: Budget): boolean;
  /**
   * Holds one of at most `cap` places under the place's key for `leaseMs`; false when all are
   * held. A holder that dies without releasing loses its place when its lease runs out.
   */
  acquire(place: Place, cap: number, leaseMs: number): Promise<boolean>;
  /** Extends the leases of places still held (their sockets are open). */
  renew(places: readonly Place[], leaseMs: number): Promise<void>;
  release(place: Place): Promise<void>;
  /** Releases connections (a limiter with none has no close). */
  close?(): void;
}

// ---- Audit log: who did what, as an admin, from where (http/audit.ts records it) ----

export interface AuditRecord {
  /** When the action was answered, ms since the epoch. */
  readonly at: number;
  /** The token's subject and role. */
  readonly actor: { readonly sub: string; readonly role: string };
  readonly method: string;
  /** The route's template (`/v1/admin/drivers/:id`), not the path. */
  readonly route: string;
  /** What it acted on (`driver:drv_1`), when it names one thing. */
  readonly target?: string;
  /** What changed, in a few words, with no personal data in clear (field names, not their values). */
  readonly summary: string;
  /** The status answered: whether the action was done, refused or failed. */
  readonly status: number;
  /** The client's address as the edge resolved it (TRUST_PROXY). */
  readonly ip: string;
  /** The node's id of the request, as in its log line. */
  readonly requestId: string;
}

export interface AuditEntry extends AuditRecord {
  /** Increasing with each record: newest first is highest first, and a page ends at an id. */
  readonly id: string;
}

export interface AuditQuery {
  readonly limit: number;
  /** Only entries older than the one with this id (the last of the previous page). */
  readonly before?: string;
  /** Only this subject's actions. */
  readonly actor?: string;
}

export interface AuditLog {
  record(entry: AuditRecord): Promise<void>;
  /** Newest first. */
  list(query: AuditQuery): Promise<AuditEntry[]>;
}

// A Jepsen-style checker for what a soak leaves behind: given the database and what the
// load generators recorded as acknowledged, it lists every violated invariant (empty: none).
//
//  - every acknowledged booking is readable through the API and in a valid state;
//  - no driver ever held two live bookings: folded from the journal, both from each driver's
//    own history (an offer accepted while another booking is in hand) and from the bookings'
//    (per driver, the intervals from `accepted` to its release must not overlap);
//  - every counter command the client saw accepted was applied exactly once (sum and count);
//  - the views and analytics equal a fold over the journal (journal-truth.ts).
//
// Convergence is waited for with generous bounds (projections lag, tells are asynchronous);
// a check that holds returns at once.

import pg from 'pg';
import type { BookingEvent, BookingStatus } from '../../actors/booking.ts';
import type { DriverEvent } from '../../actors/driver.ts';
import type { JournalRecord } from '../../runtime/entity-actor.ts';
import { journalTruthDiff } from './journal-truth.ts';

export interface InvariantInput {
  readonly databaseUrl: string;
  /** Nodes to read through (any live one answers for every entity). */
  readonly urls: () => readonly string[];
  readonly adminToken: string;
  /** Booking ids the API acknowledged (201). */
  readonly bookings: readonly string[];
  /** Counter id -> commands the client saw accepted (202), each with its own command id. */
  readonly counterSent: ReadonlyMap<string, number>;
  /** How long to wait for each check to converge (default 120 s). */
  readonly settleMs?: number;
  readonly log?: (line: string) => void;
}

export interface InvariantReport {
  readonly violations: string[];
  readonly bookingsChecked: number;
  readonly statuses: Record<string, number>;
  readonly driversChecked: number;
  readonly assignments: number;
  readonly counterCommands: number;
}

const VALID: ReadonlySet<BookingStatus> = new Set(['scheduled', 'searching', 'offered', 'accepted', 'arriving', 'in_progress', 'completed', 'cancelled', 'no_driver']);
const HOLDING: ReadonlySet<string> = new Set(['accepted', 'arriving', 'in_progress']);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function getJson(url: string, token: string | undefined, timeoutMs = 5_000): Promise<{ status: number; body: any }> {
  const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  let body: unknown = text;
  try { body = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body };
}

/** Reads through the live nodes in turn until one answers 200 (or the time runs out). */
async function readAny(urls: () => readonly string[], path: string, token: string | undefined, untilMs: number): Promise<{ status: number; body: any } | undefined> {
  let last: { status: number; body: any } | undefined;
  for (let i = 0; ; i++) {
    const live = urls();
    if (live.length > 0) {
      try {
        last = await getJson(`${live[i % live.length]}${path}`, token);
        if (last.status === 200) return last;
        // A booking that does not exist is an answer, not an outage: ask once more elsewhere, then take it.
        if (last.status === 404 && i >= live.length) return last;
      } catch { /* a node that does not answer: try the next */ }
    }
    if (Date.now() > untilMs) return last;
    await sleep(200);
  }
}

interface Interval { bookingId: string; start: number; end: number }

/** Folds the journal: both views of "a driver holds a booking" must never overlap. */
export async function driverOverlaps(databaseUrl: string): Promise<{ violations: string[]; drivers: number; assignments: number }> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ persistence_key: string; sequence_nr: string; data: JournalRecord }>(
      `select persistence_key, sequence_nr, data from journal where persistence_key like 'driver:%' or persistence_key like 'booking:%' order by persistence_key, sequence_nr`);
    const violations: string[] = [];
    // Per driver, from its own history: when it let go of each booking it had accepted.
    const released = new Map<string, Map<string, number>>();
    const drivers = new Set<string>();
    // Per booking, from its history: who accepted it, when, and when it let the driver go.
    const held: { bookingId: string; driverId: string; start: number; end: number }[] = [];
    let assignments = 0;
    const open = new Map<string, { driverId: string; start: number }>();
    const inHandOf = new Map<string, string>();
    for (const r of rows) {
      const colon = r.persistence_key.indexOf(':');
      const kind = r.persistence_key.slice(0, colon);
      const id = r.persistence_key.slice(colon + 1);
      const events = (r.data.events ?? []) as unknown[];
      if (kind === 'driver') {
        drivers.add(id);
        const mine = released.get(id) ?? new Map<string, number>();
        released.set(id, mine);
        for (const e of events as DriverEvent[]) {
          const inHand = inHandOf.get(id);
          switch (e.type) {
            case 'offered':
              break;
            case 'offer.accepted':
              assignments++;
              // The booking offered last is the one accepted (the fold keeps it in `bookingId`).
              if (inHand !== undefined && inHand !== e.bookingId) violations.push(`driver ${id} accepted booking ${e.bookingId} at #${r.sequence_nr} while holding ${inHand}`);
              inHandOf.set(id, e.bookingId);
              break;
            case 'trip.ended': case 'offer.ended': case 'booking.released':
              if (inHand === e.bookingId) { inHandOf.delete(id); mine.set(e.bookingId, r.data.at); }
              break;
            case 'went.offline':
              if (inHand !== undefined) { inHandOf.delete(id); mine.set(inHand, r.data.at); }
              break;
            default:
              break;
          }
        }
      } else if (kind === 'booking') {
        for (const e of events as BookingEvent[]) {
          const key = id;
          const cur = open.get(key);
          if (e.type === 'accepted') {
            if (cur) held.push({ bookingId: id, driverId: cur.driverId, start: cur.start, end: e.at });
            open.set(key, { driverId: e.driverId, start: e.at });
          } else if (cur && (e.type === 'released' || e.type === 'completed' || e.type === 'cancelled' || e.type === 'no_driver')) {
            held.push({ bookingId: id, driverId: cur.driverId, start: cur.start, end: e.at });
            open.delete(key);
          }
        }
      }
    }
    for (const [bookingId, cur] of open) held.push({ bookingId, driverId: cur.driverId, start: cur.start, end: Number.POSITIVE_INFINITY });
    // A driver frees itself first when it completes a trip (the booking hears of it after),
    // so a booking's hold ends at whichever of the two let go first.
    const byDriver = new Map<string, Interval[]>();
    for (const h of held) {
      const driverLetGo = released.get(h.driverId)?.get(h.bookingId);
      const end = Math.min(h.end, driverLetGo ?? Number.POSITIVE_INFINITY);
      const list = byDriver.get(h.driverId) ?? [];
      list.push({ bookingId: h.bookingId, start: h.start, end });
      byDriver.set(h.driverId, list);
    }
    for (const [driverId, list] of byDriver) {
      list.sort((a, b) => a.start - b.start);
      for (let i = 1; i < list.length; i++) {
        const prev = list[i - 1]!;
        const cur = list[i]!;
        if (cur.start < prev.end) violations.push(`driver ${driverId} held ${prev.bookingId} [${prev.start}, ${prev.end}) and ${cur.bookingId} from ${cur.start}`);
      }
    }
    return { violations, drivers: drivers.size, assignments };
  } finally {
    await client.end();
  }
}

export async function checkInvariants(input: InvariantInput): Promise<InvariantReport> {
  const settleMs = input.settleMs ?? 120_000;
  const log = input.log ?? (() => undefined);
  const violations: string[] = [];

  // 1. Every acknowledged booking is readable through the API and in a valid state.
  const statuses: Record<string, number> = {};
  const holders = new Map<string, string>();
  const until = Date.now() + settleMs;
  for (const id of input.bookings) {
    const res = await readAny(input.urls, `/v1/bookings/${encodeURIComponent(id)}`, input.adminToken, until);
    if (!res || res.status !== 200) { violations.push(`booking ${id}: acknowledged but not readable (${res ? `HTTP ${res.status}` : 'no node answered'})`); continue; }
    const status = String(res.body?.status);
    statuses[status] = (statuses[status] ?? 0) + 1;
    if (!VALID.has(status as BookingStatus)) violations.push(`booking ${id}: invalid status ${status}`);
    if (HOLDING.has(status)) {
      const driverId = res.body?.driverId as string | undefined;
      if (!driverId) violations.push(`booking ${id}: ${status} without a driver`);
      else if (holders.has(driverId)) violations.push(`driver ${driverId} holds two live bookings now: ${holders.get(driverId)} and ${id}`);
      else holders.set(driverId, id);
    }
  }
  log(`invariants: ${input.bookings.length} acknowledged bookings read, ${JSON.stringify(statuses)}`);

  // 2. Every counter command applied exactly once: the sums converge to what the client counted.
  let counterCommands = 0;
  for (const n of input.counterSent.values()) counterCommands += n;
  const counterUntil = Date.now() + settleMs;
  let counterProblems: string[] = [];
  for (;;) {
    counterProblems = [];
    for (const [id, sent] of input.counterSent) {
      const res = await readAny(input.urls, `/counter/${encodeURIComponent(id)}`, undefined, Date.now() + 15_000);
      if (!res || res.status !== 200) { counterProblems.push(`counter ${id}: not readable`); continue; }
      const { total, applied } = res.body as { total: number; applied: number };
      if (total !== sent || applied !== sent) counterProblems.push(`counter ${id}: total ${total}, applied ${applied}, client counted ${sent}`);
    }
    // More applied than sent never gets better by waiting.
    if (counterProblems.length === 0 || Date.now() > counterUntil || counterProblems.some((p) => /applied (\d+), client counted (\d+)/.test(p) && Number(RegExp.$1) > Number(RegExp.$2))) break;
    await sleep(1_000);
  }
  violations.push(...counterProblems);
  log(`invariants: ${input.counterSent.size} counters, ${counterCommands} commands, ${counterProblems.length} wrong`);

  // 3. No driver ever held two live bookings (the whole history, from the journal).
  const overlaps = await driverOverlaps(input.databaseUrl);
  violations.push(...overlaps.violations);
  log(`invariants: ${overlaps.drivers} drivers, ${overlaps.assignments} assignments, ${overlaps.violations.length} overlaps`);

  // 4. Views and analytics equal the journal, once the projections have caught up.
  const truthUntil = Date.now() + settleMs;
  let diff: string[] = [];
  for (;;) {
    diff = await journalTruthDiff(input.databaseUrl);
    if (diff.length === 0 || Date.now() > truthUntil) break;
    await sleep(2_000);
  }
  violations.push(...diff.slice(0, 50).map((d) => `journal truth: ${d}`));
  if (diff.length > 50) violations.push(`journal truth: ... and ${diff.length - 50} more differences`);
  log(`invariants: views vs journal: ${diff.length} differences`);

  return { violations, bookingsChecked: input.bookings.length, statuses, driversChecked: overlaps.drivers, assignments: overlaps.assignments, counterCommands };
}

// Read models on PostgreSQL, read side: the booking list (with the index the
// scheduler uses), drivers, vehicles and the analytics aggregates. They are written
// only by the projections that follow the journal (projections.ts), exactly once.

import type { Orm } from './orm.ts';
import type { Guard } from '../resilience.ts';
import { summarize, type AnalyticsRow } from '../../actors/analytics.ts';
import type { AnalyticsReport, BookingCursor, BookingFilter, ReadModelQueries } from '../../http/ports.ts';

export type { BookingCursor, BookingFilter };

export interface BookingRow {
  readonly id: string;
  readonly shard: number;
  readonly data: Record<string, unknown>;
}

export class ReadModels implements ReadModelQueries {
  readonly #orm: Orm;
  readonly #guard: Guard;
  /** Per set of shards, where the last full page of due scheduled bookings ended (see dueScheduled). */
  readonly #dueAfter = new Map<string, { readonly scheduledAt: Date; readonly id: string }>();

  constructor(orm: Orm, g: Guard) {
    this.#orm = orm;
    this.#guard = g;
  }

  #sql<T>(sql: string, params: unknown[] = []): Promise<T[]> {
    return this.#guard.run(() => this.#orm.em.getConnection().execute(sql, params) as Promise<T[]>);
  }

  async listDrivers(status?: string): Promise<Record<string, unknown>[]> {
    const rows = await this.#sql<{ data: unknown }>(
      `select data from driver_view ${status ? 'where status = ?' : ''} order by id limit 1000`, status ? [status] : []);
    return rows.map((r) => parseJson(r.data) as Record<string, unknown>);
  }

  async listVehicles(): Promise<Record<string, unknown>[]> {
    const rows = await this.#sql<{ data: unknown }>('select data from vehicle_view where not deleted order by id limit 1000');
    return rows.map((r) => parseJson(r.data) as Record<string, unknown>);
  }

  async booking(id: string): Promise<BookingRow | undefined> {
    const [row] = await this.#sql<{ id: string; shard: number; data: unknown }>('select id, shard, data from booking_view where id = ?', [id]);
    return row && { id: row.id, shard: row.shard, data: parseJson(row.data) as Record<string, unknown> };
  }

  /** Newest first; `nextCursor` is the last row's (created_at, id) when more rows follow. */
  async listBookings(f: BookingFilter): Promise<{ items: Record<string, unknown>[]; nextCursor?: BookingCursor }> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (f.riderId) { where.push('rider_id = ?'); params.push(f.riderId); }
    if (f.driverId) { where.push('driver_id = ?'); params.push(f.driverId); }
    if (f.status) { where.push('status = ?'); params.push(f.status); }
    if (f.from !== undefined) { where.push('created_at >= ?'); params.push(new Date(f.from)); }
    if (f.to !== undefined) { where.push('created_at < ?'); params.push(new Date(f.to)); }
    if (f.cursor) {
      where.push('(created_at, id) < (?, ?)');
      params.push(f.cursor.createdAt, f.cursor.id);
    }
    const rows = await this.#sql<{ id: string; created_at: Date | string; data: unknown }>(
      `select id, created_at, data from booking_view ${where.length ? `where ${where.join(' and ')}` : ''}
       order by created_at desc, id desc limit ?`, [...params, f.limit + 1]);
    const page = rows.slice(0, f.limit);
    const last = page.at(-1);
    return {
      items: page.map((r) => parseJson(r.data) as Record<string, unknown>),
      ...(rows.length > f.limit && last ? { nextCursor: { createdAt: new Date(last.created_at), id: last.id } } : {}),
    };
  }

  /** Bookings still in play, newest first (for the operations page). */
  async activeBookings(limit = 200): Promise<Record<string, unknown>[]> {
    const rows = await this.#sql<{ data: unknown }>(
      `select data from booking_view where status in ('scheduled', 'searching', 'offered', 'accepted', 'arriving', 'in_progress')
       order by created_at desc limit ?`, [limit]);
    return rows.map((r) => parseJson(r.data) as Record<string, unknown>);
  }

  /** Bookings per status created since `since`. */
  async statusCounts(since: number): Promise<Record<string, number>> {
    const rows = await this.#sql<{ status: string; n: string | number }>(
      'select status, count(*) as n from booking_view where created_at >= ? group by status', [new Date(since)]);
    return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
  }

  /**
   * Scheduled bookings of the given shards due before `before`, for the sweep that backs up
   * their own activation timers. Only rows still `scheduled`: a booking the row shows final
   * (or already dispatching) is never returned. A row that stays (its booking moved on but
   * the write was lost, until the booking's answer to the sweep corrects it) must not starve
   * the others: a call goes on after the row where the previous full page (for the same
   * shards) stopped, in (scheduled_at, id) order, and starts over from the oldest after a
   * short page, so every due row comes up within ceil(due / limit) + 1 calls.
   */
  async dueScheduled(shards: readonly number[], before: number, limit = 500): Promise<string[]> {
    if (shards.length === 0) return [];
    const key = [...shards].sort((a, b) => a - b).join(',');
    const after = this.#dueAfter.get(key);
    const rows = await this.#sql<{ id: string; scheduled_at: Date | string }>(
      `select id, scheduled_at from booking_view
       where status = 'scheduled' and scheduled_at <= ? and shard in (${shards.map(() => '?').join(',')})
       ${after ? 'and (scheduled_at, id) > (?, ?)' : ''}
       order by scheduled_at, id limit ?`,
      [new Date(before), ...shards, ...(after ? [after.scheduledAt, after.id] : []), limit]);
    const last = rows.at(-1);
    this.#dueAfter.delete(key);
    if (rows.length >= limit && last) {
      if (this.#dueAfter.size >= 64) this.#dueAfter.clear(); // shard sets come and go with rebalances
      this.#dueAfter.set(key, { scheduledAt: new Date(last.scheduled_at), id: last.id });
    }
    return rows.map((r) => r.id);
  }

  async analytics(from: number, to: number, groupBy: 'hour' | 'cell'): Promise<AnalyticsReport> {
    const key = groupBy === 'hour' ? 'a.hour' : 'a.cell';
    const rows = await this.#sql<Record<string, string | number | Date>>(
      `select ${key} as key, sum(requests) as requests, sum(completed) as completed, sum(cancelled) as cancelled,
         sum(no_driver) as no_driver, sum(revenue) as revenue, sum(fare_count) as fare_count, sum(wait_ms_sum) as wait_ms_sum,
         sum(wait_count) as wait_count, sum(surge_sum) as surge_sum, sum(surge_count) as surge_count, sum(trip_ms_sum) as trip_ms_sum
       from analytics_hour_cell a where a.hour >= ? and a.hour < ? group by ${key} order by ${groupBy === 'hour' ? 'key' : 'requests desc, key'}`,
      [new Date(hourFloor(from)), new Date(to)]);
    const drivers = await this.#sql<{ key: string | Date; n: string | number }>(
      groupBy === 'hour'
        ? 'select hour as key, count(*) as n from analytics_driver_hour where hour >= ? and hour < ? group by hour'
        : 'select cell as key, count(distinct driver_id) as n from analytics_driver_hour_cell where hour >= ? and hour < ? group by cell',
      [new Date(hourFloor(from)), new Date(to)]);
    const riders = await this.#sql<{ key: string | Date; n: string | number }>(
      groupBy === 'hour'
        ? 'select first_seen as key, count(*) as n from analytics_rider where first_seen >= ? and first_seen < ? group by first_seen'
        : 'select first_cell as key, count(*) as n from analytics_rider where first_seen >= ? and first_seen < ? group by first_cell',
      [new Date(hourFloor(from)), new Date(to)]);
    const keyOf = (k: unknown) => (k instanceof Date
      ? k.toISOString()
      : typeof k === 'string' && groupBy === 'hour' ? new Date(k).toISOString() : String(k));
    const driversBy = new Map(drivers.map((d) => [keyOf(d.key), Number(d.n)]));
    const ridersBy = new Map(riders.map((d) => [keyOf(d.key), Number(d.n)]));
    const n = (v: unknown) => Number(v ?? 0);
    const items = rows.map((r) => summarize({
      key: keyOf(r.key), requests: n(r.requests), completed: n(r.completed), cancelled: n(r.cancelled), noDriver: n(r.no_driver),
      revenue: n(r.revenue), fareCount: n(r.fare_count), waitMsSum: n(r.wait_ms_sum), waitCount: n(r.wait_count),
      surgeSum: n(r.surge_sum), surgeCount: n(r.surge_count), tripMsSum: n(r.trip_ms_sum),
      activeDrivers: driversBy.get(keyOf(r.key)) ?? 0,
      newRiders: ridersBy.get(keyOf(r.key)) ?? 0,
    } satisfies AnalyticsRow));
    const [totals] = await this.#sql<{ drivers: string | number; riders: string | number }>(
      `select (select count(distinct driver_id) from analytics_driver_hour where hour >= ? and hour < ?) as drivers,
              (select count(*) from analytics_rider where first_seen >= ? and first_seen < ?) as riders`,
      [new Date(hourFloor(from)), new Date(to), new Date(hourFloor(from)), new Date(to)]);
    return {
      groupBy, from: new Date(from).toISOString(), to: new Date(to).toISOString(), items,
      totals: { activeDrivers: Number(totals?.drivers ?? 0), newRiders: Number(totals?.riders ?? 0) },
      topPickupCells: groupBy === 'cell' ? items.slice(0, 10).map((i) => ({ cell: i.key, requests: i.requests })) : undefined,
    };
  }
}

function hourFloor(at: number): number {
  return Math.floor(at / 3_600_000) * 3_600_000;
}

function parseJson(value: unknown): unknown {
  return typeof value === 'string' ? JSON.parse(value) : value;
}

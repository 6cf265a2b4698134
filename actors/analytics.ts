// Analytics as a pure projection: each domain event becomes increments of the
// aggregates of its hour and pickup cell, plus the facts needed for distinct
// counts (drivers active in an hour, riders seen for the first time).

export interface BookingEventView {
  readonly type: string;
  readonly at?: number;
  /** What analytics reads of the booking after the transition (a BookingState has it all). */
  readonly booking: {
    readonly riderId: string;
    readonly price: { readonly amount: number };
    readonly surge: number;
    readonly driverId?: string;
    /** When the booking entered each status, in epoch milliseconds. */
    readonly timeline: readonly { readonly status: string; readonly at: number }[];
  };
  readonly pickupCell?: string;
  readonly driverId?: string;
}

export interface Increments {
  requests: number;
  completed: number;
  cancelled: number;
  noDriver: number;
  revenue: number;
  fareCount: number;
  waitMsSum: number;
  waitCount: number;
  surgeSum: number;
  surgeCount: number;
  tripMsSum: number;
}

export interface AnalyticsDelta {
  readonly hour: number;
  readonly cell: string;
  readonly increments: Partial<Increments>;
  readonly activeDriver?: string;
  readonly rider?: string;
}

const HOUR = 3_600_000;

export function hourOf(at: number): number {
  return Math.floor(at / HOUR) * HOUR;
}

function timeOf(booking: BookingEventView['booking'], status: string): number | undefined {
  return booking.timeline.find((t) => t.status === status)?.at;
}

/** What one booking event adds to the aggregates; undefined when it adds nothing. */
export function analyticsDelta(event: BookingEventView, pickupCell: string): AnalyticsDelta | undefined {
  const b = event.booking;
  const at = event.at ?? Date.now();
  const base = { hour: hourOf(at), cell: pickupCell };
  switch (event.type) {
    case 'booking.searching':
    case 'booking.scheduled':
      // A request is counted once, when the booking is made (scheduled ones too).
      if (b.timeline.length !== 1) return undefined;
      return { ...base, increments: { requests: 1, surgeSum: b.surge, surgeCount: 1 }, rider: b.riderId };
    case 'booking.arriving': {
      const requested = b.timeline[0]!.at;
      const searching = timeOf(b, 'searching') ?? requested;
      return { ...base, increments: { waitMsSum: at - searching, waitCount: 1 }, activeDriver: b.driverId };
    }
    case 'booking.completed': {
      const started = timeOf(b, 'in_progress');
      return {
        ...base,
        increments: { completed: 1, revenue: b.price.amount, fareCount: 1, tripMsSum: started ? at - started : 0 },
        activeDriver: b.driverId,
      };
    }
    case 'booking.cancelled': return { ...base, increments: { cancelled: 1 } };
    case 'booking.no_driver': return { ...base, increments: { noDriver: 1 } };
    case 'booking.accepted': return { ...base, increments: {}, activeDriver: b.driverId };
    default: return undefined;
  }
}

export interface AnalyticsRow extends Increments {
  readonly key: string;
  readonly activeDrivers: number;
  readonly newRiders: number;
}

/** The figures an operator reads, from summed rows. */
export function summarize(row: AnalyticsRow) {
  return {
    key: row.key,
    requests: row.requests,
    completed: row.completed,
    cancelled: row.cancelled,
    noDriver: row.noDriver,
    revenue: row.revenue,
    meanFare: row.fareCount ? Math.round(row.revenue / row.fareCount) : null,
    meanWaitToPickupSec: row.waitCount ? Math.round(row.waitMsSum / row.waitCount / 1000) : null,
    meanSurge: row.surgeCount ? Math.round((row.surgeSum / row.surgeCount) * 100) / 100 : null,
    activeDrivers: row.activeDrivers,
    // Share of active drivers' hour spent carrying riders.
    driverUtilisation: row.activeDrivers ? Math.round((row.tripMsSum / (row.activeDrivers * HOUR)) * 1000) / 1000 : null,
    newRiders: row.newRiders,
  };
}

// Prometheus metrics at /metrics (prom-client): HTTP latency, open sockets, live
// actors per kind, commands handled, command-log lag, dispatch outcomes, and what the
// dashboard and alerts in monitoring/ read (docs/OPERATIONS.md says what each means).

import Router from '@koa/router';
import type { Middleware } from 'koa';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Service } from '../actors/behavior.ts';
import type { ShardRegion } from '../runtime/region.ts';
import { NOT_NOW, type ShardHost } from '../runtime/shard-host.ts';
import type { ProjectionMonitor } from './ports.ts';

export interface MetricSources {
  readonly region: ShardRegion;
  readonly host: ShardHost;
  readonly projector?: ProjectionMonitor;
  /** Records appended but not yet committed, per shard this node consumes. */
  readonly lag?: () => readonly { readonly shard: number; readonly lag: number }[];
  /** Circuit breaker state per dependency ('closed', 'open', 'half-open', 'isolated'). */
  readonly breakers?: () => Readonly<Record<string, string>>;
  /** Times the node services entities request; made before the region, which calls them. */
  readonly services?: ServiceTimings;
  /** Times the phases of membership changes; made before the command log, which reports them. */
  readonly handoff?: HandoffTimings;
}

/** Breaker states as one number a graph and an alert can read: closed 0, trying 0.5, refusing 1. */
const BREAKER_VALUES: Readonly<Record<string, number>> = { closed: 0, 'half-open': 0.5, open: 1, isolated: 1 };

const OUTCOMES = ['booking.accepted', 'booking.no_driver', 'booking.cancelled', 'booking.completed'];

/** Cells with the highest surge exported per node: enough for a map of a city's hot spots, bounded whatever the city. */
const SURGE_CELLS_MAX = 100;

/**
 * The node services entities request (the nearest-driver search across cells), timed. Made
 * before the region that calls them; Metrics registers the histogram.
 */
export class ServiceTimings {
  readonly histogram = new Histogram<'service'>({
    name: 'dispatch_service_duration_seconds',
    help: 'Time a node service takes to answer an entity (nearest: the nearest-driver search across cells)',
    labelNames: ['service'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers: [],
  });

  wrap(services: Readonly<Record<string, Service>>): Record<string, Service> {
    return Object.fromEntries(Object.entries(services).map(([name, service]): [string, Service] => [name, async (payload, ports) => {
      const end = this.histogram.startTimer({ service: name });
      try { return await service(payload, ports); } finally { end(); }
    }]));
  }
}

/** How long each phase of taking a join's assignment took (adapters/kafka/command-log.ts HandoffPhase). */
export class HandoffTimings {
  readonly histogram = new Histogram<'phase'>({
    name: 'shard_handoff_phase_seconds',
    help: 'Time each phase of a membership change takes on this node: join, drain, map, set_up (release, take, set up), read',
    labelNames: ['phase'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [],
  });

  observe(phase: string, seconds: number): void {
    this.histogram.observe({ phase }, seconds);
  }
}

interface BookingEventLike {
  readonly type?: string;
  readonly at?: number;
  readonly booking?: { readonly timeline?: readonly { readonly status: string; readonly at: string }[] };
}

/**
 * Seconds from the start of a booking's search to its first offer, when `event` is that
 * offer; else undefined. Measured from the first `searching` (a scheduled booking's search
 * begins long after it was made), which for an immediate booking is its creation.
 */
export function firstOfferSeconds(event: BookingEventLike): number | undefined {
  const timeline = event.booking?.timeline;
  if (event.type !== 'booking.offered' || !timeline || timeline.filter((t) => t.status === 'offered').length !== 1) return undefined;
  const searching = timeline.find((t) => t.status === 'searching');
  const offered = timeline.find((t) => t.status === 'offered')!;
  if (!searching) return undefined;
  return Math.max(0, Date.parse(offered.at) - Date.parse(searching.at)) / 1000;
}

/** Drivers by status in this node's active cell actors, read without waking or keeping any of them. */
export function driversByStatus(host: ShardHost): Record<string, number> {
  const drivers: Record<string, number> = {};
  for (const ref of host.activeRefs('cell')) {
    const copies = host.peek(ref, { type: 'drivers' });
    if (Array.isArray(copies)) for (const d of copies as { status: string }[]) drivers[d.status] = (drivers[d.status] ?? 0) + 1;
  }
  return drivers;
}

/** The surge of this node's active cells above 1, highest first, at most SURGE_CELLS_MAX. */
export function surgeByCell(host: ShardHost): { cell: string; surge: number }[] {
  const surge: { cell: string; surge: number }[] = [];
  for (const ref of host.activeRefs('cell')) {
    const reading = host.peek(ref, { type: 'surge' });
    if (reading !== NOT_NOW && (reading as { surge: number }).surge > 1) {
      surge.push({ cell: ref.id, surge: (reading as { surge: number }).surge });
    }
  }
  return surge.sort((a, b) => b.surge - a.surge).slice(0, SURGE_CELLS_MAX);
}

/** How often the event-loop delay monitor samples. */
const EVENT_LOOP_SAMPLE_MS = 100;

export class Metrics {
  readonly registry = new Registry();
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;
  readonly openSockets: Gauge<'role'>;
  readonly dispatchOutcomes: Counter<'outcome'>;

  constructor(sources: MetricSources) {
    // The event-loop delay monitor samples on a timer of its own: at prom-client's 10 ms it woke an
    // idle node 100 times a second (about a third of its idle CPU); 100 ms still catches any stall
    // worth an alert (nodejs_eventloop_lag_* report delays past the sampling period).
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
    const registers = [this.registry];
    this.httpDuration = new Histogram({
      name: 'http_request_duration_seconds', help: 'HTTP request latency', labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers,
    });
    this.openSockets = new Gauge({ name: 'websocket_open', help: 'Open WebSocket sessions', labelNames: ['role'], registers });
    this.dispatchOutcomes = new Counter({
      name: 'dispatch_outcomes_total', help: 'Bookings reaching a dispatch outcome', labelNames: ['outcome'], registers,
    });
    if (sources.services) this.registry.registerMetric(sources.services.histogram);
    if (sources.handoff) this.registry.registerMetric(sources.handoff.histogram);
    this.#runtime(sources);
    this.#cells(sources.host);
    if (sources.projector) this.#projections(sources.projector);
    if (sources.lag) this.#lag(sources.lag);
    if (sources.breakers) this.#breakers(sources.breakers);
    this.#dispatch(sources.region);
  }

  /** Entities, commands, shards: the runtime's own counts. */
  #runtime({ region, host }: MetricSources): void {
    const registers = [this.registry];
    new Gauge({
      name: 'actors_active', help: 'Live entity actors on this node', labelNames: ['kind'], registers,
      collect() { for (const [kind, n] of Object.entries(host.stats().activeByKind)) this.set({ kind }, n); },
    });
    new Gauge({
      name: 'actors_holding_mailbox', help: 'Live entities holding a nact mailbox now; the others hibernate (idle for a second or two)', registers,
      collect() { this.set(host.stats().mailboxes); },
    });
    new Gauge({
      name: 'commands_handled_total', help: 'Commands handled by entities on this node (counter semantics)', registers,
      collect() { this.set(region.stats().commandsHandled); },
    });
    new Gauge({ name: 'shards_owned', help: 'Shards this node owns', registers, collect() { this.set(region.stats().owned.length); } });
    new Gauge({
      name: 'shards_total', help: 'Shards the cluster has (every node says the same: an alert compares it with the sum owned)', registers,
      collect() { this.set(region.shards); },
    });
    new Gauge({
      name: 'snapshot_failures_total', help: 'Snapshots that could not be written', registers,
      collect() { this.set(host.stats().engine.snapshotFailures); },
    });
    new Gauge({
      name: 'shard_stuck_seconds',
      help: 'How long the command a shard waits on has been failing (0 when none is)',
      labelNames: ['shard'],
      registers,
      collect() {
        this.reset();
        for (const shard of region.stats().owned) this.set({ shard: String(shard) }, 0);
        for (const s of region.stuckShards()) this.set({ shard: String(s.shard) }, s.seconds);
      },
    });
    new Gauge({
      name: 'shard_unserved_seconds',
      help: 'Shards the command log assigns this node that it does not serve, for how long, and why (absent when served)',
      labelNames: ['shard', 'reason'],
      registers,
      collect() {
        this.reset();
        for (const u of region.unservedShards()) this.set({ shard: String(u.shard), reason: u.reason }, u.seconds);
      },
    });
    this.#mirror(
      'dispatch_fenced_writes_total', 'Writes storage refused because another node took their shard (a newer epoch)', [],
      () => ({ '': region.stats().fencedWrites }),
    );
    new Gauge({
      name: 'commands_dead_lettered_total', help: 'Commands set aside in the dead-letter store (counter semantics)', registers,
      collect() { this.set(region.stats().commandsDeadLettered); },
    });
    this.#mirror(
      'soft_messages_total',
      'Soft messages (location fixes) by what became of them: applied here, sent durably, forwarded to their shard\'s owner, dropped',
      ['outcome'],
      () => {
        const s = region.stats();
        return { applied: s.softApplied, durable: s.softDurable, forwarded: s.softForwarded, dropped: s.softDropped };
      },
    );
  }

  /**
   * A real counter following one of the runtime's counts (which only grow): `read` gives
   * the count per value of the one label (or '' for none).
   */
  #mirror(name: string, help: string, labelNames: string[], read: () => Record<string, number>): void {
    const seen = new Map<string, number>();
    const label = labelNames[0];
    new Counter({
      name, help, labelNames, registers: [this.registry],
      collect() {
        for (const [value, now] of Object.entries(read())) {
          const before = seen.get(value) ?? 0;
          if (label) this.inc({ [label]: value }, now - before > 0 ? now - before : 0);
          else if (now > before) this.inc(now - before);
          seen.set(value, Math.max(before, now));
        }
      },
    });
  }

  /** Drivers and surge as this node's cell actors hold them (each cell lives on one node). */
  #cells(host: ShardHost): void {
    const registers = [this.registry];
    new Gauge({
      name: 'dispatch_cell_drivers',
      help: 'Drivers heard from within the TTL in the cells active on this node, by status (summed over nodes: drivers online; ' +
        'status="available": free to offer)',
      labelNames: ['status'], registers,
      collect() {
        this.reset();
        const drivers = { available: 0, offered: 0, assigned: 0, on_trip: 0, ...driversByStatus(host) };
        for (const [status, n] of Object.entries(drivers)) this.set({ status }, n);
      },
    });
    new Gauge({
      name: 'dispatch_cell_surge_multiplier',
      help: `Surge of the cells active on this node with surge above 1 (the ${SURGE_CELLS_MAX} highest)`,
      labelNames: ['cell'],
      registers,
      collect() {
        this.reset();
        for (const { cell, surge } of surgeByCell(host)) this.set({ cell }, surge);
      },
    });
  }

  #projections(projector: ProjectionMonitor): void {
    const registers = [this.registry];
    new Gauge({
      name: 'projection_lag_seconds', help: 'How far behind the journal each projection may be on the shards this node owns (0: caught up)',
      labelNames: ['projection'], registers,
      collect() { for (const s of projector.status()) this.set({ projection: s.name }, s.lagMs / 1000); },
    });
    new Gauge({
      name: 'projection_rows_total', help: 'Journal rows projected by this node (counter semantics)', labelNames: ['projection'], registers,
      collect() { for (const s of projector.status()) this.set({ projection: s.name }, s.rowsProjected); },
    });
    new Gauge({
      name: 'projection_failures_total',
      help: 'Projection batches that failed and will be tried again (counter semantics)',
      labelNames: ['projection'],
      registers,
      collect() { for (const s of projector.status()) this.set({ projection: s.name }, s.failures); },
    });
  }

  #lag(lag: NonNullable<MetricSources['lag']>): void {
    const registers = [this.registry];
    new Gauge({
      name: 'command_log_lag', help: 'Records appended but not yet committed, all shards this node consumes', registers,
      collect() { this.set(lag().reduce((a, p) => a + p.lag, 0)); },
    });
    new Gauge({
      name: 'command_log_lag_records',
      help: 'Records appended but not yet committed, per shard this node consumes',
      labelNames: ['shard'],
      registers,
      collect() {
        this.reset();
        for (const p of lag()) this.set({ shard: String(p.shard) }, p.lag);
      },
    });
  }

  #breakers(breakers: NonNullable<MetricSources['breakers']>): void {
    new Gauge({
      name: 'dependency_circuit_state',
      help: 'Circuit breaker per dependency: 0 closed, 0.5 half-open (one trial call), 1 open (calls refused at once)',
      labelNames: ['dependency'], registers: [this.registry],
      collect() { for (const [dependency, state] of Object.entries(breakers())) this.set({ dependency }, BREAKER_VALUES[state] ?? 1); },
    });
  }

  /** Booking outcomes, offers and time to the first offer, from the bookings' domain events on this node. */
  #dispatch(region: ShardRegion): void {
    const registers = [this.registry];
    const requested = new Counter({
      name: 'dispatch_bookings_requested_total', help: 'Bookings made (scheduled ones when made, not when their search starts)', registers,
    });
    const offers = new Counter({ name: 'dispatch_offers_total', help: 'Offers made to drivers (a booking may make several)', registers });
    const firstOffer = new Histogram({
      name: 'dispatch_first_offer_seconds',
      help: 'From the start of a booking\'s search (its creation, unless scheduled) to its first offer to a driver',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120], registers,
    });
    region.onDomainEvent((topic, event) => {
      if (topic !== 'booking') return;
      const e = event as BookingEventLike;
      const type = e.type ?? '';
      if (OUTCOMES.includes(type)) this.dispatchOutcomes.inc({ outcome: type.slice('booking.'.length) });
      if ((type === 'booking.searching' || type === 'booking.scheduled') && e.booking?.timeline?.length === 1) requested.inc();
      if (type === 'booking.offered') offers.inc();
      const seconds = firstOfferSeconds(e);
      if (seconds !== undefined) firstOffer.observe(seconds);
    });
  }

  middleware(): Middleware {
    return async (ctx, next) => {
      const end = this.httpDuration.startTimer();
      try {
        await next();
      } finally {
        // The matched route pattern, not the raw path, keeps label cardinality bounded.
        end({ method: ctx.method, route: (ctx as { _matchedRoute?: string })._matchedRoute ?? 'unmatched', status: String(ctx.status) });
      }
    };
  }

  /** GET /metrics, behind `guards` (an admin check on the public port). */
  routes(...guards: Middleware<any>[]): Router<any> {
    const router = new Router<any>();
    router.get('/metrics', ...guards, async (ctx) => {
      ctx.type = this.registry.contentType;
      ctx.body = await this.registry.metrics();
    });
    return router;
  }
}

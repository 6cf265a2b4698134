// Prometheus metrics at /metrics (prom-client): HTTP latency, open sockets, live
// actors per kind, commands handled, command-log lag, dispatch outcomes.

import Router from '@koa/router';
import type { Middleware } from 'koa';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ShardRegion } from '../runtime/region.ts';
import type { ShardHost } from '../runtime/shard-host.ts';
import type { Projector } from '../adapters/postgres/projections.ts';

export class Metrics {
  readonly registry = new Registry();
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;
  readonly openSockets: Gauge<'role'>;
  readonly dispatchOutcomes: Counter<'outcome'>;

  constructor(sources: { region: ShardRegion; host: ShardHost; projector?: Projector; lag?: () => number }) {
    collectDefaultMetrics({ register: this.registry });
    this.httpDuration = new Histogram({
      name: 'http_request_duration_seconds', help: 'HTTP request latency', labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [this.registry],
    });
    this.openSockets = new Gauge({ name: 'websocket_open', help: 'Open WebSocket sessions', labelNames: ['role'], registers: [this.registry] });
    this.dispatchOutcomes = new Counter({ name: 'dispatch_outcomes_total', help: 'Bookings reaching a dispatch outcome', labelNames: ['outcome'], registers: [this.registry] });
    new Gauge({
      name: 'actors_active', help: 'Live entity actors on this node', labelNames: ['kind'], registers: [this.registry],
      collect() { for (const [kind, n] of Object.entries(sources.host.stats().activeByKind)) this.set({ kind }, n); },
    });
    new Gauge({
      name: 'commands_handled_total', help: 'Commands handled by entities on this node (counter semantics)', registers: [this.registry],
      collect() { this.set(sources.region.stats().commandsHandled); },
    });
    new Gauge({
      name: 'shards_owned', help: 'Shards this node owns', registers: [this.registry],
      collect() { this.set(sources.region.stats().owned.length); },
    });
    new Gauge({
      name: 'snapshot_failures_total', help: 'Snapshots that could not be written', registers: [this.registry],
      collect() { this.set(sources.host.stats().engine.snapshotFailures); },
    });
    new Gauge({
      name: 'shard_stuck_seconds', help: 'How long the command a shard waits on has been failing (0 when none is)', labelNames: ['shard'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const shard of sources.region.stats().owned) this.set({ shard: String(shard) }, 0);
        for (const s of sources.region.stuckShards()) this.set({ shard: String(s.shard) }, s.seconds);
      },
    });
    // A real counter: prom-client's value follows the runtime's, which only grows.
    let fencedSeen = 0;
    new Counter({
      name: 'dispatch_fenced_writes_total', help: 'Writes storage refused because another node took their shard (a newer epoch)', registers: [this.registry],
      collect() {
        const now = sources.region.stats().fencedWrites;
        if (now > fencedSeen) { this.inc(now - fencedSeen); fencedSeen = now; }
      },
    });
    new Gauge({
      name: 'commands_dead_lettered_total', help: 'Commands set aside in the dead-letter store (counter semantics)', registers: [this.registry],
      collect() { this.set(sources.region.stats().commandsDeadLettered); },
    });
    if (sources.projector) {
      const projector = sources.projector;
      new Gauge({
        name: 'projection_lag_seconds', help: 'How far behind the journal each projection may be on the shards this node owns (0: caught up)',
        labelNames: ['projection'], registers: [this.registry],
        collect() { for (const s of projector.status()) this.set({ projection: s.name }, s.lagMs / 1000); },
      });
      new Gauge({
        name: 'projection_rows_total', help: 'Journal rows projected by this node (counter semantics)', labelNames: ['projection'], registers: [this.registry],
        collect() { for (const s of projector.status()) this.set({ projection: s.name }, s.rowsProjected); },
      });
      new Gauge({
        name: 'projection_failures_total', help: 'Projection batches that failed and will be tried again (counter semantics)', labelNames: ['projection'], registers: [this.registry],
        collect() { for (const s of projector.status()) this.set({ projection: s.name }, s.failures); },
      });
    }
    if (sources.lag) {
      const lag = sources.lag;
      new Gauge({ name: 'command_log_lag', help: 'Records appended but not yet committed', registers: [this.registry], collect() { this.set(lag()); } });
    }
    sources.region.onDomainEvent((topic, event) => {
      const type = (event as { type?: string }).type ?? '';
      if (topic === 'booking' && ['booking.accepted', 'booking.no_driver', 'booking.cancelled', 'booking.completed'].includes(type)) {
        this.dispatchOutcomes.inc({ outcome: type.slice('booking.'.length) });
      }
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

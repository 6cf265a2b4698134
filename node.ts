// A node: wires configuration, adapters, the runtime and the HTTP edge, and
// owns their lifecycle. The same code runs the embedded single node and a
// cluster member; only the adapters chosen here differ.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type Router from '@koa/router';
import type { Behavior, Service } from './actors/behavior.ts';
import type { Config } from './config/index.ts';
import { openCommandLog } from './adapters/command-log.ts';
import { openStorage, type Storage } from './adapters/storage.ts';
import { BookingScheduler } from './adapters/cron/scheduler.ts';
import { ReadModels } from './adapters/postgres/read-models.ts';
import type { BookingEventView } from './actors/analytics.ts';
import { InProcessNotifier } from './adapters/memory/notifier.ts';
import { RedisNotifier } from './adapters/redis/notifier.ts';
import { RedisRemoteChannel } from './adapters/redis/remote-channel.ts';
import { randomBytes } from 'node:crypto';
import { createApp } from './http/app.ts';
import { createAuthenticator } from './http/auth.ts';
import { clusterRoutes } from './http/routes/cluster.ts';
import { authRoutes } from './http/routes/auth.ts';
import { adminRoutes } from './http/routes/admin.ts';
import { bookingRoutes } from './http/routes/bookings.ts';
import { discoveryRoutes } from './http/routes/discovery.ts';
import { docsRoutes } from './http/routes/docs.ts';
import { opsPageRoutes } from './http/routes/ops-page.ts';
import type { Api } from './http/api.ts';
import type { Edge } from './http/edge.ts';
import { Metrics } from './http/metrics.ts';
import { QuoteSigner } from './http/quote-token.ts';
import { rateLimit, userOrIp } from './http/rate-limit.ts';
import { WsGateway } from './http/ws.ts';
import { AccountStore } from './adapters/postgres/accounts.ts';
import { SettingsStore } from './adapters/postgres/settings.ts';
import { InProcessRateLimiter } from './adapters/memory/rate-limiter.ts';
import { RedisRateLimiter } from './adapters/redis/rate-limiter.ts';
import { InProcessCommandLog } from './adapters/memory/command-log.ts';
import { createLogger, type Logger } from './runtime/logger.ts';
import { ShardRegion } from './runtime/region.ts';
import { ShardHost } from './runtime/shard-host.ts';
import type { CommandLog, Notifier } from './runtime/ports.ts';

type AnyBehavior = Behavior<unknown, unknown, unknown, unknown, unknown>;

export interface NodeOptions {
  readonly config: Config;
  /** Entity kinds this node hosts. */
  readonly behaviors: readonly AnyBehavior[];
  /** Node services entities may request. */
  readonly services?: Readonly<Record<string, Service>>;
  /** Extra routers for the edge (for example a test fixture's). */
  readonly routers?: (region: ShardRegion) => readonly Router<any>[];
  /** Lets a caller wrap the command log (fault injection in tests). */
  readonly wrapLog?: (log: CommandLog) => CommandLog;
  readonly logger?: Logger;
}

export interface RunningNode {
  readonly url: string;
  readonly region: ShardRegion;
  readonly host: ShardHost;
  readonly storage: Storage;
  readonly notifier: Notifier;
  readonly readModels: ReadModels;
  readonly scheduler: BookingScheduler;
  readonly ws: WsGateway;
  /** "METHOD /path" of every route the routers serve (for checking the docs). */
  readonly routes: readonly string[];
  readonly edge: Edge;
  readonly logger: Logger;
  stop(reason?: string): Promise<void>;
}

export async function startNode(options: NodeOptions): Promise<RunningNode> {
  const { config } = options;
  const logger = options.logger ?? createLogger({ level: config.log.level, nodeId: config.node.id });
  const onError = (error: unknown, context: string) => logger.warn({ err: error }, context);

  const storage = await openStorage(config, logger);
  const redisUrl = config.storage.redisUrl;
  const remote = config.mode === 'cluster' && redisUrl
    ? new RedisRemoteChannel({ url: redisUrl, nodeId: config.node.id, prefix: config.cluster.topicPrefix, onError })
    : undefined;
  const notifier = redisUrl
    ? new RedisNotifier({ url: redisUrl, prefix: config.cluster.topicPrefix, onError })
    : new InProcessNotifier();
  const baseLog = await openCommandLog(config, logger);
  const log = options.wrapLog ? options.wrapLog(baseLog) : baseLog;
  const host = new ShardHost({
    journal: storage.journal,
    behaviors: options.behaviors,
    passivateAfterMs: config.runtime.passivateAfterMs,
    maxActiveEntities: config.runtime.maxActiveEntities,
    maxConcurrentRecoveries: config.runtime.maxConcurrentRecoveries,
    snapshotEvery: config.runtime.snapshotEvery,
    onError,
  });
  const region = new ShardRegion({
    nodeId: config.node.id,
    placement: { shards: config.cluster.shards, placementRes: config.cluster.placementRes },
    log,
    host,
    reminders: storage.reminders,
    notifier,
    remote,
    services: options.services,
    askTimeoutMs: config.runtime.askTimeoutMs,
    onError,
  });

  // Read models follow the domain events of the entities this node owns.
  const readModels = new ReadModels(storage.orm, storage.sqlGuard);
  region.onDomainEvent((topic, event, from) => {
    const applied = topic === 'booking' ? readModels.applyBookingEvent(event as BookingEventView, region.shardOf(from))
      : topic === 'driver' ? readModels.applyDriverEvent(event as never)
      : topic === 'vehicle' ? readModels.applyVehicleEvent(event as never)
      : undefined;
    applied?.catch((e) => onError(e, `${topic} read model`));
  });
  const scheduler = new BookingScheduler({
    owned: () => region.stats().owned,
    due: (shards, before) => readModels.dueScheduled(shards, before),
    activate: async (id, commandId) => { await region.tell({ kind: 'booking', id }, { type: 'activate' }, { id: commandId }); },
    now: Date.now,
    onError,
  }, { leadMs: config.dispatch.scheduleLeadMs, everySeconds: 15 });

  const secret = config.auth.secret ?? (config.auth.publicKey || config.auth.jwksUrl ? undefined : embeddedSecret(logger));
  const auth = await createAuthenticator({
    ...config.auth,
    // An embedded node with no key configured signs with a per-process secret: tokens
    // then die with the process, which is what a laptop demo wants and nothing else.
    secret,
  });
  const limiter = redisUrl
    ? new RedisRateLimiter({ url: redisUrl, prefix: config.cluster.topicPrefix, onError: (e) => onError(e, 'rate limiter') })
    : new InProcessRateLimiter();
  const edge: Edge = {
    region, host, readModels, limiter, auth,
    settings: new SettingsStore(storage.orm, storage.sqlGuard),
    accounts: new AccountStore(storage.orm, storage.sqlGuard),
    quotes: new QuoteSigner(config.auth.secret ?? secret ?? config.node.id),
    domain: config,
    devTokens: config.auth.devTokens,
  };
  const metrics = new Metrics({
    region, host, lag: baseLog instanceof InProcessCommandLog ? () => baseLog.stats().reduce((a, p) => a + p.lag, 0) : undefined,
  });
  const apis: Api[] = [authRoutes(edge), bookingRoutes(edge), discoveryRoutes(edge), adminRoutes(edge), clusterRoutes(region, host)];

  const extraRouters = options.routers?.(region) ?? [];
  let stopping = false;
  const app = createApp({
    logger,
    auth,
    metrics,
    maxBodyBytes: config.http.maxBodyBytes,
    limits: [
      // Every signed-in user (or IP) has a general budget; creating bookings has a tighter one.
      { method: undefined, path: /^\/v1\//, middleware: rateLimit(limiter, { name: 'api', limit: 600, windowMs: 60_000 }, userOrIp) },
      { method: 'POST', path: /^\/v1\/bookings$/, middleware: rateLimit(limiter, { name: 'book', limit: 30, windowMs: 60_000 }, userOrIp) },
    ],
    health: {
      live: () => true,
      ready: async () => {
        if (stopping) return { ok: false, reason: 'node is shutting down' };
        if (!region.ready) return { ok: false, reason: 'node does not own its shards yet' };
        try {
          await storage.journal.ping();
          return { ok: true };
        } catch (error) {
          return { ok: false, reason: `storage does not answer: ${(error as Error).message}` };
        }
      },
    },
    routers: [
      metrics.routes(),
      docsRoutes(() => apis),
      opsPageRoutes(),
      ...apis.map((a) => a.router),
      ...extraRouters,
    ],
  });
  const routes = [...apis.map((a) => a.router), ...extraRouters]
    .flatMap((r) => r.stack.flatMap((layer) => layer.methods.filter((m) => m !== 'HEAD').map((m) => `${m} ${layer.path}`)));
  const server: Server = createServer(app.callback());
  const ws = new WsGateway({ edge, auth, notifier, logger, metrics });
  ws.attach(server);
  await region.start();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.http.port, config.http.host, () => resolve());
  });
  scheduler.start();
  const address = server.address() as AddressInfo;
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  logger.info({ url, mode: config.mode, shards: config.cluster.shards }, 'node started');

  return {
    url, region, host, storage, logger, notifier, readModels, scheduler, ws, edge, routes,
    async stop(reason = 'shutdown') {
      if (stopping) return;
      stopping = true;
      logger.info({ reason }, 'node stopping');
      ws.close(reason);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await scheduler.stop();
      await region.stop();
      await closed;
      await remote?.close();
      if (notifier instanceof RedisNotifier) await notifier.close();
      if (limiter instanceof RedisRateLimiter) limiter.close();
      await storage.close();
      logger.info('node stopped');
    },
  };
}

function embeddedSecret(logger: Logger): string {
  logger.warn('no JWT_SECRET, JWT_PUBLIC_KEY or JWKS_URL: signing tokens with a random per-process secret');
  return randomBytes(32).toString('base64url');
}

// A node: chooses the adapters for the configuration and wires them to the runtime and
// the HTTP edge, and owns their lifecycle. The same code runs the embedded single node
// and a cluster member; only the adapters chosen here differ. Serving (the port bound
// before storage opens, /health and /ready, the route list) is http/server.ts's.

import type { AddressInfo } from 'node:net';
import type Router from '@koa/router';
import type { AnyBehavior, Service } from './actors/behavior.ts';
import type { Config } from './config/index.ts';
import { openCommandLog } from './adapters/command-log.ts';
import { PostgresShardOffsets } from './adapters/postgres/shard-offsets.ts';
import { openStorage, type Storage } from './adapters/storage.ts';
import { lockDataDir } from './adapters/data-dir-lock.ts';
import { BookingScheduler } from './adapters/cron/scheduler.ts';
import { ReadModels } from './adapters/postgres/read-models.ts';
import { Projector, type ProjectorOptions } from './adapters/postgres/projections.ts';
import { InProcessNotifier } from './adapters/memory/notifier.ts';
import { InProcessOccupiedCells } from './adapters/memory/occupied-cells.ts';
import { PostgresOccupiedCells } from './adapters/postgres/occupied-cells.ts';
import { occupiedCellOf } from './actors/cell.ts';
import { prepareOrigins, withOccupiedCells } from './actors/nearest.ts';
import { randomBytes } from 'node:crypto';
import { createApp } from './http/app.ts';
import { createAuthenticator } from './http/auth.ts';
import { clusterRoutes } from './http/routes/cluster.ts';
import { authRoutes } from './http/routes/auth.ts';
import { adminRoutes } from './http/routes/admin.ts';
import { deadLetterRoutes } from './http/routes/dead-letters.ts';
import { auditRoutes } from './http/routes/audit.ts';
import { bookingRoutes } from './http/routes/bookings.ts';
import { discoveryRoutes } from './http/routes/discovery.ts';
import { docsRoutes } from './http/routes/docs.ts';
import { opsPageRoutes } from './http/routes/ops-page.ts';
import { healthRoutes } from './http/routes/health.ts';
import { metricsRoutes } from './http/routes/metrics-scrape.ts';
import type { Api } from './http/api.ts';
import type { Edge } from './http/edge.ts';
import { HandoffTimings, Metrics, ServiceTimings } from './http/metrics.ts';
import { QuoteSigner } from './http/quote-token.ts';
import { rateLimit, successLimit, userOrIp } from './http/rate-limit.ts';
import { WsGateway } from './http/ws.ts';
import { clientAddressOf } from './http/client-address.ts';
import type { RateLimiter } from './http/ports.ts';
import { healthChecks, openNodeServer, routeList, serveMetrics } from './http/server.ts';
import { AccountStore } from './adapters/postgres/accounts.ts';
import { keyringFor } from './adapters/personal-data-keys.ts';
import { SettingsStore } from './adapters/postgres/settings.ts';
import { PostgresAuditLog } from './adapters/postgres/audit-log.ts';
import { InProcessRateLimiter } from './adapters/memory/rate-limiter.ts';
import { createLogger, type Logger } from './runtime/logger.ts';
import { ShardRegion } from './runtime/region.ts';
import { ShardHost } from './runtime/shard-host.ts';
import { startup, StartupStoppedError } from './runtime/startup.ts';
import type { CommandLog, Notifier, OccupiedCells } from './runtime/ports.ts';
import type { Tracing } from './adapters/otel/tracing.ts';


/** How long after a journal row a node's projections run (see the Projector below). */
export const PROJECTION_WAKE_MS = 200;

export interface NodeOptions {
  readonly config: Config;
  /** Entity kinds this node hosts. */
  readonly behaviors: readonly AnyBehavior[];
  /** Node services entities may request. */
  readonly services?: Readonly<Record<string, Service>>;
  /** Extra routers for the edge (for example a test fixture's). */
  readonly routers?: (region: ShardRegion) => readonly Router<any>[];
  /** Projection settings (tests: a short poll, a fault after commit). */
  readonly projector?: Partial<Pick<ProjectorOptions, 'pollMs' | 'batchSize' | 'rebuildBatchSize' | 'rebuildShardsPerTransaction' | 'afterCommit'>>;
  /** Lets a caller wrap the command log (fault injection in tests). */
  readonly wrapLog?: (log: CommandLog) => CommandLog;
  readonly logger?: Logger;
  /**
   * Aborted to stop the node before it has started (a signal during start-up): startNode then
   * closes what it opened and fails with StartupStoppedError. After it resolved, stop() it.
   */
  readonly signal?: AbortSignal;
}

export interface RunningNode {
  readonly url: string;
  /** Where Prometheus scrapes: METRICS_PORT's listener, or the API port (admins only). */
  readonly metricsUrl: string;
  readonly region: ShardRegion;
  readonly host: ShardHost;
  readonly storage: Storage;
  readonly notifier: Notifier;
  readonly readModels: ReadModels;
  readonly projector: Projector;
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
  // Before anything is served, so the first request is traced; flushed last on stop.
  const tracing = await openTracing(config, logger);
  // Dependencies not reachable yet are waited for (one line each), within STARTUP_TIMEOUT_MS.
  const boot = startup({ timeoutMs: config.runtime.startupTimeoutMs, logger, signal: options.signal });
  const stoppedEarly = (error: unknown) => {
    if (error instanceof StartupStoppedError) logger.info({ reason: error.reason }, 'node stopped during start-up');
  };
  let started = false;
  // Redis and Kafka clients retry by themselves and say so on every attempt: while start-up
  // waits, its one line per dependency speaks for them.
  const onClientError = (error: unknown, context: string) => { if (started) onError(error, context); };

  // An embedded node owns DATA_DIR alone, and says so before it opens anything there.
  const lock = config.mode === 'embedded' ? lockDataDir(config.storage.dataDir) : undefined;
  // The port is bound before storage opens: a node that cannot serve fails before
  // it has touched the database, and probes see 503 `starting` meanwhile.
  const server = await openNodeServer({
    port: config.http.port, host: config.http.host, tls: config.http.tls, waitingFor: () => boot.waitingFor(),
  })
    .catch(async (error: unknown) => {
      lock?.release();
      await tracing?.shutdown();
      throw error;
    });
  let storage: Storage;
  try {
    // The embedded database is opened to the end even if a signal comes meanwhile: cut short, it could be left damaged.
    storage = await boot.step(() => openStorage(config, logger), { finish: config.storage.databaseUrl === undefined });
  } catch (error) {
    server.server.close();
    lock?.release();
    await tracing?.shutdown();
    stoppedEarly(error);
    throw error;
  }
  const redisUrl = config.storage.redisUrl;
  const redis = redisUrl ? await redisAdapters() : undefined;
  const remote = config.mode === 'cluster' && redis && redisUrl
    ? new redis.RedisRemoteChannel({
      url: redisUrl, nodeId: config.node.id, prefix: config.cluster.topicPrefix, onError, oneWirePerMessage: config.cluster.wireForms === 'previous',
    })
    : undefined;
  const notifier: Notifier = redis && redisUrl
    ? new redis.RedisNotifier({ url: redisUrl, prefix: config.cluster.topicPrefix, onError: onClientError })
    : new InProcessNotifier();
  // Cells that ever held a driver: searches skip the others without waking them. One process
  // owns every cell in embedded mode (memory is complete); a cluster shares them in PostgreSQL.
  const occupiedCells: OccupiedCells = config.mode === 'cluster'
    ? new PostgresOccupiedCells(storage.orm, storage.sqlGuard, { onError })
    : new InProcessOccupiedCells();
  const occupied = (cells: readonly string[]) => occupiedCells.filter(cells);
  const handoffTimings = new HandoffTimings();
  const baseLog = await openCommandLog(config, logger, {
    quiet: () => !started, offsets: (topic) => new PostgresShardOffsets(storage.orm, topic, storage.fences),
    onPhase: (phase, seconds) => handoffTimings.observe(phase, seconds),
  });
  const log = options.wrapLog ? options.wrapLog(baseLog) : baseLog;
  // Timed for /metrics; the region calls them, so they are wrapped before it exists.
  const serviceTimings = new ServiceTimings();
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
    services: options.services && serviceTimings.wrap(withOccupiedCells(options.services, occupied)),
    askTimeoutMs: config.runtime.askTimeoutMs,
    deadLetters: storage.deadLetters,
    fences: storage.fences,
    maxAttempts: config.runtime.commandMaxAttempts,
    onError,
  });

  // Read models are projections of the journal, for the shards this node owns
  // (adapters/postgres/projections.ts). A domain event only says "a row was journaled
  // on this shard": it wakes the projection, which reads the row from the journal.
  const readModels = new ReadModels(storage.orm, storage.sqlGuard);
  const projector = new Projector({
    orm: storage.orm, guard: storage.sqlGuard, owned: () => region.stats().owned, totalShards: config.cluster.shards, fence: storage.fences,
    // Each batch is a transaction of six to nine statements. Four projections woken every
    // 50 ms held the embedded node's one connection about half the time at 100 bookings/s,
    // ahead of the commands' writes, and were a third of a cluster node's statements;
    // every 200 ms, a quarter as many batches carry the same rows.
    wakeDelayMs: PROJECTION_WAKE_MS,
    // The embedded database serves one connection at a time: shards at once would only queue.
    ...(config.storage.databaseUrl === undefined ? { shardsAtOnce: 1, rebuildShardsPerTransaction: 1 } : {}),
    ...options.projector, onError,
  });
  region.onDomainEvent((_topic, _event, from) => projector.wake(from.kind, region.shardOf(from)));
  region.onDomainEvent((topic, event) => {
    const cell = occupiedCellOf(topic, event);
    if (cell) { occupiedCells.mark(cell); prepareOrigins(cell); }
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
  const limiter: RateLimiter = redis && redisUrl
    ? new redis.RedisRateLimiter({ url: redisUrl, prefix: config.cluster.topicPrefix, onError: (e) => onError(e, 'rate limiter') })
    : new InProcessRateLimiter();
  const { keyring: personalData, file: keysFile } = keyringFor(config);
  // Documented in .env.example: development only; a cluster configures DATA_KEYS on every node.
  if (keysFile) {
    logger.warn({ file: keysFile }, 'no DATA_KEYS: sealing personal data with development keys kept in DATA_DIR (development only)');
  }
  const edge: Edge = {
    region, host, readModels, projector, limiter, auth, personalData,
    settings: new SettingsStore(storage.orm, storage.sqlGuard),
    accounts: new AccountStore(storage.orm, storage.sqlGuard, personalData),
    quotes: new QuoteSigner(config.quotes.secret),
    domain: config,
    devTokens: config.auth.devTokens,
    rateLimits: config.rateLimits,
    deadLetters: storage.operatorDeadLetters,
    deadLetterRetryMaxAgeMs: config.runtime.deadLetterRetryMaxAgeMs,
    audit: new PostgresAuditLog(storage.orm, storage.sqlGuard),
  };
  if (config.quotes.ephemeral) logger.warn('no QUOTE_SECRET: signing quotes with a random per-process key (development only)');
  const metrics = new Metrics({
    region, host, projector, services: serviceTimings, handoff: handoffTimings,
    lag: baseLog.stats?.bind(baseLog),
    breakers: () => ({ postgres: storage.sqlGuard.state() }),
  });
  const apis: Api[] = [
    authRoutes(edge), bookingRoutes(edge), discoveryRoutes(edge, occupied), adminRoutes(edge), deadLetterRoutes(edge), auditRoutes(edge),
    clusterRoutes(region, host, projector),
    // /metrics on the API port only when it has no port of its own.
    ...(config.metrics.port === undefined ? [metricsRoutes(metrics)] : []),
  ];

  const extraRouters = options.routers?.(region) ?? [];
  let stopping = false;
  // One reading of TRUST_PROXY for HTTP requests and WebSocket upgrades alike.
  const addressOf = clientAddressOf(config.http.trustProxy);
  const health = healthChecks({
    stopping: () => stopping, region, logger,
    storageProblem: () => storage.problem?.(),
    logProblem: () => baseLog.problem?.(),
    ping: () => storage.journal.ping(),
  });
  const app = createApp({
    logger,
    auth,
    metrics,
    maxBodyBytes: config.http.maxBodyBytes,
    limits: [
      // Every signed-in user (or IP) has a general budget; creating bookings has a tighter one.
      {
        method: undefined, path: /^\/v1\//,
        middleware: rateLimit(limiter, { name: 'api', limit: config.rateLimits.apiPerMin, windowMs: 60_000 }, userOrIp),
      },
      {
        method: 'POST', path: /^\/v1\/bookings$/,
        // Bookings created, as its name says: a refused request (400, 409, 429) counts for nothing.
        middleware: successLimit(
          limiter, { name: 'book', limit: config.rateLimits.bookingsPerMin, windowMs: 60_000 }, userOrIp, (ctx) => ctx.state.created === true,
        ),
      },
    ],
    health,
    addressOf,
    routers: [
      // The app serves /health and /ready from `health` itself; the document describes them too.
      docsRoutes(() => [healthRoutes(health), ...apis]),
      opsPageRoutes(),
      ...apis.map((a) => a.router),
      ...extraRouters,
    ],
  });
  const routes = routeList([...apis.map((a) => a.router), ...extraRouters]);
  const ws = new WsGateway({ edge, auth, notifier, logger, metrics, limits: config.ws, queryToken: config.ws.queryToken, addressOf });
  ws.attach(server.server);
  try {
    await boot.step(() => region.start());
  } catch (error) {
    // Nothing was served yet: release what was opened, so the caller's exit is clean.
    await region.stop().catch(() => undefined);
    await Promise.all([remote?.close(), notifier.close?.(), occupiedCells.close(), storage.close()]).catch(() => undefined);
    limiter.close?.();
    server.server.close();
    lock?.release();
    await tracing?.shutdown();
    stoppedEarly(error);
    throw error;
  }
  started = true;
  server.serve(app.callback());
  // Apart from HOST: a node serving its API on every interface keeps /metrics (no token) on METRICS_HOST.
  const metricsServer = config.metrics.port === undefined ? undefined : await serveMetrics(metrics, config.metrics.port, config.metrics.host);
  projector.start();
  scheduler.start();
  const url = server.url();
  const metricsUrl = metricsServer ? `http://${hostPort(metricsServer.address() as AddressInfo)}/metrics` : `${url}/metrics`;
  logger.info({ url, metricsUrl, mode: config.mode, shards: config.cluster.shards }, 'node started');
  storage.startBackfill();

  return {
    url, metricsUrl, region, host, storage, logger, notifier, readModels, projector, scheduler, ws, edge, routes,
    async stop(reason = 'shutdown') {
      if (stopping) return;
      stopping = true;
      logger.info({ reason }, 'node stopping');
      ws.close(reason);
      // Requests in flight finish first, while this node still serves its shards: the commands
      // they wait for are handled here (or answered from another node) as on any other day, not
      // refused halfway. New connections are refused meanwhile; /ready says 503 so balancers
      // send nothing new. Bounded: a request still waiting then is answered 503 by the stop.
      const closed = server.close();
      let drained: NodeJS.Timeout | undefined;
      const drainMs = Math.min(config.runtime.askTimeoutMs + 1_000, config.runtime.shutdownTimeoutMs / 2);
      await Promise.race([closed, new Promise((r) => { drained = setTimeout(r, drainMs); })]);
      clearTimeout(drained);
      await scheduler.stop();
      // Hand-off order (runtime/region.ts stop()): finish and commit the batches in flight,
      // stop timers, asks and activations of every shard, snapshot, and only then leave the
      // consumer group, so no other node owns a shard this node still serves.
      await region.stop();
      await projector.stop();
      await closed;
      await new Promise((resolve) => (metricsServer ? metricsServer.close(resolve) : resolve(undefined)));
      await remote?.close();
      await notifier.close?.();
      limiter.close?.();
      await occupiedCells.close();
      await storage.close();
      lock?.release();
      // The spans of the stop itself go too; an unreachable receiver is given up after its timeout.
      await tracing?.shutdown().catch((e: unknown) => onError(e, 'flushing traces'));
      logger.info('node stopped');
    },
  };
}

/**
 * Tracing when OTEL_* configure an exporter; a second node in one process (tests) runs untraced.
 * OpenTelemetry's SDK and exporter are loaded only then (about 5 MB of heap a node without them keeps).
 */
async function openTracing(config: Config, logger: Logger): Promise<Tracing | undefined> {
  if (!config.tracing) return undefined;
  try {
    const { startTracing } = await import('./adapters/otel/tracing.ts');
    const tracing = startTracing(config.tracing, config.node.id);
    logger.info({ url: config.tracing.url, ratio: config.tracing.ratio }, 'traces exported over OTLP');
    return tracing;
  } catch (error) {
    logger.warn({ err: error }, 'tracing not started');
    return undefined;
  }
}

/** host:port of a bound listener, an IPv6 address bracketed. */
function hostPort(address: AddressInfo): string {
  return `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
}

function embeddedSecret(logger: Logger): string {
  logger.warn('no JWT_SECRET, JWT_PUBLIC_KEY or JWKS_URL: signing tokens with a random per-process secret');
  return randomBytes(32).toString('base64url');
}

/** The Redis clients (ioredis), loaded only by a node with REDIS_URL: an embedded node never holds them. */
async function redisAdapters() {
  const [{ RedisNotifier }, { RedisRemoteChannel }, { RedisRateLimiter }] = await Promise.all([
    import('./adapters/redis/notifier.ts'), import('./adapters/redis/remote-channel.ts'), import('./adapters/redis/rate-limiter.ts'),
  ]);
  return { RedisNotifier, RedisRemoteChannel, RedisRateLimiter };
}

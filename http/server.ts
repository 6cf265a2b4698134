// The node's HTTP server: binds the port before anything else opens (answering 503
// `starting` meanwhile), then serves the app; /health and /ready; the list of routes;
// /metrics on its own port. It knows no adapter: node.ts chooses those and hands this
// module only what it reads (docs/DESIGN.md, "Layers").

import { randomUUID } from 'node:crypto';
import { createServer, type RequestListener, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type Router from '@koa/router';
import Koa from 'koa';
import type { Logger } from '../runtime/logger.ts';
import { withTimeout, type ShardRegion } from '../runtime/region.ts';
import type { HealthProbe } from './app.ts';
import type { Metrics } from './metrics.ts';
import { answerClientError } from './client-error.ts';
import { unrouted } from './unrouted.ts';

export interface NodeServerOptions {
  readonly port: number;
  readonly host: string;
  /** With a certificate the node speaks HTTPS and WSS itself (the embedded mode has no proxy in front). */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /** What start-up still waits for, for /ready while starting. */
  readonly waitingFor: () => string | undefined;
}

export interface NodeServer {
  readonly server: Server;
  /** From now on requests go to `listener` (until then: 503 `starting`, upgrades refused). */
  serve(listener: RequestListener): void;
  /** Where the node answers, once listening. */
  url(): string;
  /**
   * Stops taking connections; resolves when the open ones are done. Idle keep-alive connections
   * are closed at once, busy ones after their current answer.
   */
  close(): Promise<void>;
}

/** Creates the server and listens; rejects (with nothing left open) when the port cannot be bound. */
export async function openNodeServer(options: NodeServerOptions): Promise<NodeServer> {
  const whileStarting = starting(options.waitingFor);
  let current: RequestListener = whileStarting;
  const handler: RequestListener = (req, res) => current(req, res);
  const tls = options.tls;
  const server: Server = tls ? createTlsServer({ cert: tls.cert, key: tls.key }, handler) : createServer(handler);
  server.on('upgrade', (_req, socket) => { if (current === whileStarting) socket.destroy(); });
  server.on('clientError', answerClientError);
  try {
    await listen(server, options.port, options.host);
  } catch (error) {
    server.close();
    throw error;
  }
  return {
    server,
    serve(listener) { current = listener; },
    url() {
      const address = server.address() as AddressInfo;
      return `${tls ? 'https' : 'http'}://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
    },
    close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // A kept-alive connection busy now carries one more answer, then closes: its client's next
      // request opens a connection elsewhere (a balancer's next node) instead of finding this one gone.
      const listener = current;
      current = (req, res) => { res.setHeader('connection', 'close'); listener(req, res); };
      server.closeIdleConnections();
      return closed;
    },
  };
}

export interface ReadinessSources {
  /** True once the node is shutting down. */
  readonly stopping: () => boolean;
  readonly region: Pick<ShardRegion, 'unready' | 'stuckShards'>;
  /** A storage problem worth reporting (undefined: none). */
  readonly storageProblem?: () => string | undefined;
  /** A command log problem worth reporting (undefined: none): a shard stopped at a gap in its records. */
  readonly logProblem?: () => string | undefined;
  /** Answers when storage is reachable. */
  readonly ping: () => Promise<void>;
  readonly logger: Logger;
}

/** /health: the process is alive. /ready: the node serves, its shards are placed and storage answers. */
export function healthChecks(sources: ReadinessSources): HealthProbe {
  const { region, logger } = sources;
  return {
    live: () => true,
    ready: async () => {
      if (sources.stopping()) return { ok: false, reason: 'node is shutting down' };
      const unready = region.unready();
      if (unready) return { ok: false, reason: unready };
      const problem = sources.storageProblem?.() ?? sources.logProblem?.();
      if (problem) return { ok: false, reason: problem };
      try {
        // Bounded: behind a stuck statement the ping would wait as long as the statement.
        await withTimeout(sources.ping(), 2_000, 'storage ping');
        // Serving, but a shard waiting on a failing command is worth seeing here too.
        const stuck = region.stuckShards();
        return stuck.length > 0
          ? { ok: true, details: { stuckShards: stuck.map((s) => ({ shard: s.shard, seconds: Math.round(s.seconds), failure: s.failure })) } }
          : { ok: true };
      } catch (error) {
        // The database's own message can name hosts and users: logged, not answered.
        logger.warn({ err: error }, 'readiness: storage does not answer');
        return { ok: false, reason: 'storage does not answer' };
      }
    },
  };
}

/** "METHOD /path" of every route the routers serve (for checking the docs). */
export function routeList(routers: readonly Router<any>[]): string[] {
  return routers.flatMap((r) => r.stack.flatMap((layer) => layer.methods.filter((m) => m !== 'HEAD').map((m) => `${m} ${layer.path}`)));
}

/** /metrics alone on its own port, for a scraper on the internal network: no token needed. */
export async function serveMetrics(metrics: Metrics, port: number, host: string): Promise<Server> {
  const app = new Koa();
  app.use(async (ctx, next) => { ctx.set('X-Request-Id', randomUUID()); await next(); });
  app.use(unrouted());
  app.use(metrics.routes().routes());
  const server = createServer(app.callback());
  await listen(server, port, host);
  return server;
}

/**
 * Until the node serves: /health says the process is alive (an orchestrator must not kill a
 * node that waits for Kafka), /ready says what it waits for, everything else is 503 `starting`.
 */
function starting(waitingFor: () => string | undefined): RequestListener {
  return (req, res) => {
    const path = (req.url ?? '').split('?')[0];
    const requestId = randomUUID();
    if (path === '/health') {
      res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': requestId });
      res.end(JSON.stringify({ status: 'ok' }));
      return;
    }
    res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1', 'x-request-id': requestId });
    const [code, message] = path === '/ready' ? ['not_ready', waitingFor() ?? 'the node is starting'] : ['starting', 'the node is starting'];
    res.end(JSON.stringify({ error: { code, message } }));
  };
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); resolve(); });
  });
}

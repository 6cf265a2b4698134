// The Koa application: small composable middleware, as Koa intends.
// This file only assembles; each concern lives in its own module.

import Koa from 'koa';
import Router from '@koa/router';
import { bodyParser } from '@koa/bodyparser';
import type { Authenticator } from './auth.ts';
import { authenticate, type AuthState } from './authenticate.ts';
import type { Metrics } from './metrics.ts';
import type { Middleware } from 'koa';
import type { Logger } from 'pino';
import { requestContext } from './request-context.ts';
import { HttpError } from './errors.ts';
import { clientAddress, clientAddressOf, type ClientAddress } from './client-address.ts';
import type { IncomingMessage } from 'node:http';
import { securityHeaders } from './security-headers.ts';
import { unrouted } from './unrouted.ts';
import { healthRoutes } from './routes/health.ts';
import { jsonBodies } from './json-bodies.ts';
import { tracing } from './tracing.ts';

export interface HealthProbe {
  /** Process is up and serving. */
  live(): boolean;
  /** Node owns its shards and storage answers; the reason when not. `details` says what is degraded. */
  ready(): Promise<{ ok: true; details?: Record<string, unknown> } | { ok: false; reason: string }>;
}

export interface AppOptions {
  readonly logger: Logger;
  readonly health: HealthProbe;
  readonly auth: Authenticator;
  readonly maxBodyBytes: number;
  readonly metrics?: Metrics;
  /** Rate limits applied after authentication, by method and path. */
  readonly limits?: readonly { method?: string; path: RegExp; middleware: Middleware<AuthState> }[];
  readonly routers?: readonly Router<any>[];
  /** The client's address, from the proxies TRUST_PROXY trusts; the peer's by default. */
  readonly addressOf?: (req: IncomingMessage) => ClientAddress;
}

export function createApp(options: AppOptions): Koa {
  const app = new Koa();
  // Proxy headers are read by clientAddress, and only from the proxies TRUST_PROXY names.
  app.proxy = false;
  app.use(clientAddress(options.addressOf ?? clientAddressOf({ kind: 'off' })));
  app.use(securityHeaders());
  if (options.metrics) app.use(options.metrics.middleware());
  // Outside the error shaping below, so the span sees the status the client gets.
  app.use(tracing());
  app.use(requestContext(options.logger));
  // Outside every router's allowedMethods, so it writes the body once they have set 404, 405 or 501.
  app.use(unrouted());
  app.use(jsonBodies());
  app.use(bodyParser({
    enableTypes: ['json'],
    jsonLimit: options.maxBodyBytes,
    encoding: 'utf-8',
    onError: (error) => {
      const status = (error as { status?: number }).status;
      if (status === 413) throw new HttpError(413, 'payload_too_large', `the body is larger than ${options.maxBodyBytes} bytes`);
      throw new HttpError(400, 'malformed_json', `the body is not valid JSON: ${error.message}`);
    },
  }));

  const { router: health } = healthRoutes(options.health);
  app.use(health.routes()).use(health.allowedMethods());
  app.use(authenticate(options.auth));
  for (const limit of options.limits ?? []) {
    app.use((ctx, next) => (limit.path.test(ctx.path) && (!limit.method || ctx.method === limit.method)
      ? limit.middleware(ctx as never, next)
      : next()));
  }
  for (const router of options.routers ?? []) app.use(router.routes()).use(router.allowedMethods());
  return app;
}

// The Koa application: small composable middleware, as Koa intends.
// This file only assembles; each concern lives in its own module.

import Koa from 'koa';
import Router from '@koa/router';
import type { Logger } from 'pino';
import { requestContext } from './request-context.ts';
import { errorBody } from './errors.ts';

export interface HealthProbe {
  /** Process is up and serving. */
  live(): boolean;
  /** Node owns its shards and storage answers; the reason when not. */
  ready(): Promise<{ ok: true } | { ok: false; reason: string }>;
}

export interface AppOptions {
  readonly logger: Logger;
  readonly health: HealthProbe;
  readonly routers?: readonly Router[];
}

export function createApp(options: AppOptions): Koa {
  const app = new Koa();
  app.proxy = true;
  app.use(requestContext(options.logger));

  const ops = new Router();
  ops.get('/health', (ctx) => {
    ctx.body = { status: options.health.live() ? 'ok' : 'down' };
  });
  ops.get('/ready', async (ctx) => {
    const state = await options.health.ready();
    if (state.ok) {
      ctx.body = { status: 'ready' };
    } else {
      ctx.status = 503;
      ctx.body = errorBody('not_ready', state.reason);
    }
  });
  app.use(ops.routes()).use(ops.allowedMethods());
  for (const router of options.routers ?? []) app.use(router.routes()).use(router.allowedMethods());

  app.use((ctx) => {
    ctx.status = 404;
    ctx.body = errorBody('not_found', `no route for ${ctx.method} ${ctx.path}`);
  });
  return app;
}

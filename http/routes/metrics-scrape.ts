// GET /metrics on the API port (admin token), declared as an operation so the API
// document describes it. With METRICS_PORT set the node serves it only on that
// separate listener, without a token, and this operation is not served at all.

import { z } from 'zod';
import { Api } from '../api.ts';
import type { Metrics } from '../metrics.ts';

export function metricsRoutes(metrics: Metrics): Api {
  const api = new Api();
  api.add({
    method: 'get', path: '/metrics', tag: 'operations', roles: ['admin'],
    summary: 'Prometheus metrics in the text exposition format (on METRICS_PORT instead, without a token, when that is set)',
    response: z.string(), produces: 'text/plain',
    handler: async (ctx) => {
      ctx.type = metrics.registry.contentType;
      return metrics.registry.metrics();
    },
  });
  return api;
}

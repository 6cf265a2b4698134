// GET /health and GET /ready, declared as operations so the API document describes what
// orchestrators probe. Served before authentication and outside the /v1/ rate limits.
// (While the node starts, http/server.ts answers both itself, in the same shapes.)

import { Api } from '../api.ts';
import type { HealthProbe } from '../app.ts';
import { HttpError } from '../errors.ts';
import { Health, Ready } from '../schemas.ts';

export function healthRoutes(health: HealthProbe): Api {
  const api = new Api();
  api.add({
    method: 'get', path: '/health', tag: 'operations', public: true, response: Health,
    summary: 'Liveness: the process is up (it answers while the node starts too)',
    handler: async () => ({ status: health.live() ? 'ok' : 'down' }),
  });
  api.add({
    method: 'get', path: '/ready', tag: 'operations', public: true, response: Ready, errors: [503],
    summary: 'Readiness: the node serves, its shards are placed and storage answers; else 503 not_ready with a generic reason',
    handler: async () => {
      const state = await health.ready();
      if (!state.ok) throw new HttpError(503, 'not_ready', state.reason);
      return { status: 'ready', ...state.details };
    },
  });
  return api;
}

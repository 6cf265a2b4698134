// POST /v1/auth/token: tokens for any subject and role, in development only
// (AUTH_DEV_TOKENS=true and this node holds the HS256 secret).

import Router from '@koa/router';
import { z } from 'zod';
import type { Authenticator } from '../auth.ts';
import { HttpError } from '../errors.ts';

const TokenRequest = z.object({
  sub: z.string().min(1).max(128),
  role: z.enum(['rider', 'driver', 'admin']),
}).strict();

export function devTokenRoutes(auth: Authenticator, enabled: boolean): Router {
  const router = new Router();
  router.post('/v1/auth/token', async (ctx) => {
    if (!enabled || !auth.canIssue) throw new HttpError(404, 'not_found', 'development tokens are disabled on this node');
    const parsed = TokenRequest.safeParse((ctx.request as { body?: unknown }).body);
    if (!parsed.success) throw new HttpError(400, 'invalid_request', 'body must be { sub, role }', parsed.error.issues);
    ctx.body = await auth.issue(parsed.data);
  });
  return router;
}

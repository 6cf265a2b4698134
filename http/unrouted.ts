// What no route answered gets the contract's error shape too: a path nobody serves is
// 404 `not_found`, a method the path does not take is 405 `method_not_allowed` (with
// `Allow`, as the router sets it), a method the node does not know is 501
// `not_implemented`. The routers' allowedMethods set the status after the fact, so the
// body is written here, outside them, once they have.

import type { Middleware } from 'koa';
import { errorBody, type ErrorBody } from './errors.ts';

export function unrouted(): Middleware {
  return async (ctx, next) => {
    await next();
    if (ctx.body !== undefined && ctx.body !== null) return;
    const status = ctx.status;
    const body = shape(status, ctx.method, ctx.path, ctx.response.get('Allow'));
    if (!body) return;
    ctx.body = body;
    // A body set without an explicit status makes Koa answer 200.
    ctx.status = status;
  };
}

function shape(status: number, method: string, path: string, allow: string): ErrorBody | undefined {
  switch (status) {
    case 404: return errorBody('not_found', `no route for ${method} ${path}`);
    case 405: return errorBody('method_not_allowed', `${path} takes ${allow || 'no method'}, not ${method}`);
    case 501: return errorBody('not_implemented', `the node does not implement ${method}`);
    default: return undefined;
  }
}

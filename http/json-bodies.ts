// Request bodies are JSON. The body parser reads only `application/json`, so a JSON body
// sent as text/plain, a form, XML or with no Content-Type would reach the handler as no
// body at all (a PATCH answered 200 having changed nothing): it is refused here instead,
// 415 `unsupported_media_type`, before anything reads it.

import type { Middleware } from 'koa';
import { HttpError } from './errors.ts';

export function jsonBodies(): Middleware {
  return async (ctx, next) => {
    if (hasBody(ctx.get('content-length'), ctx.get('transfer-encoding')) && !ctx.is('application/json')) {
      const sent = ctx.get('content-type') || 'no Content-Type';
      throw new HttpError(415, 'unsupported_media_type', `a request body must be application/json, not ${sent}`);
    }
    await next();
  };
}

/** Whether the request carries a body: a chunked one, or a length above zero. */
function hasBody(length: string, transferEncoding: string): boolean {
  return transferEncoding !== '' || (length !== '' && Number(length) > 0);
}

// One server span per HTTP request, named `METHOD route` (the route's template, not the
// path: ids would make every name unique). It is active while the request is handled, so
// the commands it appends continue its trace (runtime/tracing.ts). Each request starts a new
// trace: a caller's traceparent header is only a link (a client must not choose our trace
// ids nor force spans to be recorded). Probes are not traced: they come every few seconds
// and say nothing.

import type { Middleware } from 'koa';
import { endSpan, SpanKind, startRootSpan, withSpan } from '../runtime/tracing.ts';

const UNTRACED = new Set(['/health', '/ready', '/metrics']);

export function tracing(): Middleware {
  return async (ctx, next) => {
    if (UNTRACED.has(ctx.path)) return next();
    const span = startRootSpan(`${ctx.method} ${ctx.path}`, SpanKind.SERVER, { 'http.request.method': ctx.method, 'url.path': ctx.path },
      ctx.get('traceparent') || undefined);
    if (!span) return next();
    try {
      await withSpan(span, next);
    } finally {
      // The router names the route it matched; unmatched paths keep their method only.
      const route = (ctx as { _matchedRoute?: unknown })._matchedRoute;
      span.updateName(typeof route === 'string' ? `${ctx.method} ${route}` : ctx.method);
      if (typeof route === 'string') span.setAttribute('http.route', route);
      span.setAttribute('http.response.status_code', ctx.status);
      endSpan(span, ctx.status >= 500 ? new Error(`status ${ctx.status}`) : undefined);
    }
  };
}

// Security headers on every answer, in one place. Pages that run scripts (/docs,
// /redoc, /ops) set a Content-Security-Policy of their own; every other answer is
// data and gets a policy that allows nothing. No answer may be framed (clickjacking
// on /ops), none is content-sniffed, none leaks its URL as a referrer, and HSTS is
// sent when the client came over TLS (directly or through a trusted proxy).

import type { Middleware } from 'koa';

const NOTHING = "default-src 'none'; frame-ancestors 'none'";
const HSTS = 'max-age=31536000; includeSubDomains';

export function securityHeaders(): Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } finally {
      ctx.set('X-Content-Type-Options', 'nosniff');
      ctx.set('X-Frame-Options', 'DENY');
      if (!ctx.response.get('Referrer-Policy')) ctx.set('Referrer-Policy', 'no-referrer');
      const csp = ctx.response.get('Content-Security-Policy');
      if (!csp) ctx.set('Content-Security-Policy', NOTHING);
      else if (!/frame-ancestors/.test(csp)) ctx.set('Content-Security-Policy', `${csp}; frame-ancestors 'none'`);
      if (ctx.state.secure) ctx.set('Strict-Transport-Security', HSTS);
    }
  };
}

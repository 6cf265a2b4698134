// The operations page: static files from http/ops, no CDN, no inline script or style
// (the policy below forbids both). The page may be opened with #token= in its address
// (the demo prints such a link; a fragment is never sent, so no log sees it): it moves the
// token out of the URL at once, and `Referrer-Policy: no-referrer` (set on every answer by
// http/security-headers.ts) keeps the address out of the requests it makes first.

import Router from '@koa/router';
import { readFileSync } from 'node:fs';

const FILES: Record<string, [string, string]> = {
  '/ops': ['index.html', 'text/html; charset=utf-8'],
  '/ops/ops.js': ['ops.js', 'application/javascript; charset=utf-8'],
  '/ops/ops.css': ['ops.css', 'text/css; charset=utf-8'],
};

export const OPS_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  // Same-origin WebSocket; 'self' covers ws(s): in current browsers, the schemes are for older ones.
  "connect-src 'self' ws: wss:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export function opsPageRoutes(): Router {
  const router = new Router();
  for (const [path, [file, type]] of Object.entries(FILES)) {
    const body = readFileSync(new URL(`../ops/${file}`, import.meta.url));
    router.get(path, (ctx) => {
      ctx.type = type;
      ctx.set('Content-Security-Policy', OPS_CSP);
      ctx.set('Cache-Control', 'no-store');
      ctx.body = body;
    });
  }
  return router;
}

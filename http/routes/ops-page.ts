// The operations page: static files from http/ops, no CDN.

import Router from '@koa/router';
import { readFileSync } from 'node:fs';

const FILES: Record<string, [string, string]> = {
  '/ops': ['index.html', 'text/html; charset=utf-8'],
  '/ops/ops.js': ['ops.js', 'application/javascript'],
  '/ops/ops.css': ['ops.css', 'text/css'],
};

export function opsPageRoutes(): Router {
  const router = new Router();
  for (const [path, [file, type]] of Object.entries(FILES)) {
    const body = readFileSync(new URL(`../ops/${file}`, import.meta.url));
    router.get(path, (ctx) => {
      ctx.type = type;
      ctx.set('Content-Security-Policy', "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self'; script-src 'self'");
      ctx.body = body;
    });
  }
  return router;
}

// /openapi.json generated from the routes' own schemas, and the interactive docs
// served from installed packages (swagger-ui-dist, redoc): no CDN, no network.

import Router from '@koa/router';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { openApiDocument, type Api } from '../api.ts';

const require = createRequire(import.meta.url);
const swaggerDir = dirname(require.resolve('swagger-ui-dist/package.json'));
const redocBundle = join(dirname(require.resolve('redoc/package.json')), 'bundles', 'redoc.standalone.js');

const SWAGGER_FILES: Record<string, string> = {
  'swagger-ui.css': 'text/css', 'swagger-ui-bundle.js': 'application/javascript', 'swagger-ui-standalone-preset.js': 'application/javascript',
};

// The pages may load nothing but the node's own assets (Redoc would otherwise fetch its logo from a CDN).
const CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; font-src 'self' data:";

export function docsRoutes(apis: () => readonly Api[]): Router {
  const router = new Router();
  let document: unknown;
  router.get('/openapi.json', (ctx) => {
    document ??= openApiDocument(apis(), { title: 'dispatch-actors API', version: '1' });
    ctx.body = document;
  });
  router.get('/docs', (ctx) => {
    ctx.type = 'html';
    ctx.set('Content-Security-Policy', CSP);
    ctx.body = `<!doctype html><html><head><meta charset="utf-8"><title>dispatch-actors API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head><body><div id="ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#ui' });</script></body></html>`;
  });
  router.get('/docs/assets/:file', (ctx) => {
    const type = SWAGGER_FILES[ctx.params.file!];
    if (!type) return;
    ctx.type = type;
    ctx.set('Cache-Control', 'public, max-age=86400');
    ctx.body = readFileSync(join(swaggerDir, ctx.params.file!));
  });
  router.get('/redoc', (ctx) => {
    ctx.type = 'html';
    ctx.set('Content-Security-Policy', CSP);
    ctx.body = `<!doctype html><html><head><meta charset="utf-8"><title>dispatch-actors API</title></head><body>
<redoc spec-url="/openapi.json"></redoc><script src="/redoc/redoc.standalone.js"></script></body></html>`;
  });
  router.get('/redoc/redoc.standalone.js', (ctx) => {
    ctx.type = 'application/javascript';
    ctx.set('Cache-Control', 'public, max-age=86400');
    ctx.body = readFileSync(redocBundle);
  });
  return router;
}

// /openapi.json generated from the routes' own schemas, /asyncapi.json from the
// WebSocket messages' schemas, and the interactive docs served from installed
// packages (swagger-ui-dist, redoc, @asyncapi/react-component): no CDN, no
// network, and no inline script (each page's start-up code is a served file).

import Router from '@koa/router';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { openApiDocument, type Api } from '../api.ts';
import { asyncApiDocument } from '../asyncapi.ts';

const require = createRequire(import.meta.url);
const swaggerDir = dirname(require.resolve('swagger-ui-dist/package.json'));
const redocBundle = join(dirname(require.resolve('redoc/package.json')), 'bundles', 'redoc.standalone.js');
const asyncApiDir = dirname(require.resolve('@asyncapi/react-component/package.json'));

const SWAGGER_FILES: Record<string, string> = {
  'swagger-ui.css': 'text/css', 'swagger-ui-bundle.js': 'application/javascript', 'swagger-ui-standalone-preset.js': 'application/javascript',
};

/** The AsyncAPI renderer: the standalone bundle (React and the AsyncAPI parser inside) and its styles. */
const ASYNCAPI_FILES: Record<string, [string, string]> = {
  'asyncapi-standalone.js': [join(asyncApiDir, 'browser', 'standalone', 'index.js'), 'application/javascript'],
  'asyncapi.css': [join(asyncApiDir, 'styles', 'default.min.css'), 'text/css'],
};

/** Start-up code of the pages, served as scripts so the pages need no inline script. */
const INIT: Record<string, string> = {
  '/docs/init.js': "window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#ui' });\n",
  '/docs/ws/init.js': `AsyncApiStandalone.render({
  schema: { url: '/asyncapi.json', requestOptions: { credentials: 'same-origin' } },
  config: { show: { sidebar: true, errors: true }, sidebar: { showOperations: 'byDefault' } },
}, document.getElementById('asyncapi'));
`,
};

// The pages may load nothing but the node's own assets (Redoc would otherwise fetch its logo from a CDN).
// Scripts come from the node only: no inline script. Styles may be inline, as the renderers set them.
const CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; " +
  "script-src 'self'; worker-src 'self' blob:; font-src 'self' data:";
// The AsyncAPI parser in the renderer compiles JSON Schemas (ajv) with new Function, hence 'unsafe-eval' there.
const ASYNCAPI_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; " +
  "script-src 'self' 'unsafe-eval'; worker-src 'self' blob:; font-src 'self' data:";

const page = (title: string, head: string, body: string) =>
  `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title>${head}</head><body>${body}</body></html>`;

export function docsRoutes(apis: () => readonly Api[]): Router {
  const router = new Router();
  let document: unknown;
  router.get('/openapi.json', (ctx) => {
    document ??= openApiDocument(apis(), { title: 'dispatch-actors API', version: '1' });
    ctx.body = document;
  });
  router.get('/asyncapi.json', (ctx) => {
    // The server in the document is the host the client asked (its Host header) with the scheme it
    // used: TLS as a trusted proxy reports it (ctx.state.secure, set by the client-address middleware).
    const secure = typeof ctx.state.secure === 'boolean' ? ctx.state.secure : ctx.protocol === 'https';
    ctx.body = asyncApiDocument({ host: ctx.host, secure });
  });
  const html = (path: string, csp: string, title: string, head: string, body: string) => router.get(path, (ctx) => {
    ctx.type = 'html';
    ctx.set('Content-Security-Policy', csp);
    ctx.body = page(title, head, body);
  });
  html('/docs', CSP, 'dispatch-actors API', '<link rel="stylesheet" href="/docs/assets/swagger-ui.css">',
    '<div id="ui"></div><script src="/docs/assets/swagger-ui-bundle.js"></script><script src="/docs/init.js"></script>');
  router.get('/docs/assets/:file', (ctx) => {
    const type = SWAGGER_FILES[ctx.params.file!];
    if (!type) return;
    ctx.type = type;
    ctx.set('Cache-Control', 'public, max-age=86400');
    ctx.body = readFileSync(join(swaggerDir, ctx.params.file!));
  });
  for (const [path, body] of Object.entries(INIT)) {
    router.get(path, (ctx) => {
      ctx.type = 'application/javascript';
      ctx.set('Cache-Control', 'no-cache');
      ctx.body = body;
    });
  }
  html('/redoc', CSP, 'dispatch-actors API', '', '<redoc spec-url="/openapi.json"></redoc><script src="/redoc/redoc.standalone.js"></script>');
  router.get('/redoc/redoc.standalone.js', (ctx) => {
    ctx.type = 'application/javascript';
    ctx.set('Cache-Control', 'public, max-age=86400');
    ctx.body = readFileSync(redocBundle);
  });
  html('/docs/ws', ASYNCAPI_CSP, 'dispatch-actors WebSocket API', '<link rel="stylesheet" href="/docs/ws/assets/asyncapi.css">',
    '<div id="asyncapi"></div><script src="/docs/ws/assets/asyncapi-standalone.js"></script><script src="/docs/ws/init.js"></script>');
  router.get('/docs/ws/assets/:file', (ctx) => {
    const file = ASYNCAPI_FILES[ctx.params.file!];
    if (!file) return;
    ctx.type = file[1];
    ctx.set('Cache-Control', 'public, max-age=86400');
    ctx.body = readFileSync(file[0]);
  });
  return router;
}

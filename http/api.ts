// Routes declared once: the same zod schemas validate requests and describe them
// in the OpenAPI document, so the docs cannot drift from what the server accepts.

import Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import { z, type ZodType } from 'zod';
import type { Role } from './auth.ts';
import { requireRole, type AuthState } from './authenticate.ts';
import { HttpError } from './errors.ts';
import { audited, type AuditDetail, type AuditNote } from './audit.ts';
import type { AuditLog } from './ports.ts';

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';

export interface Operation<B = unknown, Q = unknown, P = Record<string, string>> {
  readonly method: Method;
  readonly path: string;
  readonly summary: string;
  readonly tag: string;
  /** Who may call it; an operation without roles must say `public: true` (a forgotten role fails at start, not open). */
  readonly roles?: readonly Role[];
  readonly public?: boolean;
  /** Middleware run before the input is parsed (rate limits). */
  readonly guards?: readonly Middleware<AuthState>[];
  readonly body?: ZodType<B>;
  readonly query?: ZodType<Q>;
  /**
   * The path parameters, an object with one member per `:name` of the path (required when
   * the path has any). A parameter that fails is a 404 `not_found` with details naming
   * `path.<name>`: a path that cannot name a resource names none (see http/ids.ts), and
   * the handler, so no actor, never sees it.
   */
  readonly params?: ZodType<P>;
  readonly response?: ZodType;
  /** The success body's media type when it is not JSON (/metrics); `response` is then its text. */
  readonly produces?: string;
  readonly status?: number;
  /** Request headers the operation reads, with the format it holds them to (the handler checks the same schema). */
  readonly headers?: readonly Header[];
  /** Headers of the success answer (Location, X-Projection-Lag-Ms). */
  readonly responseHeaders?: readonly Header[];
  /**
   * Error statuses the handler itself can answer, beyond those derived from the declaration
   * (see errorStatuses).
   */
  readonly errors?: readonly number[];
  /**
   * What the action changes, for the audit log (http/audit.ts), from its input and its
   * result (undefined when it was refused). Required of every write admins may call; an
   * admin's call is then recorded, done or refused.
   */
  readonly audit?: (input: { body: B; query: Q; params: P }, result: any) => AuditNote;
  readonly handler: (ctx: Context & { state: AuthState & AuditDetail }, input: { body: B; query: Q; params: P }) => Promise<unknown>;
}

export interface Header {
  readonly name: string;
  readonly description: string;
  readonly required?: boolean;
  readonly schema?: ZodType;
}

export const ErrorSchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
}).meta({ id: 'Error' });

/** Turns zod issues into the contract's 400 body. */
export function invalid(issues: readonly z.core.$ZodIssue[], where: string): HttpError {
  const details = issues.map((i) => ({ path: [where, ...i.path.map(String)].join('.'), message: i.message }));
  return new HttpError(400, 'invalid_request', `${details[0]?.path}: ${details[0]?.message}`, details);
}

export function parse<T>(schema: ZodType<T>, value: unknown, where: string): T {
  const result = schema.safeParse(value);
  if (!result.success) throw invalid(result.error.issues, where);
  return result.data;
}

/** A path that cannot name a resource names none: 404, with the details a 400 would give. */
function noSuchResource(issues: readonly z.core.$ZodIssue[]): HttpError {
  const details = issues.map((i) => ({ path: ['path', ...i.path.map(String)].join('.'), message: i.message }));
  return new HttpError(404, 'not_found', `${details[0]?.path}: ${details[0]?.message}`, details);
}

/** The `:name` parameters of a Koa route path. */
const pathParams = (path: string) => [...path.matchAll(/:(\w+)/g)].map((m) => m[1]!);

export class Api {
  readonly router = new Router<AuthState>();
  readonly operations: Operation<any, any, any>[] = [];
  readonly #audit: AuditLog | undefined;

  /** `audit`: where admins' writes are recorded (required once an operation declares `audit`). */
  constructor(options: { audit?: AuditLog } = {}) {
    this.#audit = options.audit;
  }

  add<B = undefined, Q = undefined, P = Record<string, string>>(op: Operation<B, Q, P>): void {
    const name = `${op.method.toUpperCase()} ${op.path}`;
    if (!op.roles === !op.public) {
      throw new Error(`${name}: declare either roles (who may call it) or public: true, not ${op.public ? 'both' : 'neither'}`);
    }
    // An admin's write that leaves no record is the gap the audit log closes: a forgotten one fails at start.
    if (op.method !== 'get' && op.roles?.includes('admin') && !op.audit) {
      throw new Error(`${name}: admins may call it and it writes: declare audit (what it changes) for the audit log`);
    }
    if (op.audit && !this.#audit) throw new Error(`${name}: declares audit, but this Api was made without an audit log`);
    // Every path parameter has a format, so none reaches a handler (and an actor) unchecked: a forgotten one fails at start.
    const names = pathParams(op.path);
    if (names.length > 0 || op.params) {
      const declared = op.params instanceof z.ZodObject ? Object.keys(op.params.shape).sort() : undefined;
      if (!declared || declared.join() !== [...names].sort().join()) {
        throw new Error(`${name}: declare params as a z.object with exactly the path parameters (${names.join(', ') || 'none'})`);
      }
    }
    this.operations.push(op);
    const guards = [...(op.roles ? [requireRole(...op.roles)] : []), ...(op.guards ?? [])];
    this.router[op.method](op.path, ...guards, async (ctx) => {
      const body = op.body ? parse(op.body, (ctx.request as { body?: unknown }).body, 'body') : (undefined as B);
      const query = op.query ? parse(op.query, ctx.query, 'query') : (undefined as Q);
      // After the body and query, so that bad input is a 400 whether or not the resource exists.
      let params = ctx.params as P;
      if (op.params) {
        const checked = op.params.safeParse(ctx.params);
        if (!checked.success) throw noSuchResource(checked.error.issues);
        params = checked.data;
      }
      const input = { body, query, params };
      const action = () => op.handler(ctx as never, input);
      const audit = op.audit;
      const result = audit && ctx.state.principal?.role === 'admin'
        ? await audited(this.#audit!, ctx as never, op, (done) => audit(input, done), action)
        : await action();
      ctx.status = op.status ?? 200;
      if (result !== undefined) ctx.body = result;
    });
  }
}

const TAGS: Readonly<Record<string, string>> = {
  auth: 'Accounts and tokens',
  bookings: 'Quotes and bookings',
  discovery: 'Nearby drivers and surge',
  admin: 'Vehicles, drivers, pricing, analytics and the cluster (admin role)',
  operations: 'Liveness, readiness and metrics, for orchestrators and scrapers',
};

/** What each error status means, for the responses of the OpenAPI document. */
const ERROR_MEANINGS: Readonly<Record<number, string>> = {
  400: 'invalid input; `error.details` names each failing field',
  401: 'no valid bearer token (or, where stated, wrong credentials)',
  403: 'the token\'s role or subject may not do this',
  404: 'no such resource, or not one this caller may see',
  409: 'refused in the resource\'s current state (or a duplicate)',
  413: 'the body is larger than the node accepts',
  415: 'the body is not `application/json`',
  422: 'storage refused the command\'s data (`unprocessable`): it was set aside as a dead letter',
  429: 'rate limited; `Retry-After` gives the seconds to wait',
  431: 'the request line and headers (a URL, say) are larger than 16 KB',
  500: 'a bug (`internal_error`); no stack trace is sent',
  503: 'a dependency is unavailable (`unavailable`), the entity\'s shard is moving, ' +
    'or the node is overloaded (`overloaded`, with `Retry-After` giving the seconds to wait); retry later',
  504: 'the entity\'s owner did not answer in time (`timeout`); retry later',
};

/**
 * Every status an operation can answer with an error, so none is left to a `default`: those
 * its declaration implies, those it names, and those any request can meet (a URL too long,
 * a bug). Operations under /v1/ reach storage or entities, which can be down, moving or
 * slow (503, 504); those that write can meet storage refusing the data (422).
 */
export function errorStatuses(op: Operation<any, any, any>): number[] {
  const statuses = new Set<number>([...op.errors ?? [], 431, 500]);
  if (op.body || op.query || op.headers?.length || op.path.includes(':')) statuses.add(400);
  if (op.body) { statuses.add(413); statuses.add(415); }
  if (op.roles) { statuses.add(401); statuses.add(403); }
  if (op.path.includes(':')) statuses.add(404);
  // node.ts rate-limits every /v1/ request per user or IP; guards are tighter limits.
  if (op.path.startsWith('/v1/') || op.guards?.length) statuses.add(429);
  if (op.path.startsWith('/v1/')) { statuses.add(503); statuses.add(504); }
  if (op.path.startsWith('/v1/') && op.method !== 'get') statuses.add(422);
  return [...statuses].sort((a, b) => a - b);
}

/** Headers that come with answers whatever the operation: their names, as `components.headers` holds them. */
const COMMON_HEADERS = {
  'X-Request-Id': {
    description: 'the request\'s id, in every answer: the caller\'s own when it sent a well-formed one, else a fresh one; logs carry it',
    required: true, schema: { type: 'string', pattern: '^[\\w.-]{1,128}$' },
  },
  'Retry-After': { description: 'seconds to wait before trying again', required: true, schema: { type: 'integer', minimum: 1 } },
} as const;
const headerRef = (name: keyof typeof COMMON_HEADERS) => ({ $ref: `#/components/headers/${name}` });

const errorResponse = (status: number) => ({
  description: ERROR_MEANINGS[status] ?? 'error',
  headers: {
    'X-Request-Id': headerRef('X-Request-Id'),
    // Always with a 429; with a 503 when the node is overloaded or starting.
    ...(status === 429 ? { 'Retry-After': headerRef('Retry-After') } : {}),
    ...(status === 503 ? { 'Retry-After': { description: 'seconds to wait, when the node says', schema: { type: 'integer', minimum: 1 } } } : {}),
  },
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});

/** OpenAPI 3.1 from the registered operations. */
export function openApiDocument(apis: readonly Api[], info: { title: string; version: string; description?: string }) {
  const schemas: Record<string, unknown> = {};
  // Named schemas (.meta({ id })) come out of zod as local $defs; they move to
  // components.schemas so every operation refers to one definition.
  const toSchema = (schema: ZodType, io: 'input' | 'output') => {
    const json = z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'draft-2020-12' }) as Record<string, unknown>;
    delete json.$schema;
    const defs = (json.$defs ?? {}) as Record<string, unknown>;
    delete json.$defs;
    const relink = (value: unknown) =>
      JSON.parse(JSON.stringify(value).replaceAll('"#/$defs/', '"#/components/schemas/')) as Record<string, unknown>;
    for (const [name, def] of Object.entries(defs)) schemas[name] ??= relink(def);
    return relink(json);
  };
  const paths: Record<string, Record<string, unknown>> = {};
  const operationIds = new Set<string>();
  for (const op of apis.flatMap((a) => a.operations)) {
    const path = op.path.replace(/:(\w+)/g, '{$1}');
    const paramShape = op.params instanceof z.ZodObject ? op.params.shape as Record<string, ZodType> : {};
    const params = pathParams(op.path).map((name) => ({
      name, in: 'path', required: true, schema: paramShape[name] ? toSchema(paramShape[name], 'input') : { type: 'string' },
    }));
    const querySchema = op.query ? toSchema(op.query, 'input') : undefined;
    const required = (querySchema?.required ?? []) as string[];
    const query = Object.entries((querySchema?.properties ?? {}) as Record<string, unknown>)
      .map(([name, schema]) => ({ name, in: 'query', required: required.includes(name), schema }));
    const headerSchema = (h: Header) => (h.schema ? toSchema(h.schema, 'input') : { type: 'string' });
    const headers = (op.headers ?? []).map((h) => ({
      name: h.name, in: 'header', required: h.required ?? false, description: h.description, schema: headerSchema(h),
    }));
    const status = String(op.status ?? 200);
    const successHeaders = {
      'X-Request-Id': headerRef('X-Request-Id'),
      ...Object.fromEntries((op.responseHeaders ?? []).map((h) => [h.name, {
        description: h.description, required: h.required ?? false, schema: headerSchema(h),
      }])),
    };
    const responses: Record<string, unknown> = {
      [status]: {
        description: 'success',
        headers: successHeaders,
        // Described as zod's input view: objects stay open, since the contract lets fields be added.
        ...(op.response ? { content: { [op.produces ?? 'application/json']: { schema: toSchema(op.response, 'input') } } } : {}),
      },
    };
    // Every error status is named (errorStatuses), so there is no `default`: an answer outside them breaks the contract.
    for (const code of errorStatuses(op)) responses[String(code)] = errorResponse(code);
    let operationId = `${op.method}` +
      `${path.replace(/[{}]/g, '').replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ? c.toUpperCase() : ''))}`;
    for (let n = 2; operationIds.has(operationId); n++) operationId = `${operationId.replace(/_\d+$/, '')}_${n}`;
    operationIds.add(operationId);
    (paths[path] ??= {})[op.method] = {
      summary: op.summary,
      description: op.roles ? `Roles: ${op.roles.join(', ')}` : 'Public: no token needed',
      tags: [op.tag],
      operationId,
      security: op.roles ? [{ bearer: [] }] : [],
      parameters: [...params, ...query, ...headers],
      ...(op.body ? {
        requestBody: { required: !op.body.safeParse(undefined).success, content: { 'application/json': { schema: toSchema(op.body, 'input') } } },
      } : {}),
      responses,
    };
  }
  toSchema(ErrorSchema, 'output');
  const tags = [...new Set(apis.flatMap((a) => a.operations.map((o) => o.tag)))].map((name) => ({ name, description: TAGS[name] ?? name }));
  return {
    openapi: '3.1.0',
    info: {
      ...info,
      description: info.description ?? 'Dispatch for ride-hailing and delivery. Every error is `{ "error": { "code", "message", "details"? } }`.',
    },
    // Relative: the document describes the node (or the proxy) that serves it.
    servers: [{ url: '/' }],
    // Bearer tokens unless an operation says otherwise; public operations say `security: []`.
    security: [{ bearer: [] }],
    tags,
    paths,
    components: { schemas, headers: COMMON_HEADERS, securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
  };
}

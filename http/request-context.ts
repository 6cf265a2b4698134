// Per-request id, structured access log, and the contract's error shape for
// anything thrown below (so no handler can leak a stack trace or an HTML page).

import { randomUUID } from 'node:crypto';
import type { Middleware } from 'koa';
import type { Logger } from 'pino';
import type { Principal } from './auth.ts';
import { HttpError, errorBody } from './errors.ts';

/** Longest client request id kept in the log. */
const CLIENT_ID_MAX = 128;

/**
 * The request id is always the node's own: a client's X-Request-Id could collide with
 * another request's on purpose, or pass for one of ours in the logs. What the client sent
 * is kept beside it, as `clientRequestId`, reduced to safe characters and bounded.
 */
export function clientRequestIdOf(header: string): string | undefined {
  const kept = header.slice(0, CLIENT_ID_MAX * 4).replace(/[^\w.:/-]/g, '').slice(0, CLIENT_ID_MAX);
  return kept === '' ? undefined : kept;
}

export function requestContext(logger: Logger): Middleware {
  return async (ctx, next) => {
    const requestId = randomUUID();
    ctx.state.requestId = requestId;
    ctx.set('x-request-id', requestId);
    const clientRequestId = clientRequestIdOf(ctx.get('x-request-id'));
    const log = logger.child(clientRequestId === undefined ? { requestId } : { requestId, clientRequestId });
    ctx.state.log = log;
    const started = performance.now();
    try {
      await next();
    } catch (error) {
      if (error instanceof HttpError) {
        ctx.status = error.status;
        ctx.body = errorBody(error.code, error.message, error.details);
        if (error.logged) log.info({ status: error.status, reason: error.logged }, 'request refused');
      } else {
        const status = statusOf(error);
        ctx.status = status;
        const retryAfter = retryAfterOf(error);
        if (retryAfter !== undefined) ctx.set('Retry-After', String(retryAfter));
        const explained = RUNTIME_ERRORS[(error as Error)?.name] !== undefined;
        ctx.body = status >= 500 && !explained
          ? errorBody('internal_error', 'the request could not be handled')
          : errorBody(codeOf(error), (error as Error).message);
        if (status >= 500) log[explained ? 'warn' : 'error']({ err: error }, 'request failed');
      }
    } finally {
      const ms = Math.round((performance.now() - started) * 100) / 100;
      // Who did it: the token's subject and role (authentication ran below, for this request).
      const principal = (ctx.state as { principal?: Principal }).principal;
      const actor = principal ? { actor: { sub: principal.sub, role: principal.role } } : {};
      log.info({ method: ctx.method, path: ctx.path, status: ctx.status, ms, ...actor }, 'request');
    }
  };
}

/** Runtime errors the edge can explain: the owner is moving or slow, not a bug. */
const RUNTIME_ERRORS: Record<string, [number, string]> = {
  AskTimeoutError: [504, 'timeout'],
  NotOwnerError: [503, 'unavailable'],
  // The shard is moving between nodes: asking again in a second reaches its new owner.
  ShardHandoffError: [503, 'unavailable'],
  // This node is stopping (a rolling restart, a scale-in): any other node takes the request.
  NodeStoppingError: [503, 'unavailable'],
  RemoteAskError: [503, 'unavailable'],
  DependencyUnavailableError: [503, 'unavailable'],
  // The shard moved to another node while this one still served it: asking again finds the new owner.
  ShardFencedError: [503, 'unavailable'],
  // The command log holds all it may for the broker: this node is overloaded, not broken.
  CommandLogFullError: [503, 'overloaded'],
  // The command log could not take the command (a full disk, a shard stopped at a gap): nothing was accepted.
  LogUnavailableError: [503, 'unavailable'],
};

/** Seconds a runtime error says to wait before trying again (a RetryLaterError's retryAfterSeconds). */
function retryAfterOf(error: unknown): number | undefined {
  if (RUNTIME_ERRORS[(error as Error)?.name] === undefined) return undefined;
  const seconds = (error as { retryAfterSeconds?: unknown }).retryAfterSeconds;
  return typeof seconds === 'number' && seconds > 0 ? Math.ceil(seconds) : undefined;
}

/** The status an error is answered with. Koa and its body parsers throw errors with `status` (or `statusCode`) set. */
export function statusOf(error: unknown): number {
  const known = RUNTIME_ERRORS[(error as Error)?.name];
  if (known) return known[0];
  const e = error as { status?: unknown; statusCode?: unknown; expose?: unknown };
  const status = typeof e?.status === 'number' ? e.status : typeof e?.statusCode === 'number' ? e.statusCode : 500;
  return status >= 400 && status < 600 ? status : 500;
}

function codeOf(error: unknown): string {
  const known = RUNTIME_ERRORS[(error as Error)?.name];
  if (known) return known[1];
  const status = statusOf(error);
  if (status === 413) return 'payload_too_large';
  if (status === 415) return 'unsupported_media_type';
  if (status === 404) return 'not_found';
  return 'bad_request';
}

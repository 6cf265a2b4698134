// Admin actions, recorded (the AuditLog port, http/ports.ts): who (the token's subject and
// role), what (method, route, target, a short summary), when, from where (the client
// address the edge resolved) and how it ended (the status answered). Every operation that
// writes and admins may call declares what it changes (http/api.ts refuses one that does
// not, at start); the entry is written once the action is answered, done or refused.
//
// Summaries name the fields an action set and show only values that say nothing about a
// person (a flag, a count, a type, an id): names, phones, plates and free text stay out.

import type { Context } from 'koa';
import type { AuthState } from './authenticate.ts';
import type { AuditLog, AuditRecord } from './ports.ts';
import { statusOf } from './request-context.ts';

/** What one action did, as its route declares it. */
export interface AuditNote {
  readonly target?: string;
  readonly summary: string;
}

/** What a handler may add to its route's note once it knows more (the command a retry sends). */
export interface AuditDetail {
  auditDetail?: string;
}

const SUMMARY_MAX = 300;
const VALUE_MAX = 40;

/**
 * The fields of `body`, in order: `name=value` for those listed in `shown`, only the name
 * (`phone set`) for the others, so personal data and free text never reach the log.
 */
export function fieldsSet(body: object | undefined, shown: readonly string[] = []): string {
  const parts = Object.entries(body ?? {}).filter(([, v]) => v !== undefined).map(([k, v]) => {
    if (!shown.includes(k)) return `${k} set`;
    const text = typeof v === 'string' ? v : JSON.stringify(v);
    return `${k}=${text.length > VALUE_MAX ? `${text.slice(0, VALUE_MAX)}…` : text}`;
  });
  return parts.length > 0 ? parts.join(', ') : 'no fields';
}

/** Runs an admin's action and records it, whether it was done or refused; the action's own answer or error stands. */
export async function audited<T>(
  log: AuditLog, ctx: Context & { state: AuthState & AuditDetail }, route: { method: string; path: string; status?: number },
  note: (result: T | undefined) => AuditNote, action: () => Promise<T>,
): Promise<T> {
  let result: T | undefined;
  let status = route.status ?? 200;
  try {
    result = await action();
    return result;
  } catch (error) {
    status = statusOf(error);
    throw error;
  } finally {
    await write(log, ctx, entryOf(ctx, route.method, route.path, status, note(result)));
  }
}

function entryOf(ctx: Context & { state: AuthState & AuditDetail }, method: string, route: string, status: number, note: AuditNote): AuditRecord {
  const principal = ctx.state.principal!;
  const detail = ctx.state.auditDetail;
  const summary = detail ? `${note.summary}; ${detail}` : note.summary;
  return {
    at: Date.now(), actor: { sub: principal.sub, role: principal.role }, method: method.toUpperCase(), route,
    ...(note.target === undefined ? {} : { target: note.target }),
    summary: summary.length > SUMMARY_MAX ? `${summary.slice(0, SUMMARY_MAX - 1)}…` : summary,
    status, ip: ctx.ip, requestId: String(ctx.state.requestId ?? ''),
  };
}

/**
 * The action has happened: a log that cannot take the entry does not undo it or fail the
 * answer. The entry goes to the node's log instead, at error level, whole.
 */
async function write(log: AuditLog, ctx: Context, entry: AuditRecord): Promise<void> {
  try {
    await log.record(entry);
  } catch (error) {
    (ctx.state.log as { error(o: object, m: string): void } | undefined)?.error({ err: error, audit: entry }, 'audit entry not stored');
  }
}

// Admin: commands the runtime set aside because they could not be handled (storage
// refused their data, a reducer threw, storage stayed down past the retry budget).
// List them, send one again (under its own id, so an entity that did apply it drops
// it as a duplicate), or discard it. A retry replays the command as its original sender
// sent it, so it is recorded in the audit log under the admin who sent it again, and a
// command older than DEAD_LETTER_RETRY_MAX_AGE_MS is refused unless forced: replayed
// late, an old `profile.update` would re-activate a driver deactivated since.

import { z } from 'zod';
import { Api } from '../api.ts';
import type { Edge } from '../edge.ts';
import { HttpError } from '../errors.ts';
import { isUndecodable } from '../../runtime/undecodable.ts';

const DeadLetter = z.object({
  id: z.string(), shard: z.number(), offset: z.number(),
  command: z.object({ id: z.string(), to: z.object({ kind: z.string(), id: z.string() }), message: z.unknown(), at: z.number() }).loose(),
  failure: z.object({ kind: z.string(), message: z.string() }), attempts: z.number(), at: z.string(),
}).meta({ id: 'DeadLetter' });

// Command ids are the runtime's own (a UUID, `create:bk_…`, `timer:booking:bk_…/offer/…`): printable, bounded.
const Params = z.object({ id: z.string().min(1).max(512).regex(/^[\x21-\x7e]+$/, 'a command id') }).strict();

const RetryQuery = z.object({
  force: z.enum(['true', 'false']).default('false').describe('true retries a command older than DEAD_LETTER_RETRY_MAX_AGE_MS')
    .transform((v) => v === 'true'),
}).strict();

/** `1d 2h`, `3h 5m`, `40s`: an age for a message. */
function age(ms: number): string {
  const s = Math.floor(ms / 1000);
  const [d, h, m] = [Math.floor(s / 86_400), Math.floor((s % 86_400) / 3600), Math.floor((s % 3600) / 60)];
  return d > 0 ? `${d}d ${h}h` : h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m` : `${s}s`;
}

const view = (l: Awaited<ReturnType<Edge['deadLetters']['list']>>[number]) => ({ ...l, at: new Date(l.at).toISOString() });

export function deadLetterRoutes(edge: Edge): Api {
  const api = new Api({ audit: edge.audit });
  const admin = ['admin'] as const;
  const found = async (id: string) => {
    const letter = await edge.deadLetters.get(id);
    if (!letter) throw new HttpError(404, 'not_found', `no dead letter ${id}`);
    return letter;
  };

  api.add({
    method: 'get', path: '/v1/admin/dead-letters', tag: 'admin',
    summary: 'Commands set aside because they could not be handled, newest first', roles: admin,
    query: z.object({ limit: z.coerce.number().int().min(1).max(500).default(100) }).strict(),
    response: z.object({ items: z.array(DeadLetter) }),
    handler: async (_ctx, { query }) => ({ items: (await edge.deadLetters.list(query.limit)).map(view) }),
  });
  api.add({
    method: 'post', path: '/v1/admin/dead-letters/:id/retry', tag: 'admin',
    summary: 'Send a dead-lettered command again (same id) and remove it from the list; ' +
      '409 dead_letter_too_old for a command older than DEAD_LETTER_RETRY_MAX_AGE_MS unless forced',
    roles: admin, status: 202, response: DeadLetter, params: Params, query: RetryQuery, errors: [409],
    audit: ({ params, query }) => ({ target: `dead-letter:${params.id}`, summary: `retry dead letter${query.force ? ' (forced)' : ''}` }),
    handler: async (ctx, { params, query }) => {
      const letter = await found(params.id!);
      if (isUndecodable(letter.command)) {
        throw new HttpError(409, 'not_retriable', `dead letter ${letter.id} is a log record that is not a command: discard it`);
      }
      const { command } = letter;
      const issuedAgo = Date.now() - command.at;
      const type = (command.message as { type?: unknown } | undefined)?.type;
      ctx.state.auditDetail = `${typeof type === 'string' ? type.slice(0, 40) : 'a command'} to ${command.to.kind}:${command.to.id}, ` +
        `issued ${age(issuedAgo)} ago`;
      if (issuedAgo > edge.deadLetterRetryMaxAgeMs && !query.force) {
        throw new HttpError(409, 'dead_letter_too_old',
          `the command was issued ${age(issuedAgo)} ago, longer than DEAD_LETTER_RETRY_MAX_AGE_MS (${age(edge.deadLetterRetryMaxAgeMs)}): ` +
          'replayed now it could undo what happened since; retry with ?force=true if it still applies');
      }
      // Removed first: if it fails again, it comes back as a new letter, not lost in a race with this delete.
      await edge.deadLetters.remove(letter.id);
      try {
        await edge.region.redeliver(letter);
      } catch (error) {
        await edge.deadLetters.add(letter);
        throw error;
      }
      return view(letter);
    },
  });
  api.add({
    method: 'delete', path: '/v1/admin/dead-letters/:id', tag: 'admin', summary: 'Discard a dead-lettered command', roles: admin,
    status: 204, params: Params, audit: ({ params }) => ({ target: `dead-letter:${params.id}`, summary: 'discard dead letter' }),
    handler: async (_ctx, { params }) => {
      if (!(await edge.deadLetters.remove(params.id!))) throw new HttpError(404, 'not_found', `no dead letter ${params.id}`);
      return undefined;
    },
  });
  return api;
}

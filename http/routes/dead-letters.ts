// Admin: commands the runtime set aside because they could not be handled (storage
// refused their data, a reducer threw, storage stayed down past the retry budget).
// List them, send one again (under its own id, so an entity that did apply it drops
// it as a duplicate), or discard it.

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

const view = (l: Awaited<ReturnType<Edge['deadLetters']['list']>>[number]) => ({ ...l, at: new Date(l.at).toISOString() });

export function deadLetterRoutes(edge: Edge): Api {
  const api = new Api();
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
    summary: 'Send a dead-lettered command again (same id) and remove it from the list',
    roles: admin, status: 202, response: DeadLetter, params: Params,
    handler: async (_ctx, { params }) => {
      const letter = await found(params.id!);
      if (isUndecodable(letter.command)) {
        throw new HttpError(409, 'not_retriable', `dead letter ${letter.id} is a log record that is not a command: discard it`);
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
    status: 204, params: Params,
    handler: async (_ctx, { params }) => {
      if (!(await edge.deadLetters.remove(params.id!))) throw new HttpError(404, 'not_found', `no dead letter ${params.id}`);
      return undefined;
    },
  });
  return api;
}

// Admin: the audit log of admin actions (http/audit.ts records them), newest first, in
// pages that end at an entry id, optionally one actor's only.

import { z } from 'zod';
import { Api } from '../api.ts';
import type { Edge } from '../edge.ts';
import { UserId } from '../ids.ts';
import type { AuditEntry as Entry } from '../ports.ts';

const AuditEntry = z.object({
  id: z.string().describe('Increasing: pass the last one of a page as `before` for the next'),
  at: z.string(),
  actor: z.object({ sub: z.string(), role: z.string() }).describe('The subject and role of the token that acted'),
  method: z.string(),
  route: z.string().describe('The route template, e.g. /v1/admin/drivers/:id'),
  target: z.string().optional().describe('What it acted on, e.g. driver:drv_1'),
  summary: z.string().describe('What changed: the fields set, values only where they say nothing about a person'),
  status: z.number().describe('The status answered: done (2xx) or refused'),
  ip: z.string().describe('The client address, as TRUST_PROXY resolves it'),
  requestId: z.string().describe('The X-Request-Id answered, as in the node\'s log'),
}).meta({ id: 'AuditEntry' });

const AuditQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(100),
  before: z.string().regex(/^[1-9]\d{0,17}$/, 'an entry id').optional().describe('Only entries older than this entry id'),
  actor: UserId.optional().describe('Only this subject\'s actions'),
}).strict();

const view = (e: Entry) => ({ ...e, at: new Date(e.at).toISOString() });

export function auditRoutes(edge: Edge): Api {
  const api = new Api();
  api.add({
    method: 'get', path: '/v1/admin/audit', tag: 'admin', summary: 'What admins did, newest first: who, what, when, from where',
    roles: ['admin'], query: AuditQuery,
    response: z.object({ items: z.array(AuditEntry), nextBefore: z.string().optional().describe('Pass as `before` for the next page') }),
    handler: async (_ctx, { query }) => {
      // One more than asked says whether another page follows.
      const found = await edge.audit.list({ limit: query.limit + 1, before: query.before, actor: query.actor });
      const items = found.slice(0, query.limit).map(view);
      return { items, ...(found.length > query.limit ? { nextBefore: items.at(-1)!.id } : {}) };
    },
  });
  return api;
}

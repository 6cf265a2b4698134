// The audit log of admin actions (http/ports.ts AuditLog) in PostgreSQL, on every node's
// one database: an entry written on one node is listed on all of them. Ids come from a
// sequence, so a page ends at an id and the next one starts below it.

import type { AuditEntry, AuditLog, AuditQuery, AuditRecord } from '../../http/ports.ts';
import type { Guard } from '../resilience.ts';
import { sqlOn, type Orm, type Sql } from './orm.ts';

interface Row {
  id: string | number; at: Date | string; actor_sub: string; actor_role: string; method: string; route: string;
  target: string | null; summary: string; status: number; client_ip: string; request_id: string;
}

export class PostgresAuditLog implements AuditLog {
  readonly #sql: Sql;
  readonly #guard: Guard;

  constructor(orm: Orm, guard: Guard) {
    this.#sql = sqlOn(orm);
    this.#guard = guard;
  }

  async record(e: AuditRecord): Promise<void> {
    await this.#guard.run(() => this.#sql(
      `insert into admin_audit (at, actor_sub, actor_role, method, route, target, summary, status, client_ip, request_id)
       values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [new Date(e.at), e.actor.sub, e.actor.role, e.method, e.route, e.target ?? null, e.summary, e.status, e.ip, e.requestId],
    ));
  }

  async list(q: AuditQuery): Promise<AuditEntry[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (q.before !== undefined) { where.push('id < ?::bigint'); params.push(q.before); }
    if (q.actor !== undefined) { where.push('actor_sub = ?'); params.push(q.actor); }
    const rows = await this.#guard.run(() => this.#sql<Row>(
      `select * from admin_audit ${where.length > 0 ? `where ${where.join(' and ')}` : ''} order by id desc limit ?`, [...params, q.limit],
    ));
    return rows.map(toEntry);
  }
}

function toEntry(r: Row): AuditEntry {
  return {
    id: String(r.id), at: new Date(r.at).getTime(), actor: { sub: r.actor_sub, role: r.actor_role }, method: r.method, route: r.route,
    ...(r.target === null ? {} : { target: r.target }), summary: r.summary, status: Number(r.status), ip: r.client_ip, requestId: r.request_id,
  };
}

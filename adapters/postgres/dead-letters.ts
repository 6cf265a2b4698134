// Dead letters (runtime/ports.ts DeadLetterStore) on PostgreSQL: commands that could
// not be handled, with what is needed to judge and retry them. Keyed by command id,
// so a command dead-lettered twice (redelivered after a crash) is one row. With a
// WriteFence, `add` is conditional on this node's epoch for the letter's shard.

import { FencedStore } from './fenced-store.ts';
import type { CommandEnvelope, DeadLetter, DeadLetterStore } from '../../runtime/ports.ts';
import { FENCED_BY, epochFor, fenceParams } from './shard-epochs.ts';

interface Row {
  id: string; shard: number; log_offset: string | number; command: unknown; failure_kind: string; failure_message: string;
  attempts: number; created_at: Date | string;
}

export class PostgresDeadLetterStore extends FencedStore implements DeadLetterStore {
  async add(l: DeadLetter): Promise<void> {
    // The command is stored as it came, base64-encoded: whatever made it fail (a NUL
    // PostgreSQL refuses) must not also keep it out of this table, or change it on retry.
    const values = [l.id, l.shard, l.offset, storable(l.command), l.failure.kind, storableText(l.failure.message), l.attempts, new Date(l.at)];
    // Dead-lettered again (after a retry put it back in the log): the letter points at its
    // last failure (shard, offset, command as it was then), with the attempts of both.
    const upsert = `on conflict (id) do update set attempts = dead_letter.attempts + excluded.attempts, failure_kind = excluded.failure_kind,
         failure_message = excluded.failure_message, created_at = excluded.created_at,
         shard = excluded.shard, log_offset = excluded.log_offset, command = excluded.command`;
    if (!this.fence) {
      await this.sql(`insert into dead_letter (id, shard, log_offset, command, failure_kind, failure_message, attempts, created_at)
       values (?, ?, ?, ?, ?, ?, ?, ?) ${upsert}`, values);
      return;
    }
    const what = `dead letter ${l.id}`;
    const epoch = epochFor(this.fence, l.shard, what);
    const written = await this.sql(
      `insert into dead_letter (id, shard, log_offset, command, failure_kind, failure_message, attempts, created_at)
       select ?, ?::int, ?::bigint, ?, ?, ?, ?::int, ?::timestamptz where ${FENCED_BY} ${upsert} returning 1 as ok`,
      [...values, ...fenceParams(l.shard, epoch)]);
    if (written.length === 0) throw this.fence.refused(l.shard, epoch, what);
  }

  async list(limit: number): Promise<DeadLetter[]> {
    const rows = await this.sql<Row>('select * from dead_letter order by created_at desc, id limit ?', [limit]);
    return rows.map(toLetter);
  }

  async get(id: string): Promise<DeadLetter | undefined> {
    const [row] = await this.sql<Row>('select * from dead_letter where id = ?', [id]);
    return row && toLetter(row);
  }

  async remove(id: string): Promise<boolean> {
    const rows = await this.sql<{ id: string }>('delete from dead_letter where id = ? returning id', [id]);
    return rows.length > 0;
  }
}

function storable(command: CommandEnvelope): string {
  return Buffer.from(JSON.stringify(command)).toString('base64');
}

function storableText(text: string): string {
  return text.replace(/\u0000/g, '\\u0000');
}

function toLetter(r: Row): DeadLetter {
  const command = JSON.parse(Buffer.from(String(r.command), 'base64').toString('utf8')) as CommandEnvelope;
  return {
    id: r.id, shard: Number(r.shard), offset: Number(r.log_offset), command,
    failure: { kind: r.failure_kind, message: r.failure_message }, attempts: Number(r.attempts), at: new Date(r.created_at).getTime(),
  };
}

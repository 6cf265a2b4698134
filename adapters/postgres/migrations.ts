// Schema migrations: each is one SQL file in ./migrations (`-- migrate:up`, then
// `-- migrate:down`), listed here in order rather than globbed, so the order is
// code anyone can review. The same files run in the embedded PGlite and on a real
// PostgreSQL. Append new migrations; never edit one that has shipped.

import { readFileSync } from 'node:fs';
import { Migration } from '@mikro-orm/migrations';

/** name (as recorded in the migrations table) -> its file. */
const LIST: ReadonlyArray<readonly [string, string]> = [
  ['Migration0001Journal', '0001_journal.sql'],
  ['Migration0002ReadModels', '0002_read_models.sql'],
  ['Migration0003FleetViews', '0003_fleet_views.sql'],
  ['Migration0004EdgeTables', '0004_edge_tables.sql'],
  ['Migration0005OccupiedCells', '0005_occupied_cells.sql'],
  ['Migration0006AnalyticsByCell', '0006_analytics_by_cell.sql'],
  ['Migration0007DeadLetters', '0007_dead_letters.sql'],
  ['Migration0008Projections', '0008_projections.sql'],
  ['Migration0009CommandIds', '0009_command_ids.sql'],
  ['Migration0010ShardEpochs', '0010_shard_epochs.sql'],
  ['Migration0011SealedAccounts', '0011_sealed_accounts.sql'],
  ['Migration0012AdminAudit', '0012_admin_audit.sql'],
  ['Migration0013ShardHandoff', '0013_shard_handoff.sql'],
];

export interface MigrationSql {
  readonly up: readonly string[];
  readonly down: readonly string[];
}

/**
 * A migration file's statements, each ending with `;` at the end of a line. Comment
 * lines are for readers and are not sent (a `;` in one ends nothing).
 */
export function parseMigration(text: string, file = 'migration'): MigrationSql {
  const parts = text.split(/^-- migrate:(up|down)\s*$/m);
  const sections = new Map<string, string>();
  for (let i = 1; i < parts.length; i += 2) sections.set(parts[i]!, parts[i + 1]!);
  const up = sections.get('up');
  const down = sections.get('down');
  if (up === undefined || down === undefined) throw new Error(`${file}: needs a '-- migrate:up' and a '-- migrate:down' line`);
  return { up: statements(up, file), down: statements(down, file) };
}

function statements(section: string, file: string): string[] {
  const out: string[] = [];
  let current: string[] = [];
  for (const line of section.split('\n')) {
    if (line.trim() === '' || line.trim().startsWith('--')) continue;
    current.push(line);
    if (line.trimEnd().endsWith(';')) {
      out.push(current.join('\n').trimEnd().slice(0, -1));
      current = [];
    }
  }
  if (current.length > 0) throw new Error(`${file}: a statement without its closing ';': ${current.join(' ').slice(0, 80)}`);
  return out;
}

function sqlMigration(name: string, file: string) {
  const sql = parseMigration(readFileSync(new URL(`./migrations/${file}`, import.meta.url), 'utf8'), file);
  return class extends Migration {
    override name = name;
    override up(): void {
      for (const statement of sql.up) this.addSql(statement);
    }
    override down(): void {
      for (const statement of sql.down) this.addSql(statement);
    }
  };
}

export const migrations = LIST.map(([name, file]) => ({ name, class: sqlMigration(name, file) }));

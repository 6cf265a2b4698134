// Small statistics and reporting helpers shared by the benchmarks.

/** A goal of issue 14 a row is held to: `value op goal.value`, written as `text` in the table. */
export interface Goal {
  readonly op: '<=' | '>=' | '<' | '>';
  readonly value: number;
  readonly text: string;
}

export interface Row {
  readonly bench: string;
  readonly case: string;
  /** NaN when not measured in this run (`skipped` says why in the note). */
  readonly value: number;
  readonly unit: string;
  readonly note?: string;
  readonly goal?: Goal;
  /** Not measured in this run (a --quick run skips the slowest): marked `skip`, not counted as met or failed. */
  readonly skipped?: boolean;
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** Whether the row meets its goal; undefined when it has none or was skipped. A value that is not a number fails. */
export function meets(r: Row): boolean | undefined {
  if (!r.goal || r.skipped) return undefined;
  const v = r.value;
  if (!Number.isFinite(v)) return false;
  switch (r.goal.op) {
    case '<=': return v <= r.goal.value;
    case '>=': return v >= r.goal.value;
    case '<': return v < r.goal.value;
    case '>': return v > r.goal.value;
  }
}

function mark(r: Row): string {
  if (r.goal && r.skipped) return 'skip';
  const ok = meets(r);
  return ok === undefined ? '' : ok ? 'pass' : 'FAIL';
}

/** "N of M goals met" (skipped goals are neither, and are counted apart). */
export function goalSummary(rows: readonly Row[]): string {
  const goals = rows.filter((r) => r.goal && !r.skipped);
  const met = goals.filter((r) => meets(r)).length;
  const skipped = rows.filter((r) => r.goal && r.skipped).length;
  return `${met} of ${goals.length} goals met${skipped ? ` (${skipped} not measured in this run)` : ''}`;
}

const cell = (s: string) => s.replaceAll('|', '\\|');

export function markdownTable(rows: readonly Row[]): string {
  const lines = ['| bench | case | value | unit | goal | mark | note |', '| --- | --- | ---: | --- | --- | --- | --- |'];
  for (const r of rows) {
    const value = r.skipped || !Number.isFinite(r.value) ? '—' : r.value.toLocaleString('en-US');
    lines.push(`| ${r.bench} | ${cell(r.case)} | ${value} | ${r.unit} | ${cell(r.goal?.text ?? '')} | ${mark(r)} | ${cell(r.note ?? '')} |`);
  }
  return lines.join('\n');
}

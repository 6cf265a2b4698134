// Small statistics and reporting helpers shared by the benchmarks.

/** A goal of issue 23 a row is held to: `value op goal.value`, written as `text` in the table. */
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
  /** Not run: this service did not answer (--allow-missing). Marked `not run`, and counted apart from the goals. */
  readonly missing?: string;
}

/** A row whose measurement needs a service this run did not have (--allow-missing). */
export function notRun(service: string, row: Omit<Row, 'value' | 'missing' | 'skipped'>): Row {
  return { ...row, value: Number.NaN, missing: service, note: `not run: ${service} did not answer${row.note ? `; ${row.note}` : ''}` };
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** Whether the row meets its goal; undefined when it has none or was skipped. A value that is not a number fails. */
export function meets(r: Row): boolean | undefined {
  if (!r.goal || r.skipped || r.missing) return undefined;
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
  if (r.missing) return 'not run';
  if (r.goal && r.skipped) return 'skip';
  const ok = meets(r);
  return ok === undefined ? '' : ok ? 'pass' : 'FAIL';
}

/** "N of M goals met"; goals not run (a service missing) or skipped (--quick) are neither, and are counted apart, visibly. */
export function goalSummary(rows: readonly Row[]): string {
  const goals = rows.filter((r) => r.goal && !r.skipped && !r.missing);
  const met = goals.filter((r) => meets(r)).length;
  const skipped = rows.filter((r) => r.goal && r.skipped && !r.missing).length;
  const missing = rows.filter((r) => r.goal && r.missing);
  const services = [...new Set(missing.map((r) => r.missing))].join(', ');
  const apart = [
    missing.length ? `${missing.length} not run because ${services} did not answer, not counted` : '',
    skipped ? `${skipped} not measured in this run` : '',
  ].filter(Boolean).join('; ');
  return `${met} of ${goals.length} goals met${apart ? ` (${apart})` : ''}`;
}

const cell = (s: string) => s.replaceAll('|', '\\|');

export function markdownTable(rows: readonly Row[]): string {
  const lines = ['| bench | case | value | unit | goal | mark | note |', '| --- | --- | ---: | --- | --- | --- | --- |'];
  for (const r of rows) {
    const value = r.skipped || r.missing || !Number.isFinite(r.value) ? '—' : r.value.toLocaleString('en-US');
    lines.push(`| ${r.bench} | ${cell(r.case)} | ${value} | ${r.unit} | ${cell(r.goal?.text ?? '')} | ${mark(r)} | ${cell(r.note ?? '')} |`);
  }
  return lines.join('\n');
}

// Small statistics and reporting helpers shared by the benchmarks.

export interface Row {
  readonly bench: string;
  readonly case: string;
  readonly value: number;
  readonly unit: string;
  readonly note?: string;
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function markdownTable(rows: readonly Row[]): string {
  const lines = ['| bench | case | value | unit | note |', '| --- | --- | ---: | --- | --- |'];
  for (const r of rows) lines.push(`| ${r.bench} | ${r.case} | ${r.value.toLocaleString('en-US')} | ${r.unit} | ${r.note ?? ''} |`);
  return lines.join('\n');
}

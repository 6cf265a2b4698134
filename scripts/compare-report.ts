// The compare's verdicts and tables: each figure of issue 25 for greedy and batched side by
// side per load, with the issue's goal beside it and pass or fail. Markdown, so the terminal
// and bench/RESULTS-dispatch.md show the same table.

import type { SimResult } from './sim-metrics.ts';

export interface CompareRun {
  readonly load: string;
  readonly mode: string;
  readonly bookingsPerMin: number;
  /** False when the node does not know DISPATCH_MODE (before batched dispatch lands): it ran greedy whatever was asked. */
  readonly modeApplied: boolean;
  readonly result: SimResult;
}

type Better = 'lower' | 'higher' | 'neither';

interface Figure {
  readonly key: string;
  readonly label: string;
  readonly value: (r: SimResult) => number;
  readonly digits: number;
  /** Which way is better for riders and operators; idle share is neither (at a fixed demand it follows pickup lengths). */
  readonly better: Better;
  /**
   * A difference this small passes the light-load goal whatever 5 % of it is: below what one run can tell apart (a first offer in
   * 10 ms against 15 ms is +50 %), in the figure's unit.
   */
  readonly floor: number;
}

export const FIGURES: readonly Figure[] = [
  { key: 'firstOfferP50', label: 'time to first offer p50, s', value: (r) => r.firstOfferMs.p50 / 1000, digits: 2, better: 'lower', floor: 0.1 },
  { key: 'firstOfferP99', label: 'time to first offer p99, s', value: (r) => r.firstOfferMs.p99 / 1000, digits: 2, better: 'lower', floor: 0.1 },
  { key: 'pickupKmMean', label: 'pickup distance mean, km', value: (r) => r.pickupKm.mean, digits: 2, better: 'lower', floor: 0.05 },
  { key: 'pickupKmP90', label: 'pickup distance p90, km', value: (r) => r.pickupKm.p90, digits: 2, better: 'lower', floor: 0.05 },
  { key: 'pickupSMean', label: 'pickup time mean, simulated s', value: (r) => r.pickupSimS.mean, digits: 0, better: 'lower', floor: 5 },
  { key: 'pickupSP90', label: 'pickup time p90, simulated s', value: (r) => r.pickupSimS.p90, digits: 0, better: 'lower', floor: 5 },
  { key: 'noDriver', label: 'bookings ending no_driver, %', value: (r) => r.noDriverShare * 100, digits: 1, better: 'lower', floor: 0.5 },
  { key: 'tripsPerHour', label: 'trips per driver-hour', value: (r) => r.tripsPerDriverHour, digits: 2, better: 'higher', floor: 0 },
  { key: 'idle', label: 'driver idle share, %', value: (r) => r.idleShare * 100, digits: 1, better: 'neither', floor: 0.5 },
];

export interface Verdict { readonly load: string; readonly figure: string; readonly goal: string; readonly pass: boolean }

/** The issue's goal for a figure at a load, if it sets one: near capacity three figures, light load every figure. */
function goalOf(load: string, f: Figure, greedy: number, batched: number, batchMs: number): { goal: string; pass: boolean } | undefined {
  if (load === 'near') {
    if (f.key === 'pickupKmMean') return { goal: '>= 15 % lower', pass: batched <= greedy * 0.85 };
    if (f.key === 'noDriver') return { goal: 'no higher', pass: batched <= greedy };
    if (f.key === 'firstOfferP99') {
      const bound = (batchMs + 1000) / 1000;
      return { goal: `<= ${bound.toFixed(1)} s (window + 1 s)`, pass: batched <= bound };
    }
    return undefined;
  }
  if (load === 'light') {
    // Must not hurt a quiet city: no more than 5 % worse, whichever way is worse for the figure.
    const slack = Math.max(Math.abs(greedy) * 0.05, f.floor);
    const goal = `within 5 %${f.floor ? ` or ${f.floor}` : ''}`;
    if (f.better === 'lower') return { goal: `${goal} (not worse)`, pass: batched <= greedy + slack };
    if (f.better === 'higher') return { goal: `${goal} (not worse)`, pass: batched >= greedy - slack };
    return { goal, pass: Math.abs(batched - greedy) <= slack };
  }
  return undefined;
}

const shown = (x: number, digits: number) => (Number.isFinite(x) ? x.toFixed(digits) : '-');

function change(greedy: number, batched: number): string {
  if (!Number.isFinite(greedy) || !Number.isFinite(batched)) return '-';
  if (greedy === 0) return batched === 0 ? '0 %' : 'from 0';
  const pct = ((batched - greedy) / Math.abs(greedy)) * 100;
  return `${pct > 0 ? '+' : ''}${pct.toFixed(1)} %`;
}

/** A markdown table of one load (every mode that ran), the goal and pass/fail against greedy for batched. */
export function loadTable(load: string, runs: readonly CompareRun[], batchMs: number): { lines: string[]; verdicts: Verdict[] } {
  const own = runs.filter((r) => r.load === load);
  const greedy = own.find((r) => r.mode === 'greedy');
  const batched = own.find((r) => r.mode === 'batched');
  const others = own.filter((r) => r !== greedy && r !== batched);
  const cols = [greedy, batched, ...others].filter((r): r is CompareRun => r !== undefined);
  const head = `| ${load} (${shown(own[0]?.bookingsPerMin ?? Number.NaN, 0)} bookings/min) | ${cols.map((c) => c.mode).join(' | ')} |` +
    ' batched vs greedy | goal | |';
  const lines = [head, `|---|${cols.map(() => '---:').join('|')}|---:|---|---|`];
  const verdicts: Verdict[] = [];
  for (const f of FIGURES) {
    const g = greedy ? f.value(greedy.result) : Number.NaN;
    const b = batched ? f.value(batched.result) : Number.NaN;
    const goal = greedy && batched ? goalOf(load, f, g, b, batchMs) : undefined;
    if (goal) verdicts.push({ load, figure: f.label, goal: goal.goal, pass: goal.pass });
    const verdict = goal ? (goal.pass ? 'pass' : '**fail**') : '';
    lines.push(`| ${f.label} | ${cols.map((c) => shown(f.value(c.result), f.digits)).join(' | ')} | ${change(g, b)} | ${goal?.goal ?? '-'} | ${verdict} |`);
  }
  const counts = (r: CompareRun) => {
    const c = r.result.counts;
    return `${c.booked}: ${c.completed} done, ${c.noDriver} no_driver, ${c.cancelled} cancelled at stop, ${c.leftOpen} open`;
  };
  lines.push(`| bookings made | ${cols.map(counts).join(' | ')} | | | |`);
  return { lines, verdicts };
}

// The dispatch compare's chart (issue 25): top, the pickup-distance distribution of each mode
// as a CDF, one panel per load; bottom, pickup time against load, every pickup a dot and each
// mode's mean a line. Drawn with bench/png.ts, so no browser or native library is needed.

import { GLYPH_H, Raster, type Rgb } from './png.ts';

export interface PlotRun {
  readonly load: string;
  readonly mode: string;
  readonly bookingsPerMin: number;
  readonly pickupKm: readonly number[];
  readonly pickupSimS: readonly number[];
}

const INK: Rgb = [40, 40, 40];
const GRID: Rgb = [225, 225, 225];
const MODE_COLOUR: Readonly<Record<string, Rgb>> = { greedy: [31, 119, 180], batched: [230, 110, 0] };
const OTHER: Rgb = [120, 120, 120];
const colourOf = (mode: string) => MODE_COLOUR[mode] ?? OTHER;
/** A dot's colour: the mode's, faded toward white, so the mean lines stand out. */
const faded = (c: Rgb): Rgb => [c[0] + (255 - c[0]) * 0.55, c[1] + (255 - c[1]) * 0.55, c[2] + (255 - c[2]) * 0.55].map(Math.round) as never;

interface Box { readonly x: number; readonly y: number; readonly w: number; readonly h: number }
interface Range { readonly lo: number; readonly hi: number }

/** About `count` round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of ten). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  const span = hi - lo || 1;
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Number(t.toFixed(10)));
  return ticks;
}

const label = (v: number) => (Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(v < 1 ? 2 : 1));

/** Frame, grid, ticks and axis titles; returns the data-to-pixel mapping. */
function axes(r: Raster, box: Box, xr: Range, yr: Range, xTitle: string, yTitle: string, title: string, xTicks = 5) {
  const px = (x: number) => box.x + ((x - xr.lo) / (xr.hi - xr.lo || 1)) * box.w;
  const py = (y: number) => box.y + box.h - ((y - yr.lo) / (yr.hi - yr.lo || 1)) * box.h;
  for (const t of niceTicks(xr.lo, xr.hi, xTicks)) {
    r.line(px(t), box.y, px(t), box.y + box.h, GRID);
    r.text(px(t) - Raster.textWidth(label(t)) / 2, box.y + box.h + 6, label(t), INK);
  }
  for (const t of niceTicks(yr.lo, yr.hi)) {
    r.line(box.x, py(t), box.x + box.w, py(t), GRID);
    r.text(box.x - Raster.textWidth(label(t)) - 6, py(t) - GLYPH_H / 2, label(t), INK);
  }
  r.line(box.x, box.y + box.h, box.x + box.w, box.y + box.h, INK);
  r.line(box.x, box.y, box.x, box.y + box.h, INK);
  r.text(box.x + box.w / 2 - Raster.textWidth(xTitle) / 2, box.y + box.h + 20, xTitle, INK);
  r.text(box.x, box.y - 34, title, INK, 2);
  r.text(box.x, box.y - 10, yTitle, INK);
  return { px, py };
}

/** Empirical CDF as a step line. */
function cdf(values: readonly number[]): [number, number][] {
  const sorted = [...values].sort((a, b) => a - b);
  const points: [number, number][] = [[0, 0]];
  sorted.forEach((v, i) => { points.push([v, i / sorted.length], [v, (i + 1) / sorted.length]); });
  return points;
}

function legend(r: Raster, x: number, y: number, modes: readonly string[]): void {
  modes.forEach((m, i) => {
    r.fillRect(x + i * 140, y, 24, 6, colourOf(m));
    r.text(x + i * 140 + 30, y - 1, m, INK);
  });
}

const mean = (v: readonly number[]) => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : Number.NaN);

export function dispatchPlot(runs: readonly PlotRun[], title: string): Raster {
  const W = 1200, H = 870;
  const r = new Raster(W, H);
  const loads = [...new Set(runs.map((x) => x.load))];
  const modes = [...new Set(runs.map((x) => x.mode))];
  r.text(40, 16, title, INK, 2);
  legend(r, 40, 50, modes);

  // Top: a CDF panel per load, one shared distance axis so panels read against each other.
  const maxKm = Math.max(1, ...runs.flatMap((x) => x.pickupKm));
  const panelW = (W - 80 - (loads.length - 1) * 60) / Math.max(1, loads.length);
  loads.forEach((load, i) => {
    const box = { x: 70 + i * (panelW + 60), y: 120, w: panelW - 20, h: 270 };
    const perLoad = runs.filter((x) => x.load === load);
    const rate = perLoad[0]?.bookingsPerMin ?? 0;
    const { px, py } = axes(r, box, { lo: 0, hi: maxKm }, { lo: 0, hi: 1 }, 'PICKUP DISTANCE KM', 'SHARE OF PICKUPS <= X',
      `${load} ${label(rate)}/MIN`);
    for (const run of perLoad) r.polyline(cdf(run.pickupKm).map(([x, y]) => [px(x), py(y)]), colourOf(run.mode), 2);
  });

  // Bottom: pickup time against load, each mode's dots nudged apart so both stay visible.
  const rates = runs.map((x) => x.bookingsPerMin);
  const lo = Math.min(...rates), hi = Math.max(...rates);
  const pad = Math.max(1, (hi - lo) * 0.08);
  const maxS = Math.max(60, ...runs.flatMap((x) => x.pickupSimS));
  const box = { x: 70, y: 500, w: W - 110, h: 310 };
  const { px, py } = axes(r, box, { lo: Math.max(0, lo - pad), hi: hi + pad }, { lo: 0, hi: maxS }, 'BOOKINGS PER MINUTE (LOAD)',
    'PICKUP TIME, SIMULATED S', 'PICKUP TIME AGAINST LOAD: DOTS EACH PICKUP, LINES THE MEAN', 12);
  modes.forEach((mode, m) => {
    const nudge = (m - (modes.length - 1) / 2) * 18;
    const own = runs.filter((x) => x.mode === mode).sort((a, b) => a.bookingsPerMin - b.bookingsPerMin);
    for (const run of own) {
      // A fixed spread of each run's dots across a few pixels (no randomness: the chart is the same for the same results).
      run.pickupSimS.forEach((s, k) => r.fillRect(px(run.bookingsPerMin) + nudge + ((k * 7) % 13) - 6, py(s) - 1, 3, 3, faded(colourOf(mode))));
    }
    const means = own.map((x) => [px(x.bookingsPerMin) + nudge, py(mean(x.pickupSimS))] as [number, number]).filter(([, y]) => Number.isFinite(y));
    r.polyline(means, colourOf(mode), 3);
    for (const [x, y] of means) r.fillRect(x - 4, y - 4, 9, 9, colourOf(mode));
  });
  return r;
}

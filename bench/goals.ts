// Issue 14's goals ("hot paths"), in one place. Each bench attaches the goal to the row
// that measures it; the table prints it beside the value with a pass/FAIL mark.

import type { Goal } from './stats.ts';

const g = (op: Goal['op'], value: number, text: string): Goal => ({ op, value, text });

export const GOALS = {
  nearest100kP50: g('<=', 100, '≤ 100 µs'),
  nearestVsRedis: g('>=', 10, '≥ 10× Redis GEOSEARCH'),
  nearestAgree: g('>=', 1, 'equal to brute force (1)'),
  nearest1mP50: g('<=', 250, '≤ 250 µs'),
  cellUpdates: g('>=', 200_000, '≥ 200k/s'),
  fixesEmbedded: g('>=', 100_000, '≥ 100k/s per node'),
  fixVisibleP99: g('<=', 5, '≤ 5 ms'),
  fixesKafka: g('>=', 30_000, '≥ 30k/s per node'),
  fixKafkaPacedP99: g('<', 50, '< 50 ms at 10k/s'),
  offerAt1000P99: g('<', 50, '< 50 ms'),
  clusterCommands1: g('>=', 5_000, '≥ 5,000/s'),
  clusterPacedP99: g('<', 50, '< 50 ms at 1,000/s'),
  heapPerOnlineDriver: g('<=', 2, '≤ 2 KiB'),
  heapPerConnectedDriver: g('<=', 3.5, '≤ 3.5 KiB'),
  cpuPerCommand3vs1: g('<=', 1.2, '≤ 1.2×'),
} as const satisfies Record<string, Goal>;

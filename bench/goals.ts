// Issue 23's goals ("Capacity per node"), in one place. Each bench attaches the goal to the
// row that measures it; the table prints it beside the value with a pass/FAIL mark, and the
// run's header counts them (bench/run.ts). Every row of issue 23's table has one here.

import type { Goal } from './stats.ts';

const g = (op: Goal['op'], value: number, text: string): Goal => ({ op, value, text });

export const GOALS = {
  nearest100kP50: g('<=', 25, '≤ 25 µs'),
  nearest100kP99: g('<=', 250, '≤ 250 µs'),
  nearestVsRedis: g('>=', 3, '≥ 3× faster than Redis, widening radius (client p50)'),
  nearestVsStatic: g('<=', 3, 'within 3× of the in-process static index'),
  nearest1mP50: g('<=', 25, '≤ 25 µs'),
  nearest1mP99: g('<=', 250, '≤ 250 µs'),
  /** Not a capacity goal: the correctness every fast path keeps (issue 23, "Keep every correctness test"). */
  nearestAgree: g('>=', 1, 'equal to brute force (1)'),
  cellCopies: g('>=', 200_000, '≥ 200k/s'),
  fixesEmbedded: g('>=', 100_000, '≥ 100k/s'),
  fixVisibleP99: g('<=', 5, '≤ 5 ms at half the goal rate'),
  fixesKafka: g('>=', 30_000, '≥ 30k/s per node'),
  fixKafkaP99: g('<', 50, '< 50 ms'),
  socketFixCpu: g('<=', 10, '≤ 10 µs of node CPU per fix'),
  idleCpu: g('<=', 1, '≤ 1% of a core'),
  idleRss: g('<=', 250, '≤ 250 MB'),
  offerAt1000P99: g('<', 50, '< 50 ms at 1,000/s'),
  clusterCommands1: g('>=', 5_000, '≥ 5,000/s'),
  clusterPacedP99: g('<', 50, '< 50 ms at 1,000/s'),
  cpuPerCommand3vs1: g('<=', 1.3, '≤ 1.3×'),
  heapPerOnlineDriver: g('<=', 2, '≤ 2 KiB'),
  heapPerConnectedDriver: g('<=', 4, '≤ 4 KiB'),
  projectionLagP99: g('<=', 1_000, '≤ 1 s at 200 bookings/s'),
  analyticsVsSql: g('<=', 3, '≤ 3×'),
} as const satisfies Record<string, Goal>;

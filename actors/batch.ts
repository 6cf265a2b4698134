// One batch's matching: every booking of a window against every driver any of their
// searches found, costed by today's ranking terms (dispatch-policy's score: distance
// over the booking's radius, rating, idle time, acceptance) and solved as one exact
// assignment (assignment.ts), so each driver is given to at most one booking of the
// batch and the sum of the scores is the least there is. A driver the booking was
// offered already, one not available or in maintenance is not a candidate, as in greedy.

import type { BatchAnswer, Join } from './area.ts';
import { assign } from './assignment.ts';
import type { Candidate } from './cell.ts';
import { rankCandidates, score, type DispatchWeights } from './dispatch-policy.ts';

/**
 * Each join's driver (or none), given what its search found; a join whose search failed
 * (`undefined`) gets no answer, so it stays for the next window.
 */
export function matchBatch(
  joins: readonly Join[], found: readonly (readonly Candidate[] | undefined)[], now: number, weights: DispatchWeights,
): BatchAnswer[] {
  const rows = joins.map((j, i) => {
    const list = found[i];
    return list === undefined ? undefined
      : rankCandidates(list, { bookingId: j.bookingId, radiusKm: j.radiusKm, now, tried: j.tried, weights });
  });
  const column = new Map<string, number>();
  for (const list of rows) for (const c of list ?? []) if (!column.has(c.driverId)) column.set(c.driverId, column.size);
  const cost = rows.map((list, i) => {
    const line = new Array<number>(column.size).fill(Infinity);
    for (const c of list ?? []) line[column.get(c.driverId)!] = score(c, joins[i]!.radiusKm, now, weights);
    return line;
  });
  const chosen = assign(cost);
  const answers: BatchAnswer[] = [];
  rows.forEach((list, i) => {
    if (list === undefined) return;
    const j = chosen[i]!;
    const driver = j >= 0 ? list.find((c) => column.get(c.driverId) === j) : undefined;
    answers.push({ bookingId: joins[i]!.bookingId, search: joins[i]!.search, drivers: driver ? [driver] : [] });
  });
  return answers;
}

// One batch's matching: every booking of a window against every driver any of their
// searches found, costed by today's ranking terms (dispatch-policy's score: distance
// over the booking's radius, rating, idle time, acceptance) and solved as one exact
// assignment (assignment.ts), so each driver is given to at most one booking of the
// batch and the sum of the scores is the least there is. A driver the booking was
// offered already, one not available or in maintenance is not a candidate, as in greedy.
// A booking that did not get its own best candidate is marked `contended` (area.ts keeps
// its windows while contentions come).

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
    // Batching changed this booking's answer: alone it would have got its best candidate.
    const contended = list.length > 0 && driver?.driverId !== list[0]!.driverId;
    answers.push({ bookingId: joins[i]!.bookingId, search: joins[i]!.search, drivers: driver ? [driver] : [], ...(contended ? { contended } : {}) });
  });
  return answers;
}

/** One booking's nearest search at a radius (undefined: the search failed). */
export type BatchSearch = (join: Join, radiusKm: number, k: number) => Promise<readonly Candidate[] | undefined>;

/** Searches past this many candidates are not widened further for drivers the batch gave away. */
const MAX_WIDER_K = 100;

/**
 * A window's answers: each join searched at its radius and all matched at once; then, while
 * some are left with nobody, those are searched at their next wider radius the window's end
 * allows (`Join.wider`: as far as a greedy search would have widened by then) and matched
 * among themselves against the drivers nobody was given. A join whose first search failed
 * gets no answer (it stays for the next window).
 */
export async function closeBatch(
  joins: readonly Join[], search: BatchSearch, closeAt: number, weights: DispatchWeights,
): Promise<BatchAnswer[]> {
  const found = await Promise.all(joins.map((j) => search(j, j.radiusKm, j.k)));
  const answers = new Map(matchBatch(joins, found, closeAt, weights).map((a) => [a.bookingId, a]));
  const radius = joins.map((j) => j.radiusKm);
  for (;;) {
    const given = new Set([...answers.values()].flatMap((a) => a.drivers.map((d) => d.driverId)));
    const left = joins.flatMap((j, i) => {
      const next = answers.get(j.bookingId)?.drivers.length === 0
        ? j.wider?.find((w) => w.radiusKm > radius[i]! && w.from <= closeAt) : undefined;
      return next ? [{ i, join: { ...j, radiusKm: next.radiusKm } }] : [];
    });
    if (left.length === 0) break;
    const more = await Promise.all(left.map(({ join }) => search(join, join.radiusKm, Math.min(MAX_WIDER_K, join.k + given.size))
      .then((list) => list?.filter((c) => !given.has(c.driverId)))));
    for (const a of matchBatch(left.map((l) => l.join), more, closeAt, weights)) {
      answers.set(a.bookingId, answers.get(a.bookingId)?.contended ? { ...a, contended: true } : a);
    }
    for (const { i, join } of left) radius[i] = join.radiusKm;
  }
  return [...answers.values()];
}

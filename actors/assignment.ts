// Minimum-cost assignment (the Hungarian method with potentials, O(n² m) for n rows and
// m ≥ n columns): which driver each booking of a batch is offered. Exact, so two riders a
// block apart with two drivers between them get the two short pickups, not the one short
// and one long pickup that offering each booking its own nearest driver in turn gives.
//
// A cost of Infinity forbids a pair (a driver out of the booking's reach, or already
// tried by it). The solution first matches as many rows as it can, then has the least
// total cost among those matchings: a booking is never left without a driver so that
// another gets a slightly better one.

/** The column each row is assigned (-1: none), for a rows × columns matrix (rectangular either way). */
export function assign(cost: readonly (readonly number[])[]): number[] {
  const rows = cost.length;
  const cols = rows === 0 ? 0 : cost[0]!.length;
  if (rows === 0 || cols === 0) return new Array<number>(rows).fill(-1);
  // The method below needs rows ≤ columns: solve the transpose otherwise.
  if (rows > cols) {
    const transposed = Array.from({ length: cols }, (_, j) => Array.from({ length: rows }, (_, i) => cost[i]![j]!));
    const byCol = assign(transposed);
    const out = new Array<number>(rows).fill(-1);
    byCol.forEach((i, j) => { if (i >= 0) out[i] = j; });
    return out;
  }
  // Forbidden pairs cost more than any matching of allowed ones could (shifted to be ≥ 0),
  // so the solver takes one only when a row has nothing else; those are dropped after.
  let lo = Infinity;
  let hi = -Infinity;
  for (const row of cost) for (const c of row) if (Number.isFinite(c)) { lo = Math.min(lo, c); hi = Math.max(hi, c); }
  if (lo === Infinity) return new Array<number>(rows).fill(-1);
  const forbidden = (hi - lo + 1) * (rows + 1);
  const a = (i: number, j: number) => {
    const c = cost[i]![j]!;
    return Number.isFinite(c) ? c - lo : forbidden;
  };
  // 1-based arrays as in the classic formulation: column 0 is the virtual start.
  const u = new Float64Array(rows + 1);
  const v = new Float64Array(cols + 1);
  const matchOfCol = new Int32Array(cols + 1); // row (1-based) matched to column j; 0: none
  const way = new Int32Array(cols + 1);
  const minv = new Float64Array(cols + 1);
  const used = new Uint8Array(cols + 1);
  for (let i = 1; i <= rows; i++) {
    matchOfCol[0] = i;
    let j0 = 0;
    minv.fill(Infinity);
    used.fill(0);
    do {
      used[j0] = 1;
      const i0 = matchOfCol[j0]!;
      let delta = Infinity;
      let j1 = 0;
      for (let j = 1; j <= cols; j++) {
        if (used[j]) continue;
        const cur = a(i0 - 1, j - 1) - u[i0]! - v[j]!;
        if (cur < minv[j]!) { minv[j] = cur; way[j] = j0; }
        if (minv[j]! < delta) { delta = minv[j]!; j1 = j; }
      }
      for (let j = 0; j <= cols; j++) {
        if (used[j]) {
          const i1 = matchOfCol[j]!;
          u[i1] = u[i1]! + delta;
          v[j] = v[j]! - delta;
        } else minv[j] = minv[j]! - delta;
      }
      j0 = j1;
    } while (matchOfCol[j0] !== 0);
    do {
      const j1 = way[j0]!;
      matchOfCol[j0] = matchOfCol[j1]!;
      j0 = j1;
    } while (j0 !== 0);
  }
  const out = new Array<number>(rows).fill(-1);
  for (let j = 1; j <= cols; j++) {
    const i = matchOfCol[j]!;
    if (i > 0 && Number.isFinite(cost[i - 1]![j - 1]!)) out[i - 1] = j - 1;
  }
  return out;
}

/** Total cost of an assignment (forbidden pairs never appear in one). */
export function totalCost(cost: readonly (readonly number[])[], assignment: readonly number[]): number {
  return assignment.reduce((sum, j, i) => (j >= 0 ? sum + cost[i]![j]! : sum), 0);
}

// A short soak (test/helpers/soak.ts): three cluster nodes under riders, drivers and a
// counter load for about 75 s, with the faults compressed: a node paused with SIGSTOP past
// the session timeout, then a join with a node killed by SIGKILL during its rebalance.
// The invariants (test/helpers/invariants.ts) must all hold, in both dispatch modes. The broker restart is left to
// `npm run soak`, which runs on a broker of its own. Bounds are generous for a loaded
// 2-core machine; nothing asserts a duration.

import test from 'ava';
import { runSoak, summary } from './helpers/soak.ts';

// In both dispatch modes: batched bookings are matched by areas whose owners pause and die
// with the rest (one at a time: two clusters at once would only measure the machine).
for (const mode of ['greedy', 'batched'] as const) {
  test.serial(`${mode}: a short soak: pause, join and SIGKILL mid-rebalance under load break no invariant`, async (t) => {
    t.timeout(480_000);
    const result = await runSoak({
      durationMs: 75_000,
      churnEveryMs: 40_000,
      pauseAtMs: 8_000,
      driversPerNode: 5,
      bookingsPerMinPerNode: 15,
      dispatchMode: mode,
      log: (line) => { if (!line.startsWith('  sim@')) t.log(line); },
    });
    t.log(summary(result));
    t.true(result.acknowledged > 0, 'the load booked rides');
    t.true(result.report.counterCommands > 0, 'the counter load ran');
    t.true(result.faults.some((f) => f.startsWith('SIGSTOP')), 'a node was paused');
    t.true(result.faults.some((f) => / counters read through it after its return, \d+ stale$/.test(f)), 'reads through the returned node were checked');
    t.true(result.faults.some((f) => f.includes('SIGKILL')), 'a node was killed');
    t.deepEqual(result.violations, [], 'no invariant violated');
  });
}

// `npm run soak`: a Jepsen-style soak of a three-node cluster (test/helpers/soak.ts) for
// SOAK_MINUTES (10 by default), under riders and drivers (scripts/simulate.ts, one per
// node) and a counter load, while a node leaves and another joins every 60 s, one node is
// paused with SIGSTOP past the Kafka session timeout, one is killed with SIGKILL right
// after a join starts, and the soak's own Kafka broker (not the shared one) is restarted.
// Then test/helpers/invariants.ts checks: every acknowledged booking readable and valid,
// no driver ever held two live bookings, every counter command applied exactly once, the
// views and analytics equal the journal. Then "embedded node in a crash loop"
// (test/helpers/crash-loop.ts): one embedded node killed with SIGKILL mid-burst and
// restarted on its DATA_DIR 20 times (CRASH_LOOP_ROUNDS), every acknowledged command
// applied exactly once. Then "scaling under load" (test/helpers/scaling.ts): three nodes under
// 25 commands/s while a node joins, one leaves gracefully, every node is restarted in turn and
// one is killed, with the per-event table (failed requests, waits of unmoved and moved shards).
// Exit status 1 on any violation.
//
//   SOAK_MINUTES=3 npm run soak
//   SOAK_SCENARIO=crash-loop npm run soak      (or cluster, or scaling: one scenario only)
//   SOAK_LOG_DIR=/tmp/soak-logs keeps every node's whole log there
//   DISPATCH_MODE=batched npm run soak          the cluster's nodes dispatch in batches

import { crashLoopSummary, runCrashLoop } from '../test/helpers/crash-loop.ts';
import { freshDatabase } from '../test/helpers/services.ts';
import { runSoak, summary } from '../test/helpers/soak.ts';
import { runScaling, scalingTable } from '../test/helpers/scaling.ts';

const minutes = Number(process.env.SOAK_MINUTES || 10);
if (!Number.isFinite(minutes) || minutes < 1) {
  console.error(`SOAK_MINUTES must be a number >= 1 (got ${process.env.SOAK_MINUTES})`);
  process.exit(2);
}
const rounds = Number(process.env.CRASH_LOOP_ROUNDS || 20);
if (!Number.isInteger(rounds) || rounds < 1) {
  console.error(`CRASH_LOOP_ROUNDS must be a whole number >= 1 (got ${process.env.CRASH_LOOP_ROUNDS})`);
  process.exit(2);
}
const scenario = process.env.SOAK_SCENARIO || 'all';
if (!['all', 'cluster', 'crash-loop', 'scaling'].includes(scenario)) {
  console.error(`SOAK_SCENARIO must be cluster, crash-loop or scaling (got ${scenario}); unset, all run`);
  process.exit(2);
}
const durationMs = minutes * 60_000;
const began = Date.now();
const stamp = () => `[${((Date.now() - began) / 1000).toFixed(0).padStart(4)} s]`;
const log = (line: string) => console.log(`${stamp()} ${line}`);
try {
  let violations = 0;
  if (scenario === 'all' || scenario === 'cluster') {
    const result = await runSoak({
      durationMs,
      churnEveryMs: 60_000,
      pauseAtMs: 20_000,
      brokerRestartAtMs: Math.min(90_000, durationMs / 2),
      log,
      logDir: process.env.SOAK_LOG_DIR || undefined,
      dispatchMode: process.env.DISPATCH_MODE === 'batched' ? 'batched' : undefined,
    });
    console.log(`\nsoak of ${minutes} min done in ${((Date.now() - began) / 60_000).toFixed(1)} min\n${summary(result)}\n`);
    violations += result.violations.length;
  }
  if (scenario === 'all' || scenario === 'crash-loop') {
    const db = await freshDatabase();
    try {
      const loop = await runCrashLoop({ databaseUrl: db.url, rounds, tear: true, log });
      console.log(`\nembedded node in a crash loop: ${crashLoopSummary(loop)}\n${loop.violations.map((v) => `  - ${v}`).join('\n')}`);
      violations += loop.violations.length;
    } finally {
      await db.drop();
    }
  }
  if (scenario === 'all' || scenario === 'scaling') {
    const scaling = await runScaling({ rate: 25, quietMs: 8_000, sessionTimeoutMs: 10_000, log });
    const failed = scaling.rows.reduce((n, r) => n + r.failed, 0);
    console.log(`\nscaling under load (25 commands/s, 24 shards, session timeout 10 s):\n${scalingTable(scaling.rows)}\n` +
      `${scaling.acknowledged} commands acknowledged, ${failed} requests failed, ${scaling.wrong.length} counters wrong` +
      `${[...scaling.failures, ...scaling.wrong].map((v) => `\n  - ${v}`).join('')}`);
    violations += failed + scaling.wrong.length + scaling.failures.length;
  }
  process.exit(violations === 0 ? 0 : 1);
} catch (error) {
  console.error(`soak failed: ${error instanceof Error ? error.stack : error}`);
  process.exit(1);
}

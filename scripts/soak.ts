// `npm run soak`: a Jepsen-style soak of a three-node cluster (test/helpers/soak.ts) for
// SOAK_MINUTES (10 by default), under riders and drivers (scripts/simulate.ts, one per
// node) and a counter load, while a node leaves and another joins every 60 s, one node is
// paused with SIGSTOP past the Kafka session timeout, one is killed with SIGKILL right
// after a join starts, and the soak's own Kafka broker (not the shared one) is restarted.
// Then test/helpers/invariants.ts checks: every acknowledged booking readable and valid,
// no driver ever held two live bookings, every counter command applied exactly once, the
// views and analytics equal the journal. Exit status 1 on any violation.
//
//   SOAK_MINUTES=3 npm run soak
//   SOAK_LOG_DIR=/tmp/soak-logs keeps every node's whole log there

import { runSoak, summary } from '../test/helpers/soak.ts';

const minutes = Number(process.env.SOAK_MINUTES || 10);
if (!Number.isFinite(minutes) || minutes < 1) {
  console.error(`SOAK_MINUTES must be a number >= 1 (got ${process.env.SOAK_MINUTES})`);
  process.exit(2);
}
const durationMs = minutes * 60_000;
const began = Date.now();
const stamp = () => `[${((Date.now() - began) / 1000).toFixed(0).padStart(4)} s]`;
try {
  const result = await runSoak({
    durationMs,
    churnEveryMs: 60_000,
    pauseAtMs: 20_000,
    brokerRestartAtMs: Math.min(90_000, durationMs / 2),
    log: (line) => console.log(`${stamp()} ${line}`),
    logDir: process.env.SOAK_LOG_DIR || undefined,
  });
  console.log(`\nsoak of ${minutes} min done in ${((Date.now() - began) / 60_000).toFixed(1)} min\n${summary(result)}`);
  process.exit(result.violations.length === 0 ? 0 : 1);
} catch (error) {
  console.error(`soak failed: ${error instanceof Error ? error.stack : error}`);
  process.exit(1);
}

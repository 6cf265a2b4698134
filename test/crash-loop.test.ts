// An embedded node in a crash loop (test/helpers/crash-loop.ts): killed with SIGKILL
// mid-burst three times, each time with its command log's tails torn as a kill inside a
// write leaves them, and started again on the same DATA_DIR. Every command it acknowledged
// must be applied exactly once. `npm run soak` runs the same with 20 rounds.

import test from 'ava';
import { crashLoopSummary, runCrashLoop } from './helpers/crash-loop.ts';
import { freshDatabase } from './helpers/services.ts';

test('an embedded node killed mid-burst and restarted three times applies every acknowledged command exactly once', async (t) => {
  t.timeout(600_000);
  const db = await freshDatabase();
  t.teardown(() => db.drop());
  const result = await runCrashLoop({ databaseUrl: db.url, rounds: 3, tear: true, log: (line) => t.log(line) });
  t.log(crashLoopSummary(result));
  t.true(result.acknowledged >= 3 * 60, 'each round acknowledged its burst');
  t.true(result.torn >= 3, 'every kill left torn tails (a partition with no record yet has none to tear)');
  t.deepEqual(result.violations, [], 'nothing acknowledged was lost or doubled');
  t.is(result.lost, 0);
  t.is(result.doubled, 0);
});

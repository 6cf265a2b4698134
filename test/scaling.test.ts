// Scaling under load, short form (test/helpers/scaling.ts; the full form runs in `npm run
// soak`): three node processes on Kafka, PostgreSQL and Redis under a steady command load
// while a node joins, one leaves gracefully, every node is restarted in turn and one is
// killed. No request may fail, and every command acknowledged is applied exactly once (one
// whose answer never came, at most once). Waits are printed, never asserted: the machine's
// speed decides them.

import test from 'ava';
import { runScaling, scalingTable } from './helpers/scaling.ts';

test('a join, a graceful leave, a rolling restart and a SIGKILL under load fail no request and lose no command', async (t) => {
  t.timeout(900_000);
  const result = await runScaling({ rate: 20, quietMs: 3_000, sessionTimeoutMs: 6_000, log: (line) => t.log(line) });
  t.log(`\n${scalingTable(result.rows)}`);
  t.log(`${result.acknowledged} commands acknowledged`);
  t.deepEqual(result.failures, [], 'no request failed and every event settled');
  for (const row of result.rows) t.is(row.failed, 0, `${row.event}: failed requests`);
  t.true(result.rows.some((r) => r.moved > 0), 'shards moved');
  t.deepEqual(result.wrong, [], 'every acknowledged command applied exactly once');
});

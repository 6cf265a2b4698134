// Offset commits on PostgreSQL go in batches (adapters/postgres/shard-offsets.ts): the
// commits of one tick, whatever their shards, are one statement.

import test from 'ava';
import { openOrm } from '../adapters/postgres/orm.ts';
import { PostgresShardEpochs } from '../adapters/postgres/shard-epochs.ts';
import { PostgresShardOffsets } from '../adapters/postgres/shard-offsets.ts';
import { ShardFences } from '../runtime/fencing.ts';
import { freshDatabase } from './helpers/services.ts';

test('the commits of 32 shards made in one tick are one statement, each stored', async (t) => {
  const db = await freshDatabase();
  const orm = await openOrm({ url: db.url, poolMax: 2 });
  t.teardown(async () => { await orm.close(true); await db.drop(); });
  const fences = new ShardFences(new PostgresShardEpochs(orm));
  const offsets = new PostgresShardOffsets(orm, 'batch.commands', fences);
  const shards = Array.from({ length: 32 }, (_, i) => i);
  await fences.acquire(shards, 'me');
  const connection = orm.em.getConnection();
  const execute = connection.execute.bind(connection);
  let statements = 0;
  connection.execute = ((...args: Parameters<typeof execute>) => { statements++; return execute(...args); }) as typeof execute;
  await Promise.all(shards.map((s) => offsets.commit(s, 10 + s)));
  connection.execute = execute;
  t.is(statements, 1);
  t.deepEqual([...await offsets.next(shards)].sort(([a], [b]) => a - b), shards.map((s) => [s, 10 + s]));
});

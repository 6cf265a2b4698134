// The ReminderStore, DeadLetterStore, ShardEpochs and ShardOffsets conformance suites (shard-stores.ts)
// against the in-memory stores and PostgreSQL (a database of its own per case).

import { MemoryReminderStore } from '../../adapters/memory/reminders.ts';
import { MemoryDeadLetterStore } from '../../adapters/memory/dead-letters.ts';
import { MemoryShardEpochs } from '../../adapters/memory/shard-epochs.ts';
import { preparedOn } from '../../adapters/postgres/prepared.ts';
import { PostgresReminderStore } from '../../adapters/postgres/reminders.ts';
import { PostgresDeadLetterStore } from '../../adapters/postgres/dead-letters.ts';
import { PostgresShardEpochs } from '../../adapters/postgres/shard-epochs.ts';
import { openOrm, type Orm } from '../../adapters/postgres/orm.ts';
import { freshDatabase } from '../helpers/services.ts';
import { MemoryShardOffsets } from '../../adapters/memory/shard-offsets.ts';
import { PostgresShardOffsets } from '../../adapters/postgres/shard-offsets.ts';
import { ShardFences } from '../../runtime/fencing.ts';
import {
  deadLetterStoreConformance, reminderStoreConformance, shardEpochsConformance, shardOffsetsConformance, type StoreUnderTest,
} from './shard-stores.ts';

const inMemory = <S>(store: S) => async (): Promise<StoreUnderTest<S>> => ({ store, close: async () => undefined });

function onPostgres<S>(make: (orm: Orm) => S) {
  return async (): Promise<StoreUnderTest<S>> => {
    const db = await freshDatabase();
    const orm = await openOrm({ url: db.url, poolMax: 2 });
    return { store: make(orm), close: async () => { await orm.close(true); await db.drop(); } };
  };
}

reminderStoreConformance('memory', async () => inMemory(new MemoryReminderStore())());
reminderStoreConformance('PostgreSQL', onPostgres((orm) => new PostgresReminderStore(orm)));
// As the embedded node writes them: the batch statements prepared (adapters/postgres/prepared.ts).
reminderStoreConformance('PostgreSQL, prepared statements', onPostgres((orm) => new PostgresReminderStore(orm, undefined, { prepared: preparedOn(orm) })));
deadLetterStoreConformance('memory', async () => inMemory(new MemoryDeadLetterStore())());
deadLetterStoreConformance('PostgreSQL', onPostgres((orm) => new PostgresDeadLetterStore(orm)));
shardEpochsConformance('memory', async () => inMemory(new MemoryShardEpochs())());
shardEpochsConformance('PostgreSQL', onPostgres((orm) => new PostgresShardEpochs(orm)));
shardOffsetsConformance('memory', async () => {
  const epochs = new MemoryShardEpochs();
  const fences = new ShardFences(epochs);
  return inMemory({ offsets: new MemoryShardOffsets({ fence: fences, epochs }), epochs, fences })();
});
shardOffsetsConformance('PostgreSQL', onPostgres((orm) => {
  const epochs = new PostgresShardEpochs(orm);
  const fences = new ShardFences(epochs);
  return { offsets: new PostgresShardOffsets(orm, 'conformance.commands', fences), epochs, fences };
}));

// What a store of shard-owned rows starts from: raw SQL on the ORM's connection, and the
// fence that makes its writes conditional on this node still holding the row's shard
// (absent where nothing is fenced: tools, and tests of the store alone).

import { sqlOn, type Orm, type Sql } from './orm.ts';
import type { WriteFence } from '../../runtime/ports.ts';

export abstract class FencedStore {
  protected readonly sql: Sql;
  protected readonly fence: WriteFence | undefined;

  constructor(orm: Orm, fence?: WriteFence) {
    this.sql = sqlOn(orm);
    this.fence = fence;
  }
}

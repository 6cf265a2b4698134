// The region keeps cells' shards (ShardRegion.shardOf): a kept shard must be the placement's
// own answer, first asked or kept, for every cell and past the bound, where the table starts
// over rather than grow with every cell a node ever met.

import test from 'ava';
import { gridDisk, latLngToCell } from 'h3-js';
import { CELL_SHARDS_KEPT } from '../runtime/region.ts';
import { shardOf } from '../runtime/entity.ts';
import { startRig } from './helpers/rig.ts';

test('a cell\'s shard is the placement\'s, first asked or kept, and the table stays within its bound', async (t) => {
  const rig = await startRig({ behaviors: [], shards: 32 });
  t.teardown(() => rig.stop());
  const placement = { shards: 32, placementRes: 4 };
  // More cells than the table keeps: a disc of res-9 cells around one point.
  const cells = gridDisk(latLngToCell(40.7, -74, 9), 150);
  t.true(cells.length > CELL_SHARDS_KEPT);
  const wrong: string[] = [];
  for (let pass = 0; pass < 2; pass++) {
    for (const id of cells) {
      const ref = { kind: 'cell', id };
      if (rig.region.shardOf(ref) !== shardOf(ref, placement)) wrong.push(`${id} (pass ${pass})`);
      // Asked again at once: the kept answer.
      if (rig.region.shardOf({ kind: 'cell', id }) !== shardOf(ref, placement)) wrong.push(`${id} kept (pass ${pass})`);
    }
    t.true(rig.region.cellShardsKept <= CELL_SHARDS_KEPT, `${rig.region.cellShardsKept} kept`);
  }
  t.deepEqual(wrong, []);
  // Other kinds are hashed as ever, never kept: a driver whose id is a cell's is placed as a driver.
  const driver = { kind: 'driver', id: cells[0]! };
  t.is(rig.region.shardOf(driver), shardOf(driver, placement));
});

// npm run projections -- rebuild <name>: empties a read model and projects it again from
// the journal, while nodes keep running (batches are serialised per shard by the same
// advisory locks the nodes take). Needs DATABASE_URL: an embedded node owns its database
// alone, so there use POST /v1/admin/projections/<name>/rebuild instead.

import { openOrm } from '../adapters/postgres/orm.ts';
import { PROJECTIONS, Projector } from '../adapters/postgres/projections.ts';

const [command, name] = process.argv.slice(2);
const names = PROJECTIONS.map((p) => p.name);
if (command !== 'rebuild' || !name || !names.includes(name)) {
  console.error(`usage: npm run projections -- rebuild <${names.join('|')}>`);
  process.exit(2);
}
// Only the database and the shard count matter here (SHARDS as the nodes have it, default 32).
const url = process.env.DATABASE_URL;
const shards = Number(process.env.SHARDS ?? 32);
if (!Number.isInteger(shards) || shards < 1) {
  console.error(`SHARDS must be a positive integer, got ${process.env.SHARDS}`);
  process.exit(2);
}
if (!url) {
  console.error('DATABASE_URL is not set: for an embedded node use POST /v1/admin/projections/<name>/rebuild');
  process.exit(2);
}
const orm = await openOrm({ url, poolMax: 2 });
try {
  const projector = new Projector({ orm, owned: () => [], totalShards: shards });
  const result = await projector.rebuild(name);
  console.log(JSON.stringify({ projection: name, ...result }));
} finally {
  await orm.close(true);
}

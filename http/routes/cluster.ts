// GET /v1/admin/cluster: nodes, the shard -> node map as this node last learnt it,
// and live actors per shard (counted here for the shards this node owns).

import Router from '@koa/router';
import type { ShardHost } from '../../runtime/shard-host.ts';
import type { ShardRegion } from '../../runtime/region.ts';
import { requireRole, type AuthState } from '../authenticate.ts';

export function clusterRoutes(region: ShardRegion, host: ShardHost): Router<AuthState> {
  const router = new Router<AuthState>();
  router.get('/v1/admin/cluster', requireRole('admin'), (ctx) => {
    const { placement, nodes } = region.assignment;
    const actors = host.stats().activeByShard;
    ctx.body = {
      nodeId: region.nodeId,
      nodes,
      shards: Array.from({ length: region.shards }, (_, shard) => ({
        shard,
        node: placement.get(shard) ?? null,
        actors: region.owns(shard) ? actors.get(shard) ?? 0 : null,
      })),
    };
  });
  return router;
}

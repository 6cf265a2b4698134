// A vehicle type named by a request must be one the live pricing policy defines: a 400
// `unknown_vehicle_type` naming the field otherwise (a quote or booking for a type with no
// tariff would have no price). Looked up as an own property (actors/pricing.ts, tariffOf).

import { tariffOf, vehicleTypes } from '../actors/pricing.ts';
import type { Edge } from './edge.ts';
import { pricingPolicy } from './edge.ts';
import { HttpError } from './errors.ts';

/** Throws unless each named type (undefined: not given) has a tariff; `path` names its field (`body.vehicleType` ...). */
export async function requireVehicleTypes(edge: Edge, named: readonly { path: string; type: string | undefined }[]): Promise<void> {
  const given = named.filter((x): x is { path: string; type: string } => x.type !== undefined);
  if (given.length === 0) return;
  const policy = await pricingPolicy(edge);
  const unknown = given.filter((x) => !tariffOf(policy, x.type));
  if (unknown.length === 0) return;
  const why = `must be one of ${vehicleTypes(policy).join(', ')}`;
  throw new HttpError(400, 'unknown_vehicle_type', `${unknown[0]!.path}: ${why}`, unknown.map((x) => ({ path: x.path, message: why })));
}

/** The same for one field. */
export const requireVehicleType = (edge: Edge, path: string, type: string | undefined) => requireVehicleTypes(edge, [{ path, type }]);

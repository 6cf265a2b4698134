// Which vehicle type a driver may go online with. Fares follow the vehicle type, so a
// driver claiming a type it does not drive takes higher fares (and a type pricing does not
// define gave rides with no price). The driver's actor knows its profile, not its
// vehicle's type, so the gateway looks both up here and the actor checks again what it can
// (actors/driver.ts, onlineRefusal):
//
//   1. the type must be one pricing defines;
//   2. a driver with a vehicle (profile `vehicleId`) goes online with that vehicle's type;
//   3. a driver without one, with a type an admin allowed it (profile `vehicleTypes`);
//   4. a driver with neither cannot go online, except on a development node (development
//      tokens: anyone may be an admin there and allow itself anything).

import type { DriverProfile } from '../actors/driver.ts';
import { tariffOf, vehicleTypes } from '../actors/pricing.ts';
import type { Edge } from './edge.ts';
import { pricingPolicy } from './edge.ts';

export type OnlineCheck =
  | { readonly ok: true; readonly vehicleId?: string }
  | { readonly ok: false; readonly code: 'unknown_vehicle_type' | 'vehicle_type_not_allowed'; readonly message: string };

const refuse = (code: 'unknown_vehicle_type' | 'vehicle_type_not_allowed', message: string): OnlineCheck =>
  ({ ok: false, code, message: `vehicleType: ${message}` });

export async function checkOnline(edge: Edge, driverId: string, vehicleType: string): Promise<OnlineCheck> {
  const policy = await pricingPolicy(edge);
  if (!tariffOf(policy, vehicleType)) return refuse('unknown_vehicle_type', `must be one of ${vehicleTypes(policy).join(', ')}`);
  const driver = await edge.region.ask<{ profile?: DriverProfile } | null>({ kind: 'driver', id: driverId }, { type: 'get' });
  const profile = driver?.profile;
  // A deactivated or unapproved driver is refused by its actor, for that reason first.
  if (profile && (!profile.active || profile.approval === 'pending')) return { ok: true };
  if (profile?.vehicleId) {
    const vehicle = await edge.region.ask<{ type: string } | null>({ kind: 'vehicle', id: profile.vehicleId }, { type: 'get' });
    if (!vehicle) {
      return refuse('vehicle_type_not_allowed', `this driver's vehicle ${profile.vehicleId} is not registered; an admin assigns another`);
    }
    if (vehicle.type !== vehicleType) {
      return refuse('vehicle_type_not_allowed', `this driver's vehicle ${profile.vehicleId} is ${vehicle.type}, not ${vehicleType}`);
    }
    return { ok: true, vehicleId: profile.vehicleId };
  }
  const allowed = profile?.vehicleTypes ?? [];
  if (allowed.length > 0) {
    return allowed.includes(vehicleType) ? { ok: true }
      : refuse('vehicle_type_not_allowed', `this driver may go online as ${allowed.join(', ')} (allowed by an admin), not ${vehicleType}`);
  }
  if (edge.devTokens) return { ok: true };
  return refuse('vehicle_type_not_allowed', 'this driver has no vehicle and no vehicle type an admin allowed (vehicleId or vehicleTypes)');
}

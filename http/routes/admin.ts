// Admin: vehicles and their maintenance windows, drivers, pricing, analytics.
// Writes go to the entity actors; lists come from the read models.

import { randomUUID } from 'node:crypto';
import { randomId } from '../../runtime/random-id.ts';
import { z } from 'zod';
import { driverView, type DriverState } from '../../actors/driver.ts';
import { Api } from '../api.ts';
import type { Edge } from '../edge.ts';
import { pricingPolicy } from '../edge.ts';
import { HttpError } from '../errors.ts';
import { DriverId, MaintenanceId, VehicleId } from '../ids.ts';
import {
  Analytics, AnalyticsQuery, Driver, DriverCreate, DriverDetail, DriverList, DriverPatch, DriverStatus, MaintenanceCreate, MaintenanceList,
  PricingPolicy, PROJECTION_LAG, Vehicle, VehicleCreate, VehiclePatch,
} from '../schemas.ts';
import { outcome } from '../rejections.ts';
import { fieldsSet } from '../audit.ts';
import { revealFields, sealFields } from '../../runtime/personal-data.ts';
import { requireVehicleType, requireVehicleTypes } from '../vehicle-types.ts';

/** A driver as the actor answers it and driver_view lists it: what admins see, once opened. */
type DriverView = ReturnType<typeof driverView>;

/** Values an audit summary may show (http/audit.ts): types, counts, ids and flags, never names, phones, plates or free text. */
const SHOWN = ['type', 'capacity', 'driverId', 'vehicleId', 'vehicleTypes', 'active'];

export function adminRoutes(edge: Edge): Api {
  const api = new Api({ audit: edge.audit });
  const admin = ['admin'] as const;
  const vehicle = (id: string) => ({ kind: 'vehicle', id });
  const driver = (id: string) => ({ kind: 'driver', id });
  // Path ids in their formats (http/ids.ts): a malformed one is answered 404 before the handler runs, as an unknown one is.
  const vehicleParams = z.object({ id: VehicleId });
  const windowParams = z.object({ id: VehicleId, mid: MaintenanceId });
  const driverParams = z.object({ id: DriverId });
  // A driver's name and phone enter the actor sealed for that driver and are opened only here, for admins;
  // a value that does not open shows as null, named in the driver's `unreadable`.
  const seal = <T extends object>(id: string, profile: T) => sealFields(edge.personalData, profile, { scope: 'driver', id });
  const reveal = <T extends { id: string }>(view: T) => revealFields(edge.personalData, view, { scope: 'driver', id: view.id });
  const checkType = (type: string | undefined) => requireVehicleType(edge, 'body.type', type);
  /** The vehicle types an admin allows a driver without a vehicle (http/online.ts): each one pricing defines. */
  const checkAllowed = (types: readonly string[] | undefined) =>
    requireVehicleTypes(edge, (types ?? []).map((type, i) => ({ path: `body.vehicleTypes.${i}`, type })));

  // A driver's vehicleId names a vehicle that exists (one retired later leaves the driver pointing at nothing, as a deletion does).
  const checkVehicle = async (id: string | undefined) => {
    if (id === undefined || await edge.region.ask(vehicle(id), { type: 'get' })) return;
    const message = `no vehicle ${id}; register it first (POST /v1/admin/vehicles)`;
    throw new HttpError(400, 'invalid_request', `body.vehicleId: ${message}`, [{ path: 'body.vehicleId', message }]);
  };

  api.add({
    method: 'post', path: '/v1/admin/vehicles', tag: 'admin', summary: 'Register a vehicle', roles: admin, body: VehicleCreate,
    response: Vehicle, status: 201,
    audit: ({ body }, made?: { id: string }) => ({ target: made && `vehicle:${made.id}`, summary: `register vehicle: ${fieldsSet(body, SHOWN)}` }),
    handler: async (_ctx, { body }) => {
      await checkType(body.type);
      return outcome(await edge.region.request(vehicle(randomId('veh_')), {
        type: 'create', plate: body.plate, vehicleType: body.type, capacity: body.capacity, driverId: body.driverId,
      }));
    },
  });
  api.add({
    method: 'get', path: '/v1/admin/vehicles', tag: 'admin', summary: 'Vehicles', roles: admin,
    response: z.object({ items: z.array(Vehicle) }), responseHeaders: [PROJECTION_LAG],
    handler: async (ctx) => { lagHeader(ctx, edge, 'vehicles'); return { items: await edge.readModels.listVehicles() }; },
  });
  api.add({
    method: 'get', path: '/v1/admin/vehicles/:id', tag: 'admin', summary: 'A vehicle', roles: admin, params: vehicleParams,
    response: Vehicle,
    handler: async (_ctx, { params }) => {
      const view = await edge.region.ask(vehicle(params.id), { type: 'get' });
      if (!view) throw new HttpError(404, 'not_found', `no vehicle ${params.id}`);
      return view;
    },
  });
  api.add({
    method: 'patch', path: '/v1/admin/vehicles/:id', tag: 'admin', summary: 'Change a vehicle',
    roles: admin, params: vehicleParams, body: VehiclePatch, response: Vehicle,
    audit: ({ params, body }) => ({ target: `vehicle:${params.id}`, summary: `change vehicle: ${fieldsSet(body, SHOWN)}` }),
    handler: async (_ctx, { params, body }) => {
      await checkType(body.type);
      const { type, ...rest } = body;
      return outcome(await edge.region.request(
        vehicle(params.id), { type: 'update', patch: { ...rest, ...(type ? { vehicleType: type } : {}) } },
      ));
    },
  });
  api.add({
    method: 'delete', path: '/v1/admin/vehicles/:id', tag: 'admin', summary: 'Retire a vehicle', roles: admin, params: vehicleParams,
    status: 204, audit: ({ params }) => ({ target: `vehicle:${params.id}`, summary: 'retire vehicle' }),
    handler: async (_ctx, { params }) => { outcome(await edge.region.request(vehicle(params.id), { type: 'delete' })); return undefined; },
  });
  api.add({
    method: 'post', path: '/v1/admin/vehicles/:id/maintenance', tag: 'admin',
    summary: 'A maintenance window: the vehicle is not dispatched during it',
    roles: admin, body: MaintenanceCreate, params: vehicleParams, response: Vehicle, status: 201,
    audit: ({ params, body }) => ({ target: `vehicle:${params.id}`, summary: `add maintenance window ${body.from} to ${body.to}, reason set` }),
    handler: async (_ctx, { params, body }) => outcome(await edge.region.request(vehicle(params.id), {
      type: 'maintenance.add', id: `mw_${randomUUID().slice(0, 12)}`,
      from: Date.parse(body.from), to: Date.parse(body.to), reason: body.reason,
    })),
  });
  api.add({
    method: 'get', path: '/v1/admin/vehicles/:id/maintenance', tag: 'admin', summary: 'Maintenance windows of a vehicle', roles: admin,
    params: vehicleParams, response: MaintenanceList,
    handler: async (_ctx, { params }) => {
      const view = await edge.region.ask<{ maintenance: unknown[] } | null>(vehicle(params.id), { type: 'get' });
      if (!view) throw new HttpError(404, 'not_found', `no vehicle ${params.id}`);
      return { items: view.maintenance };
    },
  });
  api.add({
    method: 'delete', path: '/v1/admin/vehicles/:id/maintenance/:mid', tag: 'admin', summary: 'Remove a maintenance window',
    roles: admin, params: windowParams, status: 204,
    audit: ({ params }) => ({ target: `vehicle:${params.id}`, summary: `remove maintenance window ${params.mid}` }),
    handler: async (_ctx, { params }) => {
      outcome(await edge.region.request(vehicle(params.id), { type: 'maintenance.remove', id: params.mid }));
      return undefined;
    },
  });

  api.add({
    method: 'post', path: '/v1/admin/drivers', tag: 'admin', roles: admin, body: DriverCreate, response: Driver, status: 201, errors: [409],
    summary: 'Add a driver (approved from the start); an id that is taken, by any driver, is 409 conflict',
    audit: ({ body }, made?: { id: string }) => {
      const { id, ...profile } = body;
      const target = made?.id ?? id;
      return { target: target && `driver:${target}`, summary: `add driver: ${fieldsSet(profile, SHOWN)}` };
    },
    handler: async (_ctx, { body }) => {
      await checkAllowed(body.vehicleTypes);
      await checkVehicle(body.vehicleId);
      const { id: chosen, ...profile } = body;
      const id = chosen ?? randomId('drv_');
      // A driver an admin adds is approved from the start; a self-registered one only by /approve (a create never changes a driver).
      return reveal(outcome(await edge.region.request(driver(id), {
        type: 'create', profile: seal(id, { ...profile, approval: 'approved' as const }),
      })) as DriverView);
    },
  });
  api.add({
    method: 'get', path: '/v1/admin/drivers', tag: 'admin', summary: 'Drivers', roles: admin,
    query: z.object({ status: DriverStatus.optional() }).strict(), response: DriverList, responseHeaders: [PROJECTION_LAG],
    handler: async (ctx, { query }) => {
      lagHeader(ctx, edge, 'drivers');
      return { items: (await edge.readModels.listDrivers(query.status)).map((row) => reveal(row as DriverView)) };
    },
  });
  api.add({
    method: 'get', path: '/v1/admin/drivers/:id', tag: 'admin', summary: 'A driver', roles: admin, params: driverParams, response: DriverDetail,
    handler: async (_ctx, { params }) => {
      const s = await edge.region.ask<(DriverState & { exists: boolean }) | null>(driver(params.id), { type: 'get' });
      if (!s?.exists) throw new HttpError(404, 'not_found', `no driver ${params.id}`);
      return {
        ...reveal(driverView(params.id, s)), ...(s.bookingId ? { bookingId: s.bookingId } : {}),
        ...(s.fix ? { location: { lat: s.fix.lat, lng: s.fix.lng, at: new Date(s.fix.at).toISOString() } } : {}),
      };
    },
  });
  api.add({
    method: 'patch', path: '/v1/admin/drivers/:id', tag: 'admin', summary: 'Change a driver (deactivate with active: false)',
    roles: admin, params: driverParams, body: DriverPatch, response: Driver,
    audit: ({ params, body }) => ({
      target: `driver:${params.id}`,
      summary: `${body.active === false ? 'deactivate' : body.active ? 'activate' : 'change'} driver: ${fieldsSet(body, SHOWN)}`,
    }),
    handler: async (_ctx, { params, body }) => {
      await checkAllowed(body.vehicleTypes);
      await checkVehicle(body.vehicleId);
      return reveal(outcome(await edge.region.request(driver(params.id), { type: 'profile.update', profile: seal(params.id, body) })) as DriverView);
    },
  });
  api.add({
    method: 'post', path: '/v1/admin/drivers/:id/approve', tag: 'admin',
    summary: 'Approve a self-registered driver so it can go online (idempotent)',
    roles: admin, params: driverParams, response: Driver, audit: ({ params }) => ({ target: `driver:${params.id}`, summary: 'approve driver' }),
    handler: async (_ctx, { params }) => reveal(outcome(await edge.region.request(driver(params.id), { type: 'approve' })) as DriverView),
  });

  api.add({
    method: 'get', path: '/v1/admin/pricing', tag: 'admin', summary: 'Pricing per vehicle type and the surge cap', roles: admin,
    response: PricingPolicy,
    handler: async () => { const p = await pricingPolicy(edge); return { tariffs: p.tariffs, surgeCap: p.surgeCap }; },
  });
  api.add({
    method: 'put', path: '/v1/admin/pricing', tag: 'admin', summary: 'Replace pricing (reaches every node within seconds)',
    roles: admin, body: PricingPolicy, response: PricingPolicy,
    audit: ({ body }) => ({ target: 'pricing', summary: `replace pricing: tariffs for ${Object.keys(body.tariffs).join(', ')}; surgeCap=${body.surgeCap}` }),
    handler: async (_ctx, { body }) => { await edge.settings.put('pricing', body); return body; },
  });
  api.add({
    method: 'get', path: '/v1/admin/analytics', tag: 'admin', summary: 'Aggregates per hour or per pickup cell', roles: admin,
    query: AnalyticsQuery, response: Analytics, responseHeaders: [PROJECTION_LAG],
    handler: async (ctx, { query }) => {
      lagHeader(ctx, edge, 'analytics');
      const from = Date.parse(query.from);
      const to = Date.parse(query.to);
      if (!(to > from)) throw new HttpError(400, 'invalid_request', 'to must be after from');
      if (to - from > 93 * 86_400_000) throw new HttpError(400, 'invalid_request', 'at most 93 days at a time');
      return edge.readModels.analytics(from, to, query.groupBy);
    },
  });
  api.add({
    method: 'post', path: '/v1/admin/projections/:name/rebuild', tag: 'admin',
    summary: 'Rebuild a read model from the journal while the node serves (its view is emptied, then projected again from the start)',
    roles: admin, params: z.object({ name: z.enum(['bookings', 'analytics', 'drivers', 'vehicles']) }),
    response: z.object({ projection: z.string(), rows: z.number(), ms: z.number() }),
    audit: ({ params }) => ({ target: `projection:${params.name}`, summary: 'rebuild read model from the journal' }),
    handler: async (_ctx, { params }) => ({ projection: params.name, ...(await edge.projector.rebuild(params.name)) }),
  });
  return api;
}

/** How far behind the journal the answer may be: the lag of the projections it reads, on this node's shards. */
export function lagHeader(ctx: { set(name: string, value: string): void }, edge: Edge, ...projections: string[]): void {
  ctx.set('X-Projection-Lag-Ms', String(Math.round(edge.projector.lagMs(...projections))));
}

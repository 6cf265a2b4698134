// A vehicle: plate, type, capacity, the driver who drives it, and maintenance
// windows. The driver actor gets the windows of its vehicle, so a driver whose
// vehicle is in the shop is never offered (the cell skips it and the driver
// refuses offers).

import type { Behavior, Effect, EntityRef, Outcome } from './behavior.ts';

export interface Window {
  readonly id: string;
  readonly from: number;
  readonly to: number;
  readonly reason: string;
}

export interface VehicleState {
  readonly exists: boolean;
  readonly deleted: boolean;
  readonly plate: string;
  readonly vehicleType: string;
  readonly capacity: number;
  readonly driverId?: string;
  readonly maintenance: readonly Window[];
}

export interface VehicleFields {
  readonly plate: string;
  readonly vehicleType: string;
  readonly capacity: number;
  readonly driverId?: string | null;
}

export type VehicleMessage =
  | ({ readonly type: 'create' } & VehicleFields)
  | { readonly type: 'update'; readonly patch: Partial<VehicleFields> }
  | { readonly type: 'delete' }
  | ({ readonly type: 'maintenance.add' } & Window)
  | { readonly type: 'maintenance.remove'; readonly id: string };

export type VehicleEvent =
  | ({ readonly type: 'created' } & VehicleFields)
  | { readonly type: 'updated'; readonly patch: Partial<VehicleFields> }
  | { readonly type: 'deleted' }
  | ({ readonly type: 'maintenance.added' } & Window)
  | { readonly type: 'maintenance.removed'; readonly id: string };

const driver = (id: string): EntityRef => ({ kind: 'driver', id });

export function applyVehicle(s: VehicleState, e: VehicleEvent): VehicleState {
  switch (e.type) {
    case 'created': return { ...s, exists: true, deleted: false, plate: e.plate, vehicleType: e.vehicleType, capacity: e.capacity, driverId: e.driverId ?? undefined };
    case 'updated': {
      const p = e.patch;
      return {
        ...s, plate: p.plate ?? s.plate, vehicleType: p.vehicleType ?? s.vehicleType, capacity: p.capacity ?? s.capacity,
        driverId: p.driverId === null ? undefined : p.driverId ?? s.driverId,
      };
    }
    case 'deleted': return { ...s, deleted: true, driverId: undefined };
    case 'maintenance.added': return { ...s, maintenance: [...s.maintenance, { id: e.id, from: e.from, to: e.to, reason: e.reason }] };
    case 'maintenance.removed': return { ...s, maintenance: s.maintenance.filter((w) => w.id !== e.id) };
  }
}

export function vehicleView(id: string, s: VehicleState) {
  return {
    id, plate: s.plate, type: s.vehicleType, capacity: s.capacity, ...(s.driverId ? { driverId: s.driverId } : {}),
    maintenance: s.maintenance.map((w) => ({ id: w.id, from: new Date(w.from).toISOString(), to: new Date(w.to).toISOString(), reason: w.reason })),
  };
}

export function makeVehicleBehavior(): Behavior<VehicleState, VehicleMessage, VehicleEvent, { type: 'get' }, unknown> {
  function result(id: string, s: VehicleState, events: VehicleEvent[]): Outcome<VehicleState, VehicleEvent> {
    const next = events.reduce(applyVehicle, s);
    const effects: Effect[] = [];
    const windows = (v: VehicleState) => v.maintenance.map((w) => ({ from: w.from, to: w.to }));
    // The drivers concerned learn the windows that now apply to them.
    if (s.driverId && s.driverId !== next.driverId) effects.push({ type: 'tell', to: driver(s.driverId), message: { type: 'maintenance.set', windows: [] } });
    if (next.driverId && (next.driverId !== s.driverId || next.maintenance !== s.maintenance)) {
      effects.push({ type: 'tell', to: driver(next.driverId), message: { type: 'maintenance.set', windows: windows(next) } });
    }
    effects.push({ type: 'publish', topic: 'vehicle', event: { type: `vehicle.${events[0]!.type}`, vehicle: vehicleView(id, next), deleted: next.deleted } });
    return { state: next, events, effects, reply: vehicleView(id, next) };
  }
  const refuse = (s: VehicleState, code: string, message: string): Outcome<VehicleState, VehicleEvent> => ({ state: s, events: [], effects: [], rejection: { code, message } });

  return {
    kind: 'vehicle',
    eventVersion: 1,
    initial: () => ({ exists: false, deleted: false, plate: '', vehicleType: '', capacity: 0, maintenance: [] }),
    handle(s, m, ctx) {
      const id = ctx.self.id;
      if (m.type === 'create') {
        if (s.exists && !s.deleted) return refuse(s, 'conflict', `vehicle ${id} already exists`);
        const { type: _t, ...fields } = m;
        return result(id, s, [{ ...fields, type: 'created' }]);
      }
      if (!s.exists || s.deleted) return refuse(s, 'not_found', `no vehicle ${id}`);
      switch (m.type) {
        case 'update': return result(id, s, [{ type: 'updated', patch: m.patch }]);
        case 'delete': return result(id, s, [{ type: 'deleted' }]);
        case 'maintenance.add':
          if (!(m.to > m.from)) return refuse(s, 'invalid_window', 'a maintenance window must end after it starts');
          if (s.maintenance.some((w) => w.id === m.id)) return { state: s, events: [], effects: [], reply: vehicleView(id, s) };
          return result(id, s, [{ type: 'maintenance.added', id: m.id, from: m.from, to: m.to, reason: m.reason }]);
        case 'maintenance.remove':
          if (!s.maintenance.some((w) => w.id === m.id)) return refuse(s, 'not_found', `no maintenance window ${m.id}`);
          return result(id, s, [{ type: 'maintenance.removed', id: m.id }]);
      }
    },
    apply: applyVehicle,
    query: (s, _q, ctx) => (s.exists && !s.deleted ? vehicleView(ctx.self.id, s) : null),
  };
}

// A vehicle: plate, type, capacity, the driver who drives it, and maintenance
// windows. The driver actor gets the windows of its vehicle, so a driver whose
// vehicle is in the shop is never offered (the cell skips it and the driver
// refuses offers).

import { rejected, unchanged, type Behavior, type Effect, type EntityRef, type Outcome } from './behavior.ts';
import type { VehicleRejection } from './rejections.ts';

export type { VehicleRejection } from './rejections.ts';

/** When a vehicle is in the shop, [from, to) in ms since the epoch: what its driver and the cells know of it. */
export interface MaintenanceWindow {
  readonly from: number;
  readonly to: number;
}

/** A maintenance window as the vehicle records it: with the id an admin removes it by, and why. */
export interface VehicleMaintenanceWindow extends MaintenanceWindow {
  readonly id: string;
  readonly reason: string;
}

/** Whether any of the windows covers `at`. */
export function inMaintenance(windows: readonly MaintenanceWindow[], at: number): boolean {
  return windows.some((w) => w.from <= at && at < w.to);
}

export interface VehicleState {
  readonly exists: boolean;
  readonly deleted: boolean;
  readonly plate: string;
  readonly vehicleType: string;
  readonly capacity: number;
  readonly driverId?: string;
  readonly maintenance: readonly VehicleMaintenanceWindow[];
}

export interface VehicleFields {
  readonly plate: string;
  readonly vehicleType: string;
  readonly capacity: number;
  readonly driverId?: string | null;
}

/**
 * A vehicle's commands and what each carries. Every accepted command is recorded as the
 * event of the same name in the past tense with the same payload, so the payloads are
 * written once, here, and both unions below are derived from them.
 */
interface VehiclePayloads {
  readonly create: VehicleFields;
  readonly update: { readonly patch: Partial<VehicleFields> };
  readonly delete: Record<never, never>;
  readonly 'maintenance.add': VehicleMaintenanceWindow;
  readonly 'maintenance.remove': { readonly id: string };
}

/** The event each command becomes. */
interface VehiclePastTense {
  readonly create: 'created';
  readonly update: 'updated';
  readonly delete: 'deleted';
  readonly 'maintenance.add': 'maintenance.added';
  readonly 'maintenance.remove': 'maintenance.removed';
}

type VehicleCommand = keyof VehiclePayloads;

export type VehicleMessage = { [C in VehicleCommand]: { readonly type: C } & VehiclePayloads[C] }[VehicleCommand];
export type VehicleEvent = { [C in VehicleCommand]: { readonly type: VehiclePastTense[C] } & VehiclePayloads[C] }[VehicleCommand];

const driver = (id: string): EntityRef => ({ kind: 'driver', id });

export function applyVehicle(s: VehicleState, e: VehicleEvent): VehicleState {
  switch (e.type) {
    case 'created':
      return {
        ...s, exists: true, deleted: false, plate: e.plate, vehicleType: e.vehicleType, capacity: e.capacity, driverId: e.driverId ?? undefined,
      };
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
    maintenance: s.maintenance.map((w) => ({
      id: w.id, from: new Date(w.from).toISOString(), to: new Date(w.to).toISOString(), reason: w.reason,
    })),
  };
}

type VehicleOutcome = Outcome<VehicleState, VehicleEvent, VehicleRejection>;

export function makeVehicleBehavior(): Behavior<VehicleState, VehicleMessage, VehicleEvent, { type: 'get' }, unknown, VehicleRejection> {
  function result(id: string, s: VehicleState, events: VehicleEvent[]): VehicleOutcome {
    const next = events.reduce(applyVehicle, s);
    const effects: Effect[] = [];
    const windows = (v: VehicleState) => v.maintenance.map((w) => ({ from: w.from, to: w.to }));
    // The drivers concerned learn the windows that now apply to them.
    if (s.driverId && s.driverId !== next.driverId) {
      effects.push({ type: 'tell', to: driver(s.driverId), message: { type: 'maintenance.set', windows: [] } });
    }
    if (next.driverId && (next.driverId !== s.driverId || next.maintenance !== s.maintenance)) {
      effects.push({ type: 'tell', to: driver(next.driverId), message: { type: 'maintenance.set', windows: windows(next) } });
    }
    effects.push({
      type: 'publish', topic: 'vehicle', event: { type: `vehicle.${events[0]!.type}`, vehicle: vehicleView(id, next), deleted: next.deleted },
    });
    return { state: next, events, effects, reply: vehicleView(id, next) };
  }

  return {
    kind: 'vehicle',
    eventVersion: 1,
    initial: () => ({ exists: false, deleted: false, plate: '', vehicleType: '', capacity: 0, maintenance: [] }),
    handle(s, m, ctx): VehicleOutcome {
      const id = ctx.self.id;
      if (m.type === 'create') {
        if (s.exists && !s.deleted) return rejected(s, 'conflict', `vehicle ${id} already exists`);
        const { type: _t, ...fields } = m;
        return result(id, s, [{ ...fields, type: 'created' }]);
      }
      if (!s.exists || s.deleted) return rejected(s, 'not_found', `no vehicle ${id}`);
      switch (m.type) {
        case 'update': return result(id, s, [{ type: 'updated', patch: m.patch }]);
        case 'delete': return result(id, s, [{ type: 'deleted' }]);
        case 'maintenance.add':
          if (!(m.to > m.from)) return rejected(s, 'invalid_window', 'a maintenance window must end after it starts');
          if (s.maintenance.some((w) => w.id === m.id)) return unchanged(s, vehicleView(id, s));
          return result(id, s, [{ type: 'maintenance.added', id: m.id, from: m.from, to: m.to, reason: m.reason }]);
        case 'maintenance.remove':
          if (!s.maintenance.some((w) => w.id === m.id)) return rejected(s, 'not_found', `no maintenance window ${m.id}`);
          return result(id, s, [{ type: 'maintenance.removed', id: m.id }]);
      }
    },
    apply: applyVehicle,
    query: (s, _q, ctx) => (s.exists && !s.deleted ? vehicleView(ctx.self.id, s) : null),
  };
}

// Who may see a booking, for every way of reading one (REST, WebSocket subscriptions).

import type { Principal } from './auth.ts';

/** Who may see a booking: its rider, its driver, an admin. */
export function mayRead(p: Principal, booking: { riderId: string; driverId?: string }): boolean {
  return p.role === 'admin' || (p.role === 'rider' && booking.riderId === p.sub) || (p.role === 'driver' && booking.driverId === p.sub);
}

// The refusals each entity kind can answer a command with: closed unions, so a
// reducer cannot refuse with a code the edge does not know, and the edge's one
// table of HTTP statuses (http/rejections.ts) must name every one of them.
// docs/API.md lists each code with its status and meaning.

/** Refusals of a booking's commands (create, cancel, rate, trip.*, offer.accepted). */
export type BookingRejection =
  /** A command for a booking nobody created. */
  | 'not_found'
  /** A create under this booking's id from another request (a quote books once). */
  | 'already_created'
  /** An acceptance after the offer ended (timed out, cancelled, given to someone else). */
  | 'offer_closed'
  /** A trip step the booking's status does not allow, or from a driver not assigned to it. */
  | 'invalid_transition'
  /** Cancel or rate by someone who may not (another rider, a driver). */
  | 'forbidden'
  /** Cancel once in progress or finished; rate before completion or a second time. */
  | 'conflict'
  /** Stars not an integer from 1 to 5. */
  | 'invalid_rating'
  /** A create whose price is not a whole, non-negative amount of minor units (a tariff that priced nothing). */
  | 'invalid_price';

/** Refusals of a driver's commands (over the WebSocket, from admins, from bookings). */
export type DriverRejection =
  /** The driver is deactivated: it cannot go online, accept, or be offered. */
  | 'inactive'
  /** Self-registered and not yet approved by an admin: it cannot go online. */
  | 'driver_pending_approval'
  /** `offline` with a booking in hand. */
  | 'on_trip'
  /** An offer to a driver who cannot take it now (not available, in maintenance, offer already expired). */
  | 'busy'
  /** Accept or decline without an open offer for that booking. */
  | 'no_such_offer'
  /** `trip.arrived` / `trip.start` by a driver not assigned to that booking. */
  | 'not_assigned'
  /** `trip.complete` by a driver not on that booking's trip. */
  | 'not_on_trip'
  /** Stars not an integer from 1 to 5. */
  | 'invalid_rating'
  /** A booking's rating counted a second time. */
  | 'already_rated'
  /** A profile change or approval for a driver nobody created. */
  | 'not_found'
  /** `online` with a vehicle type that is not its vehicle's, or not one an admin allowed it. */
  | 'vehicle_type_not_allowed'
  /** An admin's create under the id of a driver that exists. */
  | 'conflict';

/** Refusals of a vehicle's commands (admin API). */
export type VehicleRejection =
  /** Create over a vehicle that exists. */
  | 'conflict'
  /** A vehicle or maintenance window nobody created (or deleted). */
  | 'not_found'
  /** A maintenance window that does not end after it starts. */
  | 'invalid_window';

/** Every code a domain entity may refuse a command with. */
export type RejectionCode = BookingRejection | DriverRejection | VehicleRejection;

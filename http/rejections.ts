// How a command's result reaches a caller: the reply, or the contract's error. One
// table gives every refusal code of the domain (actors/rejections.ts) its HTTP status;
// the compiler checks the table names each code, so a new refusal cannot fall through
// to a default. REST routes throw the error (`outcome`), the WebSocket sends its code
// and message (`commandError`). docs/API.md lists each code with its status.

import type { RejectionCode } from '../actors/rejections.ts';
import type { CommandResult } from '../runtime/ports.ts';
import { HttpError } from './errors.ts';

/**
 * The HTTP status of each refusal. 400: the command itself is malformed, whatever the
 * entity's state. 403: the caller (or the driver, while deactivated or unapproved) may not
 * do it. 404: the entity does not exist. 409: the command is fine but the entity's current
 * state refuses it, so it may succeed another time; this is why `busy`, `no_such_offer`
 * and `not_assigned` are 409: the driver is allowed to take offers and drive trips, but
 * holds no open offer for that booking or is not assigned to it now (409, not 404: the
 * booking exists; not 403: no permission is missing).
 */
export const REJECTION_STATUS: Record<RejectionCode, number> = {
  // Booking
  not_found: 404,
  already_created: 409,
  offer_closed: 409,
  invalid_transition: 409,
  forbidden: 403,
  conflict: 409,
  invalid_rating: 400,
  invalid_price: 400,
  // Driver
  inactive: 403,
  driver_pending_approval: 403,
  on_trip: 409,
  busy: 409,
  no_such_offer: 409,
  not_assigned: 409,
  not_on_trip: 409,
  already_rated: 409,
  vehicle_type_not_allowed: 403,
  // Vehicle
  invalid_window: 400,
};

export function isRejectionCode(code: string): code is RejectionCode {
  return Object.hasOwn(REJECTION_STATUS, code);
}

/** What a caller is told when a command did not go through. */
export interface CommandError {
  readonly status: number;
  readonly code: string;
  readonly message: string;
}

/** The error a command's result comes to, or undefined when it went through (applied or a duplicate). */
export function commandError(result: CommandResult): CommandError | undefined {
  if (result.status === 'rejected' && result.rejection) {
    const { code, message } = result.rejection;
    // Every behavior's refusals are typed by RejectionCode: another code is a bug, not the caller's fault.
    return { status: isRejectionCode(code) ? REJECTION_STATUS[code] : 500, code, message };
  }
  if (result.status === 'failed' && result.failure && !result.failure.retriable) {
    // Set aside for an operator: retrying the same request would fail the same way.
    const where = result.deadLetter ? ` (dead letter ${result.deadLetter})` : '';
    if (result.failure.kind === 'reducer_failed') {
      return { status: 500, code: 'internal_error', message: `the command could not be handled${where}` };
    }
    return { status: 422, code: 'unprocessable', message: `storage refused the command's data${where}` };
  }
  if (result.status === 'failed') return { status: 503, code: 'unavailable', message: 'the command could not be stored; try again' };
  return undefined;
}

/** A REST route's answer to a command: its reply, or the contract's error thrown. */
export function outcome(result: CommandResult): unknown {
  const error = commandError(result);
  if (error) throw new HttpError(error.status, error.code, error.message);
  return result.reply;
}

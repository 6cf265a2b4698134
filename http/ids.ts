// The formats of ids and free text the edge accepts. Whatever passes these can be an
// entity key (text) and sit inside a journalled command (jsonb) as it is: PostgreSQL
// refuses a NUL in text (22021), the escape \u0000 in jsonb (22P05) and an unpaired
// surrogate in jsonb (22P02), and a command it refuses is retried by its region for
// ever, so its shard never commits again. Bad input is therefore a 4xx at the edge,
// naming the field, and never reaches an actor.
//
// Ids in a path name a resource. One not in the format the server mints names none,
// so every malformed path id, of every kind, answers what an unknown one does:
// 404 `not_found` (ids are not confirmed to strangers), with `details` naming
// `path.<name>` (see Api.add). Ids in a body, a query or a WebSocket message are
// input like any other field: 400 `invalid_request` (`invalid_message` on the
// socket) naming the field.

import { z } from 'zod';

/** Control characters other than tab and newline: text, not layout, is what a field holds. */
const CONTROL = /[\u0000-\u0008\u000B-\u001F\u007F]/;

/** Text PostgreSQL stores as it is, in text and in jsonb: no control characters but tab and newline, no unpaired surrogates. */
export function isStorableText(value: string): boolean {
  return !CONTROL.test(value) && value.isWellFormed();
}

const TEXT_MESSAGE = 'must not contain control characters (other than tab and newline) or unpaired surrogates';

/** Every free string of a request body, query or WebSocket message: chain .min()/.max() as for z.string(). */
export function text() {
  return z.string().refine(isStorableText, TEXT_MESSAGE);
}

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

/**
 * A booking, as POST /v1/bookings names it: `bk_` and 22 base64url characters (a digest of
 * the quote, or of the rider and the Idempotency-Key) or `bk_` and a UUID (neither).
 */
export const BookingId = z.string()
  .regex(new RegExp(`^bk_(?:[A-Za-z0-9_-]{22}|${UUID})$`), 'is not a booking id (bk_ and 22 base64url characters, or bk_ and a UUID)')
  .describe('A booking id as the server mints it: `bk_` and 22 base64url characters, or `bk_` and a UUID.');

/** A vehicle, as POST /v1/admin/vehicles names it: `veh_` and a UUID. */
export const VehicleId = z.string()
  .regex(new RegExp(`^veh_${UUID}$`), 'is not a vehicle id (veh_ and a UUID)')
  .describe('A vehicle id as the server mints it: `veh_` and a UUID.');

/** A maintenance window of a vehicle: `mw_` and the start of a UUID. */
export const MaintenanceId = z.string()
  .regex(/^mw_[0-9a-f-]{1,36}$/, 'is not a maintenance window id (mw_ and lowercase hex)')
  .describe('A maintenance window id as the server mints it: `mw_` and lowercase hex digits and dashes.');

// A superset of what an admin could name a driver before (1 to 128 of [A-Za-z0-9_.-]), less `.` and `..`.
const SAFE_ID = /^(?!\.\.?$)[A-Za-z0-9_.:@|+-]{1,128}$/;
const SAFE_ID_RULE = '1 to 128 letters, digits or _ . : @ | + -, not . or ..';

/**
 * A user: the subject of a token, and so a rider's or a driver's id. Registration mints
 * `rdr_`/`drv_` and a UUID, but an admin may choose a driver's id and another identity
 * provider its subjects (`auth0|...`, an email), so this is a safe general format:
 * 1 to 128 of letters, digits and `_ . : @ | + -`, other than `.` and `..`.
 */
export const UserId = z.string()
  .regex(SAFE_ID, `is not a user id (${SAFE_ID_RULE})`)
  .describe('1 to 128 letters, digits or `_ . : @ | + -`, other than `.` and `..`.');

/** A driver is a user: registered (`drv_` and a UUID), added by an admin with an id of its choosing, or a token's subject. */
export const DriverId = z.string()
  .regex(SAFE_ID, `is not a driver id (${SAFE_ID_RULE})`)
  .describe('1 to 128 letters, digits or `_ . : @ | + -`, other than `.` and `..`.');

/**
 * A booking as a WebSocket message refers to it: the general format, not the booking
 * format, so an id that names no booking gets the refusal the protocol documents
 * (`no_such_offer`, `not_found`) rather than `invalid_message`. Either way it is a key
 * storage takes as it is.
 */
export const BookingRef = z.string().regex(SAFE_ID, `is not an id (${SAFE_ID_RULE})`);

// Random ids (command ids, minted resource ids) as one flat string each.
//
// Node's randomUUID joins twenty short strings, and V8 keeps the result as a tree of
// fourteen pieces until something flattens it: about 490 bytes of heap against 65 for the
// same 36 characters in one piece. Ids that are kept (an entity's recent command ids, see
// dedupe.ts; a booking's or a driver's id; a socket's place) would each hold such a tree.
// Changing case copies the text into one piece, and a UUID's text is in lower case already.

import { randomUUID } from 'node:crypto';

/** A random UUID (after `prefix`, which must be in lower case), as one flat string. */
export function randomId(prefix = ''): string {
  return (prefix + randomUUID()).toLowerCase();
}

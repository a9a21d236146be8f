/**
 * The opaque sync cursor (PROTOCOL §3 `auth_success.cursor`, §9 `sync`). It names a
 * position in the stream of row changes ordered by (change transaction id, message id):
 * everything strictly before it has been seen. `x` is a PostgreSQL xid8 (decimal text),
 * `i` a message id ('' = before every id of that transaction), `t` the issue time (ms)
 * for SYNC_RETENTION_DAYS. Clients must treat it as opaque.
 */
import { badRequest } from '../protocol/errors.ts';

/** A decoded cursor. */
export interface Cursor {
  x: string;
  i: string;
  t: number;
}

/** Encode a cursor as base64url JSON. */
export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify([c.x, c.i, c.t])).toString('base64url');
}

/** Decode a cursor from a client. Throws BAD_REQUEST (field `cursor`) when it is not one of ours. */
export function decodeCursor(s: string): Cursor {
  try {
    const v = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && v.length === 3 && typeof v[0] === 'string' && /^\d{1,20}$/.test(v[0]) && typeof v[1] === 'string' && (v[1] === '' || /^[0-9a-f-]{36}$/.test(v[1])) && Number.isSafeInteger(v[2])) {
      return { x: v[0], i: v[1], t: v[2] };
    }
  } catch {
    // fall through
  }
  throw badRequest('cursor: not a cursor from this server', 'cursor');
}

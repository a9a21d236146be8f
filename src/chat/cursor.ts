/**
 * The opaque sync cursor (PROTOCOL §3 `auth_success.cursor`, §9 `sync`). It names a
 * position in the stream of changes the sync reads, ordered by change transaction id
 * (xid8) and, within one transaction, message changes first (by message id), then group
 * changes (by `group_changes.id`). Everything strictly before the position has been seen.
 *
 * Encoded as base64url JSON `[x, i, t]` or `[x, i, t, g]`:
 * - `x`: a PostgreSQL xid8 (decimal text, 0 ≤ x < 2^64);
 * - `i`: the last message id seen in transaction `x` ('' = none of its messages);
 * - `t`: the issue time (epoch ms) for SYNC_RETENTION_DAYS;
 * - `g` (optional): every message of transaction `x` and its group changes with id ≤ `g`
 *   were seen (then `i` is '').
 * Clients must treat it as opaque.
 */
import { badRequest } from '../protocol/errors.ts';

/** A decoded cursor (see the module comment for the meaning of each field). */
export interface Cursor {
  /** xid8 as decimal text. */
  x: string;
  /** Message id (lowercase UUID) or ''. */
  i: string;
  /** Issue time, epoch ms. */
  t: number;
  /** Last group change id seen in transaction `x` (decimal text, ≥ 1); absent: none of them. */
  g?: string;
}

/** Largest xid8 (2^64 - 1). */
const MAX_XID8 = (1n << 64n) - 1n;
/** Largest group_changes.id (BIGINT: 2^63 - 1). */
const MAX_BIGINT = (1n << 63n) - 1n;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Encode a cursor as base64url JSON (`[x, i, t]`, or `[x, i, t, g]` when `g` is set).
 * @param c a position produced by the sync (or `{x: xmin, i: '', t}` at authentication)
 * @returns the opaque cursor string
 */
export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify(c.g === undefined ? [c.x, c.i, c.t] : [c.x, c.i, c.t, c.g])).toString('base64url');
}

/** True when `s` is decimal digits whose value is in [min, max]. */
function decimalIn(s: unknown, min: bigint, max: bigint): s is string {
  if (typeof s !== 'string' || !/^\d{1,20}$/.test(s)) return false;
  const v = BigInt(s);
  return v >= min && v <= max;
}

/**
 * Decode a cursor from a client (PROTOCOL §9). Only what {@link encodeCursor} could have
 * written is accepted, so nothing malformed reaches SQL: `x` within xid8, `i` '' or a
 * UUID, `t` a safe integer, `g` (optional) within BIGINT and ≥ 1, with `i` '' then.
 * @param s the client's `cursor` string
 * @returns the decoded cursor
 * @throws ChatError BAD_REQUEST (field `cursor`, PROTOCOL §2.2) when it is not one of ours
 */
export function decodeCursor(s: string): Cursor {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
  } catch {
    v = null;
  }
  if (Array.isArray(v) && (v.length === 3 || v.length === 4)) {
    const [x, i, t, g] = v as unknown[];
    const okG = v.length === 3 || (decimalIn(g, 1n, MAX_BIGINT) && i === '');
    if (decimalIn(x, 0n, MAX_XID8) && typeof i === 'string' && (i === '' || UUID.test(i)) && Number.isSafeInteger(t) && okG) {
      return v.length === 3 ? { x, i, t: t as number } : { x, i, t: t as number, g: g as string };
    }
  }
  throw badRequest('cursor: not a cursor from this server', 'cursor');
}

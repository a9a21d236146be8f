/**
 * The cross-process form of a {@link Delivery}: a small JSON header, a newline, then the
 * pre-serialised frame exactly as built (DESIGN "Cross-process delivery": serialised once
 * per publish). `JSON.stringify` never emits a raw newline, so the first `\n` ends the
 * header and the frame is never re-parsed or re-escaped on the way.
 */
import type { Delivery } from './bus.ts';

/** Header fields: origin instance, recipients (omitted on per-user channels), excluded connection, close, publish time (epoch ms). */
interface Header {
  o: string;
  u?: readonly string[];
  x?: string;
  c?: { code: number; reason: string };
  t?: number;
}

/**
 * Encode `d` as sent by instance `origin`. With `withUsers` false the recipient list is
 * left out (per-user channels carry the recipient in the channel name).
 */
export function encodeDelivery(origin: string, d: Delivery, withUsers: boolean): string {
  const h: Header = { o: origin };
  if (withUsers) h.u = d.userIds;
  if (d.exceptConnId) h.x = d.exceptConnId;
  if (d.close) h.c = d.close;
  if (d.publishedAt !== undefined) h.t = d.publishedAt;
  return JSON.stringify(h) + '\n' + d.frame;
}

/** A decoded wire message: its origin and the delivery (userIds empty when the header had none). */
export interface Decoded {
  origin: string;
  delivery: Delivery;
}

/** Decode a wire message; null when malformed (never throws). */
export function decodeDelivery(payload: string): Decoded | null {
  const nl = payload.indexOf('\n');
  if (nl < 0) return null;
  let h: Header;
  try {
    h = JSON.parse(payload.slice(0, nl)) as Header;
  } catch {
    return null;
  }
  if (!h || typeof h.o !== 'string') return null;
  const delivery: Delivery = { userIds: Array.isArray(h.u) ? h.u : [], frame: payload.slice(nl + 1) };
  if (typeof h.x === 'string') delivery.exceptConnId = h.x;
  if (h.c && typeof h.c.code === 'number') delivery.close = { code: h.c.code, reason: String(h.c.reason ?? '') };
  if (typeof h.t === 'number') delivery.publishedAt = h.t;
  return { origin: h.o, delivery };
}

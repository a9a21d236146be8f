/**
 * The cross-process form of a {@link Delivery}: a small JSON header, a newline, then the
 * pre-serialised frame exactly as built (DESIGN "Cross-process delivery": serialised once
 * per publish). `JSON.stringify` never emits a raw newline, so the first `\n` ends the
 * header and the frame is never re-parsed or re-escaped on the way.
 *
 * Sealed form (BUS_ENCRYPTION; DESIGN: "the bus never carries plaintext that the database
 * holds encrypted unless configured to"): the frame is sealed by src/crypto/busSeal.ts and
 * sent as base64 of nonce ‖ ciphertext ‖ tag. The header is the additional authenticated
 * data, so nothing in it (origin, recipients, excluded connection, close) can be altered
 * or forged without the key. It names its origin `so` instead of `o`, so a decoder of a
 * build without sealing drops it rather than forwarding ciphertext to clients; it names
 * the key (`k`) and the sender's salt (`z`), always lists its recipients (`u`: a
 * per-user channel's receiver checks that the channel's user is one of them, so a sealed
 * frame copied to another user's channel is refused), and the time it was sealed (`s`,
 * epoch ms: one received more than {@link SEALED_MAX_AGE_MS} from it is refused).
 */
import type { BusSeal } from '../crypto/busSeal.ts';
import type { Delivery } from './bus.ts';
import type { WireRefusal } from './refusals.ts';

/** Header fields: origin instance (`o` plaintext, `so` sealed), recipients (omitted on per-user channels unless sealed), excluded connection, close, publish time (epoch ms); sealed: key id, sender salt, seal time (epoch ms). */
interface Header {
  o?: string;
  so?: string;
  u?: readonly string[];
  x?: string;
  c?: { code: number; reason: string; spreadMs?: number };
  t?: number;
  k?: string;
  z?: string;
  s?: number;
}

/** Oldest (and furthest in the future, for clock skew between hosts) a sealed message may be when received, ms. */
export const SEALED_MAX_AGE_MS = 60_000;

/** Longest close spread a received delivery may ask for, ms (BUS_GAP_RESYNC_MS's maximum). */
export const MAX_CLOSE_SPREAD_MS = 600_000;

/**
 * Encode `d` as sent by instance `origin`. With `withUsers` false the recipient list is
 * left out (per-user channels carry the recipient in the channel name). With `seal` the
 * frame is sealed (see the module doc).
 * @returns the wire string (header, `\n`, frame or base64 sealed frame)
 */
export function encodeDelivery(origin: string, d: Delivery, withUsers: boolean, seal?: BusSeal): string {
  // The origin first: receivers recognise their own echoes by this prefix (redisBus.ts onMessage).
  const h: Header = seal ? { so: origin } : { o: origin };
  if (withUsers || seal) h.u = d.userIds;
  if (d.exceptConnId) h.x = d.exceptConnId;
  if (d.close) h.c = d.close;
  if (d.publishedAt !== undefined) h.t = d.publishedAt;
  if (!seal) return JSON.stringify(h) + '\n' + d.frame;
  h.k = seal.keyId;
  h.z = seal.salt;
  h.s = Date.now();
  const head = JSON.stringify(h);
  return head + '\n' + seal.seal(d.frame, head).toString('base64');
}

/** A decoded wire message: its origin, the delivery (userIds empty when the header had none), whether it was sealed, and then the sender's counter. */
export interface Decoded {
  origin: string;
  delivery: Delivery;
  sealed: boolean;
  /** The sender's seal counter (sealed only): increases with every frame it seals. */
  counter?: number;
}

/** How {@link decodeDelivery} treats sealed and plaintext messages. */
export interface OpenOptions {
  /** Keys that open sealed frames; without them a sealed message is refused. */
  open?: BusSeal;
  /** Whether a plaintext frame is accepted (false: only sealed ones, which cannot be forged). */
  acceptPlaintext: boolean;
}

/**
 * Decode a wire message, or say why it is refused (never throws): `malformed` (no header
 * line, header not a JSON object, no origin, a sealed header without key id, salt,
 * recipients or seal time), `plaintext` (plaintext while `opts.acceptPlaintext` is false),
 * `unauthenticated` (sealed but not opened by `opts.open`: no keys, unknown key, altered,
 * forged), `stale` (opened, but sealed more than {@link SEALED_MAX_AGE_MS} before or after
 * `now`). A sealed frame is opened before its seal time is judged, so `stale` only ever
 * counts frames sealed with our keys (clock skew, or an old capture replayed), never
 * forgeries. A reason is a constant string: saying it allocates nothing.
 * @param payload the message as received from Redis
 * @param now the receiver's clock, epoch ms
 * @returns the decoded message, or the reason (./refusals.ts) it is refused
 */
export function decodeWire(payload: string, opts: OpenOptions = { acceptPlaintext: true }, now = Date.now()): Decoded | WireRefusal {
  const nl = payload.indexOf('\n');
  if (nl < 0) return 'malformed';
  const head = payload.slice(0, nl);
  let h: Header;
  try {
    h = JSON.parse(head) as Header;
  } catch {
    return 'malformed';
  }
  if (!h || typeof h !== 'object') return 'malformed';
  let origin: string;
  let frame: string;
  let counter: number | undefined;
  if (typeof h.o === 'string') {
    if (!opts.acceptPlaintext) return 'plaintext';
    origin = h.o;
    frame = payload.slice(nl + 1);
  } else if (typeof h.so === 'string') {
    if (typeof h.k !== 'string' || typeof h.z !== 'string' || !Array.isArray(h.u) || typeof h.s !== 'number') return 'malformed';
    const opened = opts.open?.open(h.k, h.z, Buffer.from(payload.slice(nl + 1), 'base64'), head);
    if (!opened) return 'unauthenticated';
    if (Math.abs(now - h.s) > SEALED_MAX_AGE_MS) return 'stale';
    origin = h.so;
    frame = opened.frame;
    counter = opened.counter;
  } else return 'malformed';
  const delivery: Delivery = { userIds: Array.isArray(h.u) ? h.u : [], frame };
  if (typeof h.x === 'string') delivery.exceptConnId = h.x;
  if (h.c && typeof h.c.code === 'number') {
    delivery.close = { code: h.c.code, reason: String(h.c.reason ?? '') };
    if (typeof h.c.spreadMs === 'number' && h.c.spreadMs > 0) delivery.close.spreadMs = Math.min(h.c.spreadMs, MAX_CLOSE_SPREAD_MS);
  }
  if (typeof h.t === 'number') delivery.publishedAt = h.t;
  return counter === undefined ? { origin, delivery, sealed: false } : { origin, delivery, sealed: true, counter };
}

/**
 * {@link decodeWire} without the reason: the decoded message, or null when it is refused
 * (malformed, sealed but not opened by `opts.open`, sealed more than
 * {@link SEALED_MAX_AGE_MS} from `now`, or plaintext while `opts.acceptPlaintext` is false).
 * Never throws.
 * @param now the receiver's clock, epoch ms
 */
export function decodeDelivery(payload: string, opts: OpenOptions = { acceptPlaintext: true }, now = Date.now()): Decoded | null {
  const d = decodeWire(payload, opts, now);
  return typeof d === 'string' ? null : d;
}

/**
 * The cross-process form of a {@link Delivery}: a small JSON header, a newline, then the
 * pre-serialised frame exactly as built (DESIGN "Cross-process delivery": serialised once
 * per publish). `JSON.stringify` never emits a raw newline, so the first `\n` ends the
 * header and the frame is never re-parsed or re-escaped on the way.
 *
 * Sealed form (DESIGN: "the bus never carries plaintext that the database holds
 * encrypted unless configured to"): with a keyring the frame is AES-256-GCM encrypted
 * (src/crypto/cipher.ts; a fresh 96-bit nonce per publish) and sent as base64 of nonce ‖
 * ciphertext ‖ tag; the header names the key (`k`) and is the additional authenticated
 * data, so neither the frame nor its recipients, origin or close can be altered or forged
 * by someone with access to Redis but not the key. A sealed header always lists its
 * recipients (`u`, so a per-user channel's receiver can check that the channel's user is
 * one of them: a sealed frame copied to another user's channel is refused) and the time
 * it was sealed (`s`, epoch ms: a copy replayed more than {@link SEALED_MAX_AGE_MS} later,
 * or stamped that far ahead, is refused).
 */
import type { BodyCipher } from '../crypto/cipher.ts';
import type { Delivery } from './bus.ts';

/** Header fields: origin instance, recipients (omitted on per-user channels unless sealed), excluded connection, close, publish time (epoch ms), key id and seal time (epoch ms) of a sealed frame. */
interface Header {
  o: string;
  u?: readonly string[];
  x?: string;
  c?: { code: number; reason: string };
  t?: number;
  k?: string;
  s?: number;
}

/** Oldest (and furthest in the future, for clock skew between hosts) a sealed message may be when received, ms. */
export const SEALED_MAX_AGE_MS = 60_000;

/** Bytes of the GCM nonce at the start of a sealed frame. */
const NONCE_BYTES = 12;

/**
 * Encode `d` as sent by instance `origin`. With `withUsers` false the recipient list is
 * left out (per-user channels carry the recipient in the channel name). With `seal` the
 * frame is sealed under its primary key (see the module doc).
 * @returns the wire string (header, `\n`, frame or base64 sealed frame)
 */
export function encodeDelivery(origin: string, d: Delivery, withUsers: boolean, seal?: BodyCipher): string {
  // `o` first: receivers recognise their own echoes by this prefix (redisBus.ts onMessage).
  const h: Header = { o: origin };
  if (withUsers || seal) h.u = d.userIds;
  if (d.exceptConnId) h.x = d.exceptConnId;
  if (d.close) h.c = d.close;
  if (d.publishedAt !== undefined) h.t = d.publishedAt;
  if (!seal) return JSON.stringify(h) + '\n' + d.frame;
  h.k = seal.primaryKeyId;
  h.s = Date.now();
  const head = JSON.stringify(h);
  const s = seal.seal(d.frame, head);
  return head + '\n' + Buffer.concat([s.nonce, s.ciphertext]).toString('base64');
}

/** A decoded wire message: its origin, the delivery (userIds empty when the header had none) and whether it was sealed. */
export interface Decoded {
  origin: string;
  delivery: Delivery;
  sealed: boolean;
}

/** How {@link decodeDelivery} treats sealed and plaintext messages. */
export interface OpenOptions {
  /** Keyring that opens sealed frames; without it a sealed message is refused. */
  open?: BodyCipher;
  /** Whether a plaintext frame is accepted (false: only sealed ones, which cannot be forged). */
  acceptPlaintext: boolean;
}

/**
 * Decode a wire message. Resolves null (never throws) when it is malformed, sealed under
 * a key `opts.open` lacks, altered (authentication fails), sealed more than
 * {@link SEALED_MAX_AGE_MS} from `now`, or plaintext while `opts.acceptPlaintext` is false.
 * @param now the receiver's clock, epoch ms
 */
export function decodeDelivery(payload: string, opts: OpenOptions = { acceptPlaintext: true }, now = Date.now()): Decoded | null {
  const nl = payload.indexOf('\n');
  if (nl < 0) return null;
  const head = payload.slice(0, nl);
  let h: Header;
  try {
    h = JSON.parse(head) as Header;
  } catch {
    return null;
  }
  if (!h || typeof h.o !== 'string') return null;
  let frame: string;
  if (h.k === undefined) {
    if (!opts.acceptPlaintext) return null;
    frame = payload.slice(nl + 1);
  } else {
    if (!opts.open || typeof h.k !== 'string' || !Array.isArray(h.u) || typeof h.s !== 'number' || Math.abs(now - h.s) > SEALED_MAX_AGE_MS) return null;
    const bytes = Buffer.from(payload.slice(nl + 1), 'base64');
    try {
      frame = opts.open.open({ keyId: h.k, nonce: bytes.subarray(0, NONCE_BYTES), ciphertext: bytes.subarray(NONCE_BYTES) }, head);
    } catch {
      return null;
    }
  }
  const delivery: Delivery = { userIds: Array.isArray(h.u) ? h.u : [], frame };
  if (typeof h.x === 'string') delivery.exceptConnId = h.x;
  if (h.c && typeof h.c.code === 'number') delivery.close = { code: h.c.code, reason: String(h.c.reason ?? '') };
  if (typeof h.t === 'number') delivery.publishedAt = h.t;
  return { origin: h.o, delivery, sealed: h.k !== undefined };
}

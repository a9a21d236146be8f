/**
 * The outbound queue limit of one connection (PROTOCOL §2.3 4503 "slow consumer", DESIGN
 * "Failure behaviour"): the slow path of {@link Connection}'s write, taken only when a
 * frame might not fit under SEND_QUEUE_LIMIT_BYTES.
 *
 * A slow consumer is a client whose socket is not draining: the bytes ALREADY queued for
 * it (`ws` `bufferedAmount`: Node's socket buffer plus `ws`'s own, in bytes) pass the
 * limit. One large frame is not: a direct reply of any size (a `sync_result` of 500 long
 * messages, §9) is written to a client whose queue is within the limit, and that frame,
 * until it has been handed to the kernel, does not count against the limit for the frames
 * queued behind it. The rules, with L = SEND_QUEUE_LIMIT_BYTES, b = bytes queued, n = the
 * frame's UTF-8 bytes and A = the allowance (bytes of the one frame let past the limit and
 * not yet flushed; 0 when none):
 *
 * 1. b + n ≤ L + A: write.
 * 2. otherwise, A = 0 and b ≤ L: write past the limit; A = n until the frame is flushed.
 * 3. otherwise: slow consumer (close 4503).
 *
 * So a connection never holds more than L plus its largest frame queued (memory is bounded
 * for a client that stopped reading: it is closed at most one oversized frame later than
 * at L), and a reading client is never closed for the size of one reply.
 */

/** {@link queueVerdict}: write the frame (rule 1). */
export const WRITE = 0;
/** {@link queueVerdict}: write the frame past the limit; it is the connection's allowance until flushed (rule 2). */
export const WRITE_PAST_LIMIT = 1;
/** {@link queueVerdict}: do not write; the connection is a slow consumer, close 4503 (rule 3). */
export const SLOW_CONSUMER = 2;
/** The outcome of {@link queueVerdict}. */
export type QueueVerdict = typeof WRITE | typeof WRITE_PAST_LIMIT | typeof SLOW_CONSUMER;

/**
 * Bytes a frame takes on the wire (payload only, without the 2–10 byte WebSocket header).
 * @param frame serialised JSON text (UTF-16 string) or its UTF-8 bytes
 * @returns UTF-8 bytes: `Buffer.byteLength` for a string (O(length): call only on the slow
 *   path; `frame.length * 3` is a cheap upper bound), `length` for a Buffer
 */
export function frameBytes(frame: string | Buffer): number {
  return typeof frame === 'string' ? Buffer.byteLength(frame, 'utf8') : frame.length;
}

/**
 * Decide whether a frame may be queued on a connection (PROTOCOL §2.3 4503; rules in the
 * module comment). Pure: the caller records the allowance on {@link WRITE_PAST_LIMIT} and
 * clears it once that frame was flushed.
 * @param buffered bytes already queued for the socket (`ws` `bufferedAmount`), bytes
 * @param bytes the frame's size ({@link frameBytes}), bytes
 * @param limit SEND_QUEUE_LIMIT_BYTES, bytes
 * @param allowance bytes of the frame earlier let past the limit and not yet flushed; 0: none
 * @returns {@link WRITE}, {@link WRITE_PAST_LIMIT} or {@link SLOW_CONSUMER}; never throws
 */
export function queueVerdict(buffered: number, bytes: number, limit: number, allowance: number): QueueVerdict {
  if (buffered + bytes <= limit + allowance) return WRITE;
  if (allowance === 0 && buffered <= limit) return WRITE_PAST_LIMIT;
  return SLOW_CONSUMER;
}

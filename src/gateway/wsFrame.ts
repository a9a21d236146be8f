/**
 * Server-to-client WebSocket text frames built once and written as is (RFC 6455 §5.2):
 * a fan-out writes the same bytes to every recipient socket instead of having `ws` build
 * a header per socket and write header and payload separately (cork, two chunks,
 * writev). Server frames are never masked (§5.1), so the bytes are identical for all.
 */
import type { Duplex } from 'node:stream';

/**
 * One unfragmented, unmasked text frame (FIN, opcode 0x1) carrying `payload` (UTF-8
 * bytes): 2-, 4- or 10-byte header by payload length (≤ 125, ≤ 65,535, larger), then the
 * payload, in one Buffer.
 */
export function encodeTextFrame(payload: Buffer): Buffer {
  const len = payload.length;
  const head = len <= 125 ? 2 : len <= 0xffff ? 4 : 10;
  const out = Buffer.allocUnsafe(head + len);
  out[0] = 0x81;
  if (head === 2) {
    out[1] = len;
  } else if (head === 4) {
    out[1] = 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 127;
    out.writeUInt32BE(Math.floor(len / 2 ** 32), 2);
    out.writeUInt32BE(len >>> 0, 6);
  }
  payload.copy(out, head);
  return out;
}

/** Sockets corked by {@link writeFrameBatched} in this event-loop turn. */
const corked = new Set<Duplex>();

function uncorkAll(): void {
  for (const s of corked) s.uncork();
  corked.clear();
}

/**
 * Write a complete frame to `socket`, corked until the end of this event-loop turn
 * (`setImmediate`): fan-outs of several messages in one turn (a committed insert batch)
 * reach each socket in ONE write system call instead of one per message. Order on the
 * socket is kept (a corked stream buffers every write in order, whoever makes it).
 * Latency added: at most the rest of the current turn.
 */
export function writeFrameBatched(socket: Duplex, frame: Buffer): void {
  if (!corked.has(socket)) {
    socket.cork();
    corked.add(socket);
    if (corked.size === 1) setImmediate(uncorkAll);
  }
  socket.write(frame);
}

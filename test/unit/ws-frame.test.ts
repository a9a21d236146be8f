/**
 * encodeTextFrame (src/gateway/wsFrame.ts) produces exactly the bytes `ws` itself frames
 * a server text message with (RFC 6455 §5.2: unmasked, FIN, opcode 1), at every header
 * size boundary.
 */
import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { encodeTextFrame } from '../../src/gateway/wsFrame.ts';

/** ws's own framing (`WebSocket.Sender`, not in its type definitions). */
const Sender = (createRequire(import.meta.url)('ws') as { Sender: unknown }).Sender as { frame(data: Buffer, opts: Record<string, unknown>): Buffer[] };

function wsBytes(payload: Buffer): Buffer {
  return Buffer.concat(Sender.frame(payload, { fin: true, opcode: 1, mask: false, readOnly: false, rsv1: false }));
}

describe('encodeTextFrame', () => {
  for (const n of [0, 1, 125, 126, 127, 65_535, 65_536, 70_000]) {
    it(`matches ws for a ${n}-byte payload`, () => {
      const payload = Buffer.alloc(n, 'é'.charCodeAt(0) & 0x7f);
      const frame = encodeTextFrame(payload);
      expect(frame.equals(wsBytes(payload))).toBe(true);
      expect(frame.length - payload.length).toBe(n <= 125 ? 2 : n <= 65_535 ? 4 : 10);
    });
  }
});

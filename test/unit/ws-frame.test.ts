/**
 * encodeTextFrame (src/gateway/wsFrame.ts) produces exactly the bytes `ws` itself frames
 * a server text message with (RFC 6455 §5.2: unmasked, FIN, opcode 1), at every header
 * size boundary; writeFrameBatched puts one turn's frames to a socket into one write
 * system call (one writev) and keeps their order with other writes, on a real TCP socket.
 */
import { once } from 'node:events';
import { createServer, connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { encodeTextFrame, writeFrameBatched } from '../../src/gateway/wsFrame.ts';

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

describe('writeFrameBatched', () => {
  it('sends one turn of frames in one writev, in order with direct writes, and flushes by the next turn', async () => {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as { port: number }).port;
    const accepted = once(server, 'connection') as Promise<[Socket]>;
    const client = connect(port, '127.0.0.1');
    await once(client, 'connect');
    const [peer] = await accepted;
    let received = Buffer.alloc(0);
    peer.on('data', (d: Buffer) => (received = Buffer.concat([received, d])));
    const calls: number[] = [];
    const s = client as unknown as { _writev(chunks: unknown[], cb: unknown): void; _write(c: unknown, e: unknown, cb: unknown): void };
    const writev = s._writev.bind(client);
    const write = s._write.bind(client);
    s._writev = (chunks, cb) => {
      calls.push(chunks.length);
      writev(chunks, cb);
    };
    s._write = (c, e, cb) => {
      calls.push(1);
      write(c, e, cb);
    };
    try {
      const frames = ['a', 'b', 'c'].map((t) => encodeTextFrame(Buffer.from(t)));
      writeFrameBatched(client, frames[0]!);
      writeFrameBatched(client, frames[1]!);
      client.write(Buffer.from('|direct|'));
      writeFrameBatched(client, frames[2]!);
      expect(calls).toEqual([]); // nothing written yet: corked until the end of the turn
      await new Promise((r) => setImmediate(r));
      expect(calls).toEqual([4]); // one system call for all four chunks
      const expected = Buffer.concat([frames[0]!, frames[1]!, Buffer.from('|direct|'), frames[2]!]);
      for (let i = 0; i < 100 && received.length < expected.length; i++) await new Promise((r) => setTimeout(r, 10));
      expect(received.equals(expected)).toBe(true);
      // The next turn starts a new batch.
      writeFrameBatched(client, frames[0]!);
      await new Promise((r) => setImmediate(r));
      expect(calls).toEqual([4, 1]);
    } finally {
      client.destroy();
      peer.destroy();
      server.close();
    }
  });
});

/**
 * Slow consumers (PROTOCOL §2.3 4503): a client that never reads is disconnected once
 * more than SEND_QUEUE_LIMIT_BYTES are queued for it, and its connection is released;
 * a reading client on the same server is unaffected, also when one reply is larger than
 * the limit (src/gateway/sendQueue.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep, startServer, type TestServer } from '../helpers/server.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startServer({
    FOLLOW_POLICY: 'none',
    SEND_QUEUE_LIMIT_BYTES: String(256 * 1024),
    MAX_PAYLOAD_BYTES: String(512 * 1024),
    MAX_MESSAGE_LENGTH: '100000',
  });
  await s.users('1', '2', '3', '4', '5', '6', '7');
});
afterAll(() => s?.close());

describe('backpressure', () => {
  it('closes a client that never reads, and keeps serving others', async () => {
    const slow = await s.login('2');
    const fine = await s.login('3');
    const sender = await s.login('1');
    (slow.ws as any)._socket.pause(); // stop reading: the kernel buffers fill, then ours
    const big = 'x'.repeat(90_000);
    let closedAt = -1;
    for (let i = 0; i < 400 && closedAt < 0; i++) {
      const r = await sender.request({ type: 'send_private_message', recipientId: '2', content: `${i} ${big}` });
      expect(r.type).toBe('private_message_sent');
      if (s.app.gateway.registry.of('2').length === 0) closedAt = i;
    }
    expect(closedAt).toBeGreaterThan(0); // the slow connection was dropped
    await sleep(50);
    expect(s.app.gateway.registry.of('2').length).toBe(0);
    // everything sent was stored (nothing lost: the recipient can sync later)
    const hist = await sender.request({ type: 'get_private_messages', recipientId: '2', limit: 1 });
    expect(hist.total).toBe(closedAt + 1);
    // others unaffected
    await sender.request({ type: 'send_private_message', recipientId: '3', content: 'still here' });
    expect((await fine.next('new_private_message')).message.content).toBe('still here');
  });

  it('a reading client gets a reply larger than SEND_QUEUE_LIMIT_BYTES (not 4503)', async () => {
    // One reply into an empty queue is not a slow consumer: with 4503 ("reconnect and
    // sync") for its own history page, such a client would loop forever. History and sync
    // pages end early near half the limit (audit 7, F5: history-bytes.test.ts, sync.test.ts),
    // but a single message larger than that still comes, alone, in one frame.
    const sender = await s.login('5');
    const body = '\u0001'.repeat(80_000); // 80,000 code points, 480,000 bytes once JSON-escaped
    for (let i = 0; i < 2; i++) expect((await sender.request({ type: 'send_private_message', recipientId: '4', content: `${i} ${body}` })).type).toBe('private_message_sent');
    const reader = await s.login('4'); // after the sends: two live events of 480 kB would be a slow consumer's backlog
    const r = await Promise.race([reader.request({ type: 'get_private_messages', recipientId: '5', limit: 10 }, 10_000), reader.closed.then((x) => ({ type: `closed ${x.code}` }) as any)]);
    expect(r.type).toBe('private_message_history');
    expect(r.messages).toHaveLength(1); // the newest, alone; hasMore for the other
    expect(r.hasMore).toBe(true);
    expect(Buffer.byteLength(JSON.stringify(r))).toBeGreaterThan(256 * 1024); // one frame past the limit (in bytes)
    expect((await reader.request({ type: 'ping' })).type).toBe('pong');
    expect(s.app.gateway.registry.of('4').length).toBe(1);
  });

  it('closes a client that stopped reading while it keeps asking for replies larger than the limit', async () => {
    // The one frame let past the limit does not open a loophole: memory stays bounded.
    const slow = await s.login('6');
    const conn = s.app.gateway.registry.of('6')[0]!;
    const sender = await s.login('7');
    const body = '\u0001'.repeat(50_000); // 300,000 bytes once JSON-escaped: each page is one message, past the limit
    for (let i = 0; i < 2; i++) expect((await sender.request({ type: 'send_private_message', recipientId: '6', content: `${i} ${body}` })).type).toBe('private_message_sent');
    (slow.ws as any)._socket.pause();
    let maxBuffered = 0;
    let sent = 0;
    // The kernel's socket buffers take several MB first; then `ws` queues (bufferedAmount).
    for (const end = Date.now() + 20_000; Date.now() < end && s.app.gateway.registry.of('6').length > 0; ) {
      slow.send({ type: 'get_private_messages', recipientId: '7', limit: 8 }); // ≈ 300 kB each (one message: pages end near half the limit)
      sent++;
      await sleep(5);
      maxBuffered = Math.max(maxBuffered, conn.ws.bufferedAmount);
    }
    expect(s.app.gateway.registry.of('6').length).toBe(0);
    // never more queued than the limit plus the one frame let past it (< 500 kB)
    expect(maxBuffered).toBeLessThan(256 * 1024 + 500_000);
    console.log(`stopped reader closed after ${sent} history requests of ≈300 kB; most queued ${maxBuffered} bytes`);
  }, 40_000);
});

/**
 * Slow consumers (PROTOCOL §2.3 4503): a client that never reads is disconnected once
 * more than SEND_QUEUE_LIMIT_BYTES are queued for it, and its connection is released;
 * a reading client on the same server is unaffected.
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
  await s.users('1', '2', '3');
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
});

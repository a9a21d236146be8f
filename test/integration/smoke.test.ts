import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../helpers/server.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startServer();
  await s.users('1', '2');
  await s.follow(['1', '2']);
});
afterAll(() => s?.close());

describe('smoke: one DM end to end', () => {
  it('stores, acks and delivers to the recipient', async () => {
    const a = await s.login('1');
    const b = await s.login('2');
    const ack = await a.request({ type: 'send_private_message', recipientId: 2, content: 'hi' });
    expect(ack.type).toBe('private_message_sent');
    const ev = await b.next('new_private_message');
    expect(ev.message.content).toBe('hi');
    expect(ev.message.id).toBe(ack.messageId);
  });
});

/**
 * PROTOCOL §6 `send_private_message` idempotency (clientMessageId): a retry returns the
 * original ack with duplicate:true, a key used in another conversation or group is
 * refused, the key is per sender, concurrent duplicates store one row with a gap-free seq,
 * and the key's length and type rules (§2). Real clients against a real server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { count, expectError, freshUsers, messagesFrom, mutualPair, sendOk } from '../helpers/dmkit.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

let s: TestServer;
beforeAll(async () => {
  // Many deliberate BAD_REQUESTs below: keep the 4400 budget (§2.2) out of the way.
  s = await startServer({ PROTOCOL_ERROR_LIMIT: '100000' });
});
afterAll(() => s?.close());

describe('idempotency (clientMessageId)', () => {
  it('a retry returns the original ack with duplicate:true and stores and delivers nothing new', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const ca2 = await s.login(a);
    const first = await sendOk(ca, b, 'once', { clientMessageId: 'retry-1' });
    await cb.next('new_private_message');
    await ca2.next('private_message_sent');
    const again = await sendOk(ca, b, 'once', { clientMessageId: 'retry-1' });
    expect(again.duplicate).toBe(true);
    expect(again.messageId).toBe(first.messageId);
    expect(again.conversationId).toBe(first.conversationId);
    expect(again.clientMessageId).toBe('retry-1');
    expect(again.message).toEqual(first.message);
    // Even a retry with different text returns the original.
    const third = await sendOk(ca2, b, 'changed text', { clientMessageId: 'retry-1' });
    expect(third).toMatchObject({ duplicate: true, messageId: first.messageId });
    expect(third.message.content).toBe('once');
    expect(await messagesFrom(s, a)).toBe(1);
    await Promise.all([cb.none('new_private_message', 300), ca2.none('private_message_sent', 300), ca.none('private_message_sent', 50)]);
  });

  it('a key already used in another conversation or group is refused (BAD_REQUEST clientMessageId): nothing stored, delivered or acked as sent', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const [c] = await freshUsers(s, 1);
    await s.follow([a, c!]);
    const cc = await s.login(c!);
    await sendOk(ca, b, 'to b', { clientMessageId: 'k-dm' });
    await cb.next('new_private_message');
    const created = await ca.request({ type: 'create_group', groupName: 'keys', initialMembers: [b] });
    expect(created.type).toBe('group_created');
    await cb.next('group_created');
    const g = await ca.request({ type: 'send_group_message', groupId: created.groupId, content: 'in group', clientMessageId: 'k-group' });
    expect(g.type).toBe('group_message_sent');
    await cb.next('new_group_message');
    const stored = await messagesFrom(s, a);

    // The DM key to another recipient, and to a group; the group key in a DM.
    await expectError(ca, { type: 'send_private_message', recipientId: c, content: 'to c', clientMessageId: 'k-dm' }, 'BAD_REQUEST', 'clientMessageId');
    await expectError(ca, { type: 'send_group_message', groupId: created.groupId, content: 'x', clientMessageId: 'k-dm' }, 'BAD_REQUEST', 'clientMessageId');
    await expectError(ca, { type: 'send_private_message', recipientId: b, content: 'x', clientMessageId: 'k-group' }, 'BAD_REQUEST', 'clientMessageId');
    expect(await messagesFrom(s, a)).toBe(stored);
    await Promise.all([cc.none('new_private_message', 200), cb.none((f) => f.type === 'new_private_message' || f.type === 'new_group_message', 200)]);
    // The same keys where they were first used are still retries.
    expect(await sendOk(ca, b, 'to b', { clientMessageId: 'k-dm' })).toMatchObject({ duplicate: true });
    const again = await ca.request({ type: 'send_group_message', groupId: created.groupId, content: 'in group', clientMessageId: 'k-group' });
    expect(again).toMatchObject({ type: 'group_message_sent', duplicate: true, message: { id: g.message.id } });
  });

  it('the key is per sender: another sender may use the same clientMessageId', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const x = await sendOk(ca, b, 'from a', { clientMessageId: 'shared-key' });
    const y = await sendOk(cb, a, 'from b', { clientMessageId: 'shared-key' });
    expect(y.duplicate).toBeUndefined();
    expect(y.messageId).not.toBe(x.messageId);
    expect(y.message.seq).toBe(2);
  });

  it('concurrent duplicates on several connections store exactly one row, deliver once, and leave seq gap-free', async () => {
    const { a, b, cb } = await mutualPair(s);
    const conns = await Promise.all([s.login(a), s.login(a), s.login(a), s.login(a)]);
    const first = await sendOk(conns[0]!, b, 'one', { clientMessageId: 'k1' });
    await sendOk(conns[1]!, b, 'one', { clientMessageId: 'k1' });
    // Four devices race the same key twice each, plus one new message in the same burst.
    const burst = conns.flatMap((c) => [sendOk(c, b, 'two', { clientMessageId: 'k2' }), sendOk(c, b, 'two', { clientMessageId: 'k2' })]);
    const results = await Promise.all(burst);
    const ids = new Set(results.map((r) => r.messageId));
    expect(ids.size).toBe(1);
    expect(results.filter((r) => r.duplicate !== true)).toHaveLength(1);
    expect(results.filter((r) => r.duplicate === true)).toHaveLength(7);
    const third = await sendOk(conns[2]!, b, 'three', { clientMessageId: 'k3' });

    expect(await messagesFrom(s, a)).toBe(3);
    const { rows } = await s.app.db.query<{ seq: string; client_message_id: string }>(
      'SELECT seq::text AS seq, client_message_id FROM private_messages WHERE conversation_id = $1 ORDER BY seq',
      [first.conversationId],
    );
    expect(rows.map((r) => [Number(r.seq), r.client_message_id])).toEqual([
      [1, 'k1'],
      [2, 'k2'],
      [3, 'k3'],
    ]);
    expect(third.message.seq).toBe(3);
    expect(await count(s, 'conversations', 'conversation_id = $1 AND last_seq = 3', [first.conversationId])).toBe(1);
    // The recipient saw each message exactly once.
    const seen: string[] = [];
    for (let i = 0; i < 3; i++) seen.push((await cb.next('new_private_message')).message.content);
    expect(seen).toEqual(['one', 'two', 'three']);
    await cb.none('new_private_message', 300);
  });

  it('concurrent duplicates as the very first message of a new conversation: one row, seq 1', async () => {
    const { a, b, cb } = await mutualPair(s);
    const conns = await Promise.all([s.login(a), s.login(a), s.login(a)]);
    const results = await Promise.all(conns.flatMap((c) => [sendOk(c, b, 'first', { clientMessageId: 'f1' }), sendOk(c, b, 'first', { clientMessageId: 'f1' })]));
    expect(new Set(results.map((r) => r.messageId)).size).toBe(1);
    expect(results.filter((r) => r.duplicate !== true)).toHaveLength(1);
    expect(results.every((r) => r.message.seq === 1)).toBe(true);
    expect(await messagesFrom(s, a)).toBe(1);
    expect(await count(s, 'conversations', 'conversation_id = $1 AND last_seq = 1', [results[0]!.conversationId])).toBe(1);
    const next = await sendOk(conns[0]!, b, 'second');
    expect(next.message.seq).toBe(2);
    await cb.next('new_private_message');
    await cb.next('new_private_message');
    await cb.none('new_private_message', 200);
  });

  it('refuses a clientMessageId longer than 64 characters or of the wrong type', async () => {
    const { a, b, ca } = await mutualPair(s);
    await expectError(ca, { type: 'send_private_message', recipientId: b, content: 'x', clientMessageId: 'k'.repeat(65) }, 'BAD_REQUEST', 'clientMessageId');
    await expectError(ca, { type: 'send_private_message', recipientId: b, content: 'x', clientMessageId: 7 }, 'BAD_REQUEST', 'clientMessageId');
    // NUL (PostgreSQL text cannot hold it) and a lone surrogate (not Unicode): refused, not an INTERNAL_ERROR.
    await expectError(ca, { type: 'send_private_message', recipientId: b, content: 'x', clientMessageId: 'a\u0000b' }, 'BAD_REQUEST', 'clientMessageId');
    ca.send(`{"type":"send_private_message","recipientId":"${b}","content":"x","clientMessageId":"k\\ud800z","requestId":"lone"}`);
    expect(await ca.next((f) => f.requestId === 'lone')).toMatchObject({ type: 'error', code: 'BAD_REQUEST', field: 'clientMessageId' });
    await sendOk(ca, b, 'x', { clientMessageId: 'k'.repeat(64) });
    expect(await messagesFrom(s, a)).toBe(1);
  });
});

/**
 * PROTOCOL §6 reads: `start_conversation`, `get_conversations` (order, unread counts,
 * cursor paging), `get_private_messages` (by recipient or conversation, offset and
 * `before` paging) and `delete_conversation` (for me / for everyone).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addBlock } from '../../src/store/devData.ts';
import type { Frame, TestClient } from '../helpers/client.ts';
import { count, expectError, freshUsers, history, ISO, mutualPair, sendOk } from '../helpers/dmkit.ts';
import { sleep, startServer, type TestServer } from '../helpers/server.ts';

let s: TestServer;
beforeAll(async () => {
  // OFFLINE_GRACE_MS=0: a closed last connection counts as offline at once (§8).
  s = await startServer({ PROTOCOL_ERROR_LIMIT: '100000', OFFLINE_GRACE_MS: '0' });
});
afterAll(() => s?.close());

/** Send `n` messages `prefix0..prefix{n-1}` from `c` to `to`, all in flight at once (the connection processes them in order). */
async function burst(c: TestClient, to: string, n: number, prefix = 'm'): Promise<Frame[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => sendOk(c, to, `${prefix}${i}`)));
}

const seqs = (r: Frame): number[] => r.messages.map((m: Frame) => m.seq);

describe('start_conversation', () => {
  it('returns the recipient with display name and online flag, and the newest 50 messages oldest first with hasMore', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    await burst(ca, b, 55);
    const r = await cb.request({ type: 'start_conversation', recipientId: Number(a) });
    expect(r).toMatchObject({ type: 'conversation_started', conversationId: a < b ? `conv_${a}_${b}` : `conv_${b}_${a}`, hasMore: true });
    expect(r.recipient).toEqual({ id: a, username: `u${a}`, displayName: `First${a} Last${a}`, online: true });
    expect(r.timestamp).toMatch(ISO);
    expect(r.messages).toHaveLength(50);
    expect(seqs(r)).toEqual(Array.from({ length: 50 }, (_, i) => i + 6));
    expect(r.messages[0].content).toBe('m5');
    expect(r.messages[49]).toMatchObject({ content: 'm54', senderId: a, recipientId: b, username: `u${a}` });
  });

  it('online is false when the recipient has no connection; an empty conversation has no messages and no more', async () => {
    const [a, b] = await freshUsers(s, 2, [[0, 1]]);
    const ca = await s.login(a!);
    const r = await ca.request({ type: 'start_conversation', recipientId: b });
    expect(r).toMatchObject({ type: 'conversation_started', messages: [], hasMore: false });
    expect(r.recipient).toEqual({ id: b, username: `u${b}`, displayName: `First${b} Last${b}`, online: false });
    const cb = await s.login(b!);
    expect((await ca.request({ type: 'start_conversation', recipientId: b })).recipient.online).toBe(true);
    await cb.close();
    // Presence of the closed connection goes away (bounded poll).
    const deadline = Date.now() + 3000;
    let online = true;
    while (online && Date.now() < deadline) {
      online = (await ca.request({ type: 'start_conversation', recipientId: b })).recipient.online;
      if (online) await sleep(25);
    }
    expect(online).toBe(false);
  });

  it('exactly 50 messages: all of them, hasMore false', async () => {
    const { b, ca } = await mutualPair(s);
    await burst(ca, b, 50);
    const r = await ca.request({ type: 'start_conversation', recipientId: b });
    expect(r.messages).toHaveLength(50);
    expect(r.hasMore).toBe(false);
    expect(seqs(r)[0]).toBe(1);
  });

  it('an unknown user → NOT_FOUND; oneself or a bad id → BAD_REQUEST', async () => {
    const { a, ca } = await mutualPair(s);
    await expectError(ca, { type: 'start_conversation', recipientId: '876543210' }, 'NOT_FOUND');
    await expectError(ca, { type: 'start_conversation', recipientId: a }, 'BAD_REQUEST', 'recipientId');
    await expectError(ca, { type: 'start_conversation', recipientId: { id: 1 } }, 'BAD_REQUEST', 'recipientId');
    await expectError(ca, { type: 'start_conversation' }, 'BAD_REQUEST', 'recipientId');
  });
});

describe('get_conversations', () => {
  it('lists newest activity first with otherUser, lastMessage and unreadCount', async () => {
    const [x, p, q, r] = await freshUsers(s, 4, [
      [0, 1],
      [0, 2],
      [0, 3],
      [1, 0],
      [2, 0],
      [3, 0],
    ]);
    const cx = await s.login(x!);
    const cp = await s.login(p!);
    const cq = await s.login(q!);
    await sendOk(cp, x!, 'p1');
    await sendOk(cp, x!, 'p2');
    await sleep(5);
    await sendOk(cx, q!, 'to q');
    await sleep(5);
    await sendOk(cx, r!, 'to r');
    await sleep(5);
    const last = await sendOk(cq, x!, 'q back');
    await sleep(5);
    const plast = await sendOk(cp, x!, 'p3');

    const res = await cx.request({ type: 'get_conversations' });
    expect(res).toMatchObject({ type: 'conversations', hasMore: false, nextBefore: null });
    const list = res.conversations as Frame[];
    expect(list.map((c) => c.otherUser.id)).toEqual([p, q, r]);
    expect(list[0]).toMatchObject({
      conversationId: plast.conversationId,
      otherUser: { id: p, username: `u${p}`, displayName: `First${p} Last${p}`, online: true },
      unreadCount: 3,
    });
    expect(list[0]!.lastMessage).toEqual(plast.message);
    expect(list[0]!.updatedAt).toMatch(ISO);
    expect(list[1]).toMatchObject({ unreadCount: 1, otherUser: { id: q, online: true } });
    expect(list[1]!.lastMessage.id).toBe(last.messageId);
    expect(list[2]).toMatchObject({ unreadCount: 0, otherUser: { id: r, online: false } });
    expect(list[2]!.lastMessage.content).toBe('to r');

    // Reading lowers the unread count; the other side's list is independent.
    const read = await cx.request({ type: 'mark_message_read', messageId: plast.messageId });
    expect(read.type).toBe('message_marked_read');
    const res2 = await cx.request({ type: 'get_conversations' });
    expect(res2.conversations[0].unreadCount).toBe(2);
    const pl = await cp.request({ type: 'get_conversations' });
    expect(pl.conversations).toHaveLength(1);
    expect(pl.conversations[0]).toMatchObject({ unreadCount: 0, otherUser: { id: x } });
  });

  it('pages with limit, nextBefore and hasMore without skipping or repeating (even within one millisecond)', async () => {
    const ids = await freshUsers(s, 6);
    const [x, ...others] = ids as [string, ...string[]];
    await s.follow(...others.map((o) => [x, o] as [string, string]));
    const cx = await s.login(x);
    // All five in flight at once: several may share a millisecond.
    await Promise.all(others.map((o, i) => sendOk(cx, o, `hi ${i}`)));
    const seen: string[] = [];
    let before: string | undefined;
    const pages: Frame[] = [];
    for (let i = 0; i < 5; i++) {
      const page = await cx.request({ type: 'get_conversations', limit: 2, ...(before ? { before } : {}) });
      expect(page.type).toBe('conversations');
      pages.push(page);
      seen.push(...page.conversations.map((c: Frame) => c.otherUser.id));
      if (!page.hasMore) break;
      expect(typeof page.nextBefore).toBe('string');
      before = page.nextBefore;
    }
    expect(pages.map((p) => p.conversations.length)).toEqual([2, 2, 1]);
    expect(pages.map((p) => p.hasMore)).toEqual([true, true, false]);
    expect(pages[2]!.nextBefore).toBeNull();
    expect(new Set(seen).size).toBe(5);
    expect([...seen].sort()).toEqual([...others].sort());
    // Order: newest activity first, as in a single page.
    const all = await cx.request({ type: 'get_conversations', limit: 100 });
    expect(all.conversations.map((c: Frame) => c.otherUser.id)).toEqual(seen);
  });

  it('bad limit or cursor → BAD_REQUEST naming the field', async () => {
    const { ca } = await mutualPair(s);
    await expectError(ca, { type: 'get_conversations', limit: 101 }, 'BAD_REQUEST', 'limit');
    await expectError(ca, { type: 'get_conversations', limit: 0 }, 'BAD_REQUEST', 'limit');
    await expectError(ca, { type: 'get_conversations', limit: 'ten' }, 'BAD_REQUEST', 'limit');
    await expectError(ca, { type: 'get_conversations', before: 'garbage' }, 'BAD_REQUEST', 'before');
    await expectError(ca, { type: 'get_conversations', before: 12 }, 'BAD_REQUEST', 'before');
    // Cursors this server never makes: a conversation id with NUL, a time PostgreSQL cannot hold.
    const forged = (t: string) => Buffer.from(t).toString('base64url');
    for (const t of ['2026-01-01T00:00:00.000Z|conv_1_\u0000', '-271821-04-20T00:00:00.000Z|conv_1_2', '-004714-01-01T00:00:00.000Z|conv_1_2', '2026-01-01T00:00:00.000Z|group_x']) {
      await expectError(ca, { type: 'get_conversations', before: forged(t) }, 'BAD_REQUEST', 'before');
    }
    // NUL in a conversation id → BAD_REQUEST, not a database error.
    await expectError(ca, { type: 'delete_conversation', conversationId: 'conv_1_\u0000' }, 'BAD_REQUEST', 'conversationId');
    await expectError(ca, { type: 'get_private_messages', conversationId: 'conv_\u0000' }, 'BAD_REQUEST', 'conversationId');
    await expectError(ca, { type: 'get_group_info', groupId: 'group_\u0000' }, 'BAD_REQUEST', 'groupId');
  });

  it('a conversation with no message left for the viewer is not listed (every entry has its lastMessage)', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const ids = async (c: TestClient) => (await c.request({ type: 'get_conversations' })).conversations.map((x: Frame) => x.otherUser.id);
    // The only message deleted for me: gone from my list, still in the other's.
    const only = await sendOk(ca, b, 'only one');
    await ca.request({ type: 'delete_message', messageId: only.messageId, deleteForEveryone: false });
    expect(await ids(ca)).toEqual([]);
    expect(await ids(cb)).toEqual([a]);
    // Deleted for everyone: gone from both lists; a new message brings it back.
    await ca.request({ type: 'delete_message', messageId: (await sendOk(cb, a, 'b too')).messageId, deleteForEveryone: false });
    await cb.request({ type: 'delete_conversation', conversationId: only.conversationId, deleteForEveryone: true });
    expect([await ids(ca), await ids(cb)]).toEqual([[], []]);
    const again = await sendOk(ca, b, 'again');
    const list = (await cb.request({ type: 'get_conversations' })).conversations;
    expect(list).toHaveLength(1);
    expect(list[0].lastMessage.id).toBe(again.messageId);
  });

  it('online is never shown across a block (§5), whoever blocked', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    await sendOk(ca, b, 'before the block');
    const online = async (c: TestClient) => (await c.request({ type: 'get_conversations' })).conversations[0].otherUser.online;
    expect([await online(ca), await online(cb)]).toEqual([true, true]);
    await addBlock(s.app.db, b, a);
    expect([await online(ca), await online(cb)]).toEqual([false, false]);
  });
});

describe('get_private_messages', () => {
  it('by recipientId and by conversationId give the same history of complete M objects', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const m1 = await sendOk(ca, b, 'one');
    const m2 = await sendOk(cb, a, 'two');
    const byUser = await history(ca, b);
    const byConv = await ca.request({ type: 'get_private_messages', conversationId: m1.conversationId, limit: 100 });
    expect(byConv.type).toBe('private_message_history');
    expect(byUser).toMatchObject({ conversationId: m1.conversationId, total: 2, hasMore: false, offset: 0, limit: 100 });
    expect(byUser.messages).toEqual([m1.message, m2.message]);
    expect(byConv.messages).toEqual(byUser.messages);
    expect(byConv.total).toBe(2);
    const fromB = await cb.request({ type: 'get_private_messages', conversationId: m1.conversationId });
    expect(fromB.messages).toEqual(byUser.messages);
    expect(fromB.limit).toBe(50);
  });

  it('a conversationId the caller is not in → NOT_FOUND (same answer as one that does not exist)', async () => {
    const { a, b, ca } = await mutualPair(s);
    const [c] = await freshUsers(s, 1);
    const cc = await s.login(c!);
    const m = await sendOk(ca, b, 'private');
    const notMine = await expectError(cc, { type: 'get_private_messages', conversationId: m.conversationId }, 'NOT_FOUND');
    const missing = await expectError(cc, { type: 'get_private_messages', conversationId: 'conv_999998_999999' }, 'NOT_FOUND');
    expect(notMine.message).toBe(missing.message);
    const [lo, hi] = a < b ? [a, b] : [b, a];
    for (const cid of ['conv_x', 'group_123', `conv_${hi}_${lo}`, `conv_0${lo}_${hi}`, `${m.conversationId}_`, ` ${m.conversationId}`]) {
      await expectError(ca, { type: 'get_private_messages', conversationId: cid }, 'NOT_FOUND');
    }
    await expectError(ca, { type: 'get_private_messages' }, 'BAD_REQUEST');
  });

  it('offset paging: 0 is the newest page, each page oldest first, with total and hasMore', async () => {
    const { b, ca } = await mutualPair(s);
    await burst(ca, b, 7);
    const p0 = await history(ca, b, { limit: 3, offset: 0 });
    const p1 = await history(ca, b, { limit: 3, offset: 3 });
    const p2 = await history(ca, b, { limit: 3, offset: 6 });
    const p3 = await history(ca, b, { limit: 3, offset: 9 });
    expect([seqs(p0), seqs(p1), seqs(p2), seqs(p3)]).toEqual([[5, 6, 7], [2, 3, 4], [1], []]);
    expect([p0.hasMore, p1.hasMore, p2.hasMore, p3.hasMore]).toEqual([true, true, false, false]);
    expect([p0.total, p1.total, p2.total, p3.total]).toEqual([7, 7, 7, 7]);
    expect([p0.offset, p1.offset, p2.offset]).toEqual([0, 3, 6]);
    expect(p0.limit).toBe(3);
    expect(p0.messages.map((m: Frame) => m.content)).toEqual(['m4', 'm5', 'm6']);
    // No offset = offset 0; numeric strings are accepted.
    expect(seqs(await history(ca, b, { limit: '3' }))).toEqual([5, 6, 7]);
  });

  it('before paging: messages with seq < before, newest of them, oldest first', async () => {
    const { b, ca } = await mutualPair(s);
    await burst(ca, b, 7);
    const r1 = await history(ca, b, { limit: 3, before: 5 });
    expect(seqs(r1)).toEqual([2, 3, 4]);
    expect(r1.hasMore).toBe(true);
    expect(r1.total).toBe(7);
    const r2 = await history(ca, b, { limit: 3, before: 2 });
    expect(seqs(r2)).toEqual([1]);
    expect(r2.hasMore).toBe(false);
    const r3 = await history(ca, b, { limit: 3, before: 1 });
    expect(seqs(r3)).toEqual([]);
    const r4 = await history(ca, b, { limit: 100, before: 1000 });
    expect(seqs(r4)).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('default limit 50; bad limit/offset/before → BAD_REQUEST naming the field', async () => {
    const { b, ca } = await mutualPair(s);
    await burst(ca, b, 52);
    const r = await ca.request({ type: 'get_private_messages', recipientId: b });
    expect(r.messages).toHaveLength(50);
    expect(r).toMatchObject({ hasMore: true, total: 52, limit: 50, offset: 0 });
    expect(seqs(r)[0]).toBe(3);
    await expectError(ca, { type: 'get_private_messages', recipientId: b, limit: 0 }, 'BAD_REQUEST', 'limit');
    await expectError(ca, { type: 'get_private_messages', recipientId: b, limit: 101 }, 'BAD_REQUEST', 'limit');
    await expectError(ca, { type: 'get_private_messages', recipientId: b, limit: 2.5 }, 'BAD_REQUEST', 'limit');
    await expectError(ca, { type: 'get_private_messages', recipientId: b, offset: -1 }, 'BAD_REQUEST', 'offset');
    await expectError(ca, { type: 'get_private_messages', recipientId: b, before: 'x' }, 'BAD_REQUEST', 'before');
    await expectError(ca, { type: 'get_private_messages', recipientId: { b } }, 'BAD_REQUEST', 'recipientId');
  });
});

describe('delete_conversation', () => {
  it('for me: only the actor\'s devices are told, only the actor\'s view empties; new messages show again', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const ca2 = await s.login(a);
    const m1 = await sendOk(ca, b, 'one');
    await sendOk(cb, a, 'two');
    const r = await ca.request({ type: 'delete_conversation', conversationId: m1.conversationId });
    expect(r).toMatchObject({ type: 'conversation_deleted', conversationId: m1.conversationId, deleteForEveryone: false });
    expect(r.timestamp).toMatch(ISO);
    const ev = await ca2.next('conversation_deleted');
    expect(ev).toMatchObject({ conversationId: m1.conversationId, deleteForEveryone: false });
    await cb.none('conversation_deleted', 300);
    await ca.none('conversation_deleted', 10);

    expect((await history(ca, b)).messages).toEqual([]);
    expect((await history(ca, b)).total).toBe(0);
    expect((await history(cb, a)).messages.map((m: Frame) => m.content)).toEqual(['one', 'two']);
    expect((await ca.request({ type: 'get_conversations' })).conversations).toEqual([]);
    expect((await cb.request({ type: 'get_conversations' })).conversations).toHaveLength(1);
    // Bodies are kept for the other participant.
    expect(await count(s, 'private_messages', "conversation_id = $1 AND NOT is_deleted AND length(ciphertext) > 0", [m1.conversationId])).toBe(2);

    await sendOk(cb, a, 'three');
    expect((await history(ca, b)).messages.map((m: Frame) => m.content)).toEqual(['three']);
    expect((await ca.request({ type: 'get_conversations' })).conversations.map((c: Frame) => c.unreadCount)).toEqual([1]);
  });

  it('for everyone: both participants\' devices are told, both histories empty, bodies wiped in the database', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const cb2 = await s.login(b);
    const ca2 = await s.login(a);
    const m1 = await sendOk(ca, b, 'one');
    await sendOk(cb, a, 'two');
    const r = await ca.request({ type: 'delete_conversation', conversationId: m1.conversationId, deleteForEveryone: true });
    expect(r).toMatchObject({ type: 'conversation_deleted', conversationId: m1.conversationId, deleteForEveryone: true });
    for (const c of [ca2, cb, cb2]) expect(await c.next('conversation_deleted')).toMatchObject({ conversationId: m1.conversationId, deleteForEveryone: true });
    await ca.none('conversation_deleted', 200);
    expect((await history(ca, b)).messages).toEqual([]);
    expect((await history(cb, a)).messages).toEqual([]);
    expect(await count(s, 'private_messages', 'conversation_id = $1', [m1.conversationId])).toBe(2);
    expect(await count(s, 'private_messages', 'conversation_id = $1 AND (NOT is_deleted OR length(ciphertext) > 0 OR length(nonce) > 0)', [m1.conversationId])).toBe(0);
  });

  it('a conversation the caller is not in, or that does not exist → NOT_FOUND; nothing changes', async () => {
    const { b, ca } = await mutualPair(s);
    const [c] = await freshUsers(s, 1);
    const cc = await s.login(c!);
    const m = await sendOk(ca, b, 'keep me');
    await expectError(cc, { type: 'delete_conversation', conversationId: m.conversationId, deleteForEveryone: true }, 'NOT_FOUND');
    await expectError(cc, { type: 'delete_conversation', conversationId: m.conversationId }, 'NOT_FOUND');
    await expectError(ca, { type: 'delete_conversation', conversationId: 'conv_1_999999' }, 'NOT_FOUND');
    await expectError(ca, { type: 'delete_conversation' }, 'BAD_REQUEST', 'conversationId');
    await expectError(ca, { type: 'delete_conversation', conversationId: m.conversationId, deleteForEveryone: 'yes' }, 'BAD_REQUEST', 'deleteForEveryone');
    expect((await history(ca, b)).messages.map((x: Frame) => x.content)).toEqual(['keep me']);
    expect(await count(s, 'conversation_deletions', 'conversation_id = $1', [m.conversationId])).toBe(0);
  });
});

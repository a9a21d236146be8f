/**
 * PROTOCOL §6 actions on direct messages: edit (and its window), delete (for me / for
 * everyone, both command names), read receipts and §9 `message_delivered`/`message_status`.
 * Typing, reactions and outsiders are in dm-typing-reactions.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addBlock } from '../../src/store/devData.ts';
import type { Frame } from '../helpers/client.ts';
import { count, dmEvent, expectError, freshUsers, history, ISO, MISSING_ID, mutualPair, sendOk } from '../helpers/dmkit.ts';
import { sleep, startServer, type TestServer } from '../helpers/server.ts';

const EDIT_WINDOW_MS = 600;
const TYPING_TIMEOUT_MS = 800;

let s: TestServer;
beforeAll(async () => {
  s = await startServer({ EDIT_WINDOW_MS: String(EDIT_WINDOW_MS), TYPING_TIMEOUT_MS: String(TYPING_TIMEOUT_MS), PROTOCOL_ERROR_LIMIT: '100000' });
});
afterAll(() => s?.close());

const contents = (h: Frame): string[] => h.messages.map((m: Frame) => m.content);

describe('edit_message (alias edit_private_message)', () => {
  it('edits: reply and message_edited to both participants\' other devices; history shows the new text', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const ca2 = await s.login(a);
    const cb2 = await s.login(b);
    const m = await sendOk(ca, b, 'typo');
    const r = await ca.request({ type: 'edit_message', messageId: m.messageId, newContent: 'fixed' });
    expect(r).toMatchObject({ type: 'message_edited', messageId: m.messageId, conversationId: m.conversationId, newContent: 'fixed' });
    expect(r.editedAt).toMatch(ISO);
    expect(r.timestamp).toMatch(ISO);
    for (const c of [ca2, cb, cb2]) {
      const ev = await c.next('message_edited');
      expect(ev).toMatchObject({ messageId: m.messageId, conversationId: m.conversationId, newContent: 'fixed', editedAt: r.editedAt });
    }
    await ca.none('message_edited', 200);
    for (const [c, other] of [
      [ca, b],
      [cb, a],
    ] as const) {
      const h = await history(c, other);
      expect(h.messages).toHaveLength(1);
      expect(h.messages[0]).toMatchObject({ id: m.messageId, content: 'fixed', isEdited: true, editedAt: r.editedAt, seq: 1 });
    }
  });

  it('the alias edit_private_message with the alias field content works the same', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const m = await sendOk(ca, b, 'v1');
    const r = await ca.request({ type: 'edit_private_message', messageId: m.messageId, content: 'v2' });
    expect(r).toMatchObject({ type: 'message_edited', messageId: m.messageId, newContent: 'v2' });
    expect((await cb.next('message_edited')).newContent).toBe('v2');
    const r2 = await ca.request({ type: 'edit_message', messageId: m.messageId, content: 'v3' });
    expect(r2.newContent).toBe('v3');
    // newContent wins over its alias when both are sent.
    const r3 = await ca.request({ type: 'edit_private_message', messageId: m.messageId, newContent: 'v4', content: 'ignored' });
    expect(r3.newContent).toBe('v4');
    expect(contents(await history(cb, a))).toEqual(['v4']);
  });

  it('someone else\'s message → INSUFFICIENT_PERMISSIONS; nothing changes, nobody is told', async () => {
    const { b, ca, cb } = await mutualPair(s);
    const m = await sendOk(ca, b, 'mine');
    await cb.next('new_private_message');
    await expectError(cb, { type: 'edit_message', messageId: m.messageId, newContent: 'hijacked' }, 'INSUFFICIENT_PERMISSIONS');
    await ca.none('message_edited', 200);
    const h = await history(ca, b);
    expect(h.messages[0]).toMatchObject({ content: 'mine', isEdited: false, editedAt: null });
  });

  it('EDIT_WINDOW_EXPIRED once EDIT_WINDOW_MS has passed; the refused edit changes nothing', async () => {
    const { b, ca, cb } = await mutualPair(s);
    const m = await sendOk(ca, b, 'soon stale');
    const sentAt = Date.parse(m.message.timestamp);
    let lastOk = 'soon stale';
    let r: Frame | undefined;
    const deadline = Date.now() + EDIT_WINDOW_MS + 3000;
    for (let i = 0; Date.now() < deadline; i++) {
      r = await ca.request({ type: 'edit_message', messageId: m.messageId, newContent: `edit ${i}` });
      if (r.type === 'error') break;
      lastOk = `edit ${i}`;
      await sleep(50);
    }
    expect(lastOk).not.toBe('soon stale'); // an edit inside the window worked
    expect(r).toMatchObject({ type: 'error', code: 'EDIT_WINDOW_EXPIRED' });
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual(EDIT_WINDOW_MS - 50);
    expect(contents(await history(cb, m.message.senderId))).toEqual([lastOk]);
  });

  it('bad new content → BAD_REQUEST naming newContent; deleted or unknown message → NOT_FOUND', async () => {
    const { b, ca } = await mutualPair(s);
    const m = await sendOk(ca, b, 'x');
    await expectError(ca, { type: 'edit_message', messageId: m.messageId, newContent: '  ' }, 'BAD_REQUEST', 'newContent');
    await expectError(ca, { type: 'edit_message', messageId: m.messageId, newContent: 'a'.repeat(5001) }, 'BAD_REQUEST', 'newContent');
    await expectError(ca, { type: 'edit_private_message', messageId: m.messageId, content: 'nul\u0000' }, 'BAD_REQUEST', 'newContent');
    await expectError(ca, { type: 'edit_message', messageId: m.messageId }, 'BAD_REQUEST', 'newContent');
    await expectError(ca, { type: 'edit_message', messageId: 'nope', newContent: 'y' }, 'BAD_REQUEST', 'messageId');
    await expectError(ca, { type: 'edit_message', messageId: MISSING_ID, newContent: 'y' }, 'NOT_FOUND');
    await ca.request({ type: 'delete_message', messageId: m.messageId, deleteForEveryone: true });
    await expectError(ca, { type: 'edit_message', messageId: m.messageId, newContent: 'y' }, 'NOT_FOUND');
  });
});

describe('delete_message / delete_private_message', () => {
  it('delete_message defaults to "for me": only the actor\'s devices are told; the other still sees it', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const ca2 = await s.login(a);
    const m = await sendOk(ca, b, 'regret');
    await sendOk(ca, b, 'keep');
    const r = await ca.request({ type: 'delete_message', messageId: m.messageId });
    expect(r).toMatchObject({ type: 'message_deleted', messageId: m.messageId, conversationId: m.conversationId, deleteForEveryone: false });
    expect(r.timestamp).toMatch(ISO);
    expect(await ca2.next('message_deleted')).toMatchObject({ messageId: m.messageId, deleteForEveryone: false });
    await cb.none('message_deleted', 250);
    expect(contents(await history(ca, b))).toEqual(['keep']);
    expect((await history(ca, b)).total).toBe(1);
    expect(contents(await history(cb, a))).toEqual(['regret', 'keep']);
    expect(await count(s, 'private_messages', 'id = $1 AND NOT is_deleted AND length(ciphertext) > 0', [m.messageId])).toBe(1);
  });

  it('deleteForEveryone: both participants\' devices are told; gone from both histories; body wiped in the database', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const cb2 = await s.login(b);
    const m = await sendOk(ca, b, 'oops everyone');
    await ca.request({ type: 'add_reaction', messageId: m.messageId, reaction: 'x' });
    const r = await ca.request({ type: 'delete_message', messageId: m.messageId, deleteForEveryone: true });
    expect(r).toMatchObject({ type: 'message_deleted', messageId: m.messageId, deleteForEveryone: true });
    for (const c of [cb, cb2]) expect(await c.next('message_deleted')).toMatchObject({ messageId: m.messageId, conversationId: m.conversationId, deleteForEveryone: true });
    expect(contents(await history(ca, b))).toEqual([]);
    expect(contents(await history(cb, a))).toEqual([]);
    const { rows } = await s.app.db.query<{ is_deleted: boolean; n: number; c: number }>(
      'SELECT is_deleted, length(nonce) AS n, length(ciphertext) AS c FROM private_messages WHERE id = $1',
      [m.messageId],
    );
    expect(rows).toEqual([{ is_deleted: true, n: 0, c: 0 }]);
    expect(await count(s, 'message_reactions', 'message_id = $1', [m.messageId])).toBe(0);
    // Gone means gone for every action.
    await expectError(cb, { type: 'mark_message_read', messageId: m.messageId }, 'NOT_FOUND');
    await expectError(cb, { type: 'add_reaction', messageId: m.messageId, reaction: 'y' }, 'NOT_FOUND');
    await expectError(ca, { type: 'delete_message', messageId: m.messageId, deleteForEveryone: true }, 'NOT_FOUND');
  });

  it('delete_private_message defaults to for everyone when the caller is the sender (production clients)', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const m = await sendOk(ca, b, 'unsend');
    const r = await ca.request({ type: 'delete_private_message', messageId: m.messageId });
    expect(r).toMatchObject({ type: 'message_deleted', messageId: m.messageId, deleteForEveryone: true });
    expect(await cb.next('message_deleted')).toMatchObject({ messageId: m.messageId, deleteForEveryone: true });
    expect(contents(await history(cb, a))).toEqual([]);
  });

  it('delete_private_message defaults to for me when the caller is the recipient', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const m = await sendOk(ca, b, 'hide for b');
    const r = await cb.request({ type: 'delete_private_message', messageId: m.messageId });
    expect(r).toMatchObject({ type: 'message_deleted', messageId: m.messageId, deleteForEveryone: false });
    await ca.none('message_deleted', 250);
    expect(contents(await history(cb, a))).toEqual([]);
    expect(contents(await history(ca, b))).toEqual(['hide for b']);
  });

  it('deleting someone else\'s message for everyone is refused (both command names); nothing changes', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const m = await sendOk(ca, b, 'not yours');
    await expectError(cb, { type: 'delete_message', messageId: m.messageId, deleteForEveryone: true }, 'INSUFFICIENT_PERMISSIONS');
    await expectError(cb, { type: 'delete_private_message', messageId: m.messageId, deleteForEveryone: true }, 'INSUFFICIENT_PERMISSIONS');
    await ca.none('message_deleted', 200);
    expect(contents(await history(ca, b))).toEqual(['not yours']);
    expect(contents(await history(cb, a))).toEqual(['not yours']);
    await expectError(cb, { type: 'delete_message', messageId: m.messageId, deleteForEveryone: 'true' }, 'BAD_REQUEST', 'deleteForEveryone');
  });
});

describe('mark_message_read and message_delivered', () => {
  it('read: sender\'s devices get message_read and message_status read; reader\'s other devices message_marked_read; history and unreadCount follow', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const ca2 = await s.login(a);
    const cb2 = await s.login(b);
    const m = await sendOk(ca, b, 'read me');
    await sendOk(ca, b, 'unread');
    expect((await cb.request({ type: 'get_conversations' })).conversations[0].unreadCount).toBe(2);

    const r = await cb.request({ type: 'mark_message_read', messageId: m.messageId, conversationId: 'ignored extra' });
    expect(r).toMatchObject({ type: 'message_marked_read', messageId: m.messageId, conversationId: m.conversationId });
    expect(r.timestamp).toMatch(ISO);
    for (const c of [ca, ca2]) {
      const read = await c.next('message_read');
      expect(read).toMatchObject({ messageId: m.messageId, conversationId: m.conversationId, readBy: b });
      expect(read.timestamp).toMatch(ISO);
      const st = await c.next('message_status');
      expect(st).toMatchObject({ messageId: m.messageId, status: 'read', userId: b });
      expect(st.timestamp).toMatch(ISO);
    }
    expect(await cb2.next('message_marked_read')).toMatchObject({ messageId: m.messageId, conversationId: m.conversationId });
    await cb.none('message_marked_read', 200);

    for (const [c, other] of [
      [ca, b],
      [cb, a],
    ] as const) {
      const h = await history(c, other);
      expect(h.messages[0]).toMatchObject({ id: m.messageId, isRead: true });
      expect(h.messages[0].readAt).toMatch(ISO);
      expect(h.messages[1]).toMatchObject({ isRead: false, readAt: null });
    }
    expect((await cb.request({ type: 'get_conversations' })).conversations[0].unreadCount).toBe(1);

    // Reading again: one reply, no new events. The sender "reading" their own message changes nothing.
    expect((await cb.request({ type: 'mark_message_read', messageId: m.messageId })).type).toBe('message_marked_read');
    const own = await sendOk(ca, b, 'own');
    expect((await ca.request({ type: 'mark_message_read', messageId: own.messageId })).type).toBe('message_marked_read');
    await Promise.all([ca.none('message_read', 250), ca2.none('message_read', 10), cb2.none('message_marked_read', 10)]);
    expect((await history(ca, b)).messages[2].isRead).toBe(false);
  });

  it('delivered: the sender\'s devices get message_status delivered; only ids received by the caller count, once', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const ca2 = await s.login(a);
    const m1 = await sendOk(ca, b, 'd1');
    const m2 = await sendOk(ca, b, 'd2');
    const back = await sendOk(cb, a, 'from b');
    const r = await cb.request({ type: 'message_delivered', messageIds: [m1.messageId, m2.messageId, m1.messageId, back.messageId, MISSING_ID] });
    expect(r.type).toBe('message_delivered_ack');
    expect([...r.messageIds].sort()).toEqual([m1.messageId, m2.messageId].sort());
    for (const c of [ca, ca2]) {
      const got = [await c.next('message_status'), await c.next('message_status')];
      expect(got.map((f) => f.messageId).sort()).toEqual([m1.messageId, m2.messageId].sort());
      for (const f of got) {
        expect(f).toMatchObject({ status: 'delivered', userId: b, conversationId: m1.conversationId });
        expect(f.timestamp).toMatch(ISO);
      }
    }
    expect(await count(s, 'private_messages', 'id = ANY($1::uuid[]) AND delivered_at IS NOT NULL', [[m1.messageId, m2.messageId]])).toBe(2);
    expect(await count(s, 'private_messages', 'id = $1 AND delivered_at IS NULL', [back.messageId])).toBe(1);
    const again = await cb.request({ type: 'message_delivered', messageIds: [m1.messageId] });
    expect(again.messageIds).toEqual([]);
    await ca.none('message_status', 250);
    await expectError(cb, { type: 'message_delivered', messageIds: [] }, 'BAD_REQUEST', 'messageIds');
    await expectError(cb, { type: 'message_delivered', messageIds: ['x'] }, 'BAD_REQUEST', 'messageIds');
    await expectError(cb, { type: 'message_delivered', messageIds: m1.messageId }, 'BAD_REQUEST', 'messageIds');
  });

  it('delivery receipts from an outsider are ignored', async () => {
    const { b, ca } = await mutualPair(s);
    const [c] = await freshUsers(s, 1);
    const cc = await s.login(c!);
    const m = await sendOk(ca, b, 'not for c');
    const r = await cc.request({ type: 'message_delivered', messageIds: [m.messageId] });
    expect(r.messageIds).toEqual([]);
    await ca.none('message_status', 250);
  });
});

describe('EDIT_WINDOW_MS=0', () => {
  let s0: TestServer;
  beforeAll(async () => {
    s0 = await startServer({ EDIT_WINDOW_MS: '0' });
  });
  afterAll(() => s0?.close());

  it('edits are unlimited in time', async () => {
    const { b, ca } = await mutualPair(s0);
    const m = await sendOk(ca, b, 'ancient');
    await s0.app.db.query("UPDATE private_messages SET created_at = now() - interval '400 days' WHERE id = $1", [m.messageId]);
    const r = await ca.request({ type: 'edit_message', messageId: m.messageId, newContent: 'still editable' });
    expect(r).toMatchObject({ type: 'message_edited', newContent: 'still editable' });
    expect((await history(ca, b)).messages[0]).toMatchObject({ content: 'still editable', isEdited: true });
  });
});

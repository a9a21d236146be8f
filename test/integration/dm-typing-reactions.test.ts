/**
 * PROTOCOL §6 typing and reactions on direct messages; outsiders get NOT_FOUND, never a
 * leak. (Split from dm-actions.test.ts.)
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

describe('typing', () => {
  it('forwards typing_indicator with the §6 fields, replies typing_indicator_sent, and expires to isTyping:false after TYPING_TIMEOUT_MS', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const ca2 = await s.login(a);
    const cb2 = await s.login(b);
    const r = await ca.request({ type: 'typing', recipientId: Number(b), isTyping: true });
    expect(r).toMatchObject({ type: 'typing_indicator_sent', recipientId: b, isTyping: true });
    expect(r.timestamp).toMatch(ISO);
    const conv = a < b ? `conv_${a}_${b}` : `conv_${b}_${a}`;
    const evs = [await cb.next('typing_indicator'), await cb2.next('typing_indicator')];
    const startedAt = Date.now();
    for (const ev of evs) {
      expect(ev).toMatchObject({ senderId: a, userId: a, senderUsername: `u${a}`, conversationId: conv, isTyping: true });
      expect(ev.timestamp).toMatch(ISO);
    }
    const stop = await cb.next((f) => f.type === 'typing_indicator' && f.isTyping === false, TYPING_TIMEOUT_MS + 3000);
    const elapsed = Date.now() - startedAt;
    expect(stop).toMatchObject({ senderId: a, userId: a, conversationId: conv, isTyping: false });
    expect(elapsed).toBeGreaterThanOrEqual(TYPING_TIMEOUT_MS - 250);
    await cb2.next((f) => f.type === 'typing_indicator' && f.isTyping === false, 1000);
    // The typist's own devices are not told.
    await Promise.all([ca.none('typing_indicator', 100), ca2.none('typing_indicator', 10)]);
  });

  it('refreshing keeps the indicator alive; isTyping:false ends it at once', async () => {
    const { b, ca, cb } = await mutualPair(s);
    await ca.request({ type: 'typing', recipientId: b, isTyping: true });
    await cb.next('typing_indicator');
    // Refresh twice inside the timeout: no isTyping:false in between.
    for (let i = 0; i < 2; i++) {
      await sleep(TYPING_TIMEOUT_MS / 2);
      await ca.request({ type: 'typing', recipientId: b });
      expect((await cb.next('typing_indicator')).isTyping).toBe(true);
    }
    const t0 = Date.now();
    const r = await ca.request({ type: 'typing', recipientId: b, isTyping: false });
    expect(r).toMatchObject({ type: 'typing_indicator_sent', isTyping: false });
    const stop = await cb.next('typing_indicator', 2000);
    expect(stop.isTyping).toBe(false);
    expect(Date.now() - t0).toBeLessThan(TYPING_TIMEOUT_MS / 2);
    await cb.none('typing_indicator', TYPING_TIMEOUT_MS + 200);
  });

  it('disconnect of the typist → isTyping:false before the timeout', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    await ca.request({ type: 'typing', recipientId: b, isTyping: true });
    await cb.next('typing_indicator');
    const t0 = Date.now();
    await ca.close();
    const stop = await cb.next('typing_indicator', 3000);
    expect(stop).toMatchObject({ senderId: a, isTyping: false });
    expect(Date.now() - t0).toBeLessThan(TYPING_TIMEOUT_MS - 200);
  });

  it('typing to a blocked (either direction) or unknown user is dropped silently but still replied to', async () => {
    const [a, b, c] = await freshUsers(s, 3, [
      [0, 1],
      [1, 0],
      [0, 2],
    ]);
    await addBlock(s.app.db, b!, a!); // b blocked a
    await addBlock(s.app.db, a!, c!); // a blocked c
    const ca = await s.login(a!);
    const cb = await s.login(b!);
    const cc = await s.login(c!);
    expect(await ca.request({ type: 'typing', recipientId: b, isTyping: true })).toMatchObject({ type: 'typing_indicator_sent', recipientId: b, isTyping: true });
    expect(await cb.request({ type: 'typing', recipientId: a, isTyping: true })).toMatchObject({ type: 'typing_indicator_sent' });
    expect(await ca.request({ type: 'typing', recipientId: c, isTyping: true })).toMatchObject({ type: 'typing_indicator_sent' });
    expect(await cc.request({ type: 'typing', recipientId: a, isTyping: true })).toMatchObject({ type: 'typing_indicator_sent' });
    expect(await ca.request({ type: 'typing', recipientId: '876543219', isTyping: true })).toMatchObject({ type: 'typing_indicator_sent' });
    await Promise.all([
      ca.none('typing_indicator', TYPING_TIMEOUT_MS + 300),
      cb.none('typing_indicator', 10),
      cc.none('typing_indicator', 10),
    ]);
  });

  it('an indicator running when a block appears ends silently: no isTyping:false on refresh, stop or timeout', async () => {
    for (const how of ['refresh', 'stop', 'timeout'] as const) {
      const { a, b, ca, cb } = await mutualPair(s);
      await ca.request({ type: 'typing', recipientId: b, isTyping: true });
      await cb.next('typing_indicator');
      await addBlock(s.app.db, b, a);
      if (how === 'refresh') await ca.request({ type: 'typing', recipientId: b, isTyping: true });
      if (how === 'stop') await ca.request({ type: 'typing', recipientId: b, isTyping: false });
      await cb.none('typing_indicator', how === 'stop' ? 300 : TYPING_TIMEOUT_MS + 300);
    }
  });

  it('bad typing frames → BAD_REQUEST', async () => {
    const { b, ca } = await mutualPair(s);
    await expectError(ca, { type: 'typing', recipientId: b, isTyping: 'yes' }, 'BAD_REQUEST', 'isTyping');
    await expectError(ca, { type: 'typing', isTyping: true }, 'BAD_REQUEST', 'recipientId');
    await expectError(ca, { type: 'typing', recipientId: -4 }, 'BAD_REQUEST', 'recipientId');
  });
});

describe('reactions', () => {
  it('add and remove (field reaction or alias emoji): both participants told; REACTION_EXISTS / REACTION_NOT_FOUND; history shows summaries', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const ca2 = await s.login(a);
    const m = await sendOk(ca, b, 'react to me');
    await cb.next('new_private_message');

    const r1 = await ca.request({ type: 'add_reaction', messageId: m.messageId, reaction: '👍' });
    expect(r1).toMatchObject({
      type: 'reaction_added',
      messageId: m.messageId,
      conversationId: m.conversationId,
      reaction: { userId: a, username: `u${a}`, reaction: '👍' },
      emoji: '👍',
    });
    expect(r1.reaction.timestamp).toMatch(ISO);
    expect(r1.timestamp).toMatch(ISO);
    for (const c of [cb, ca2]) expect(await c.next('reaction_added')).toMatchObject({ messageId: m.messageId, reaction: { userId: a, reaction: '👍' }, emoji: '👍' });
    await ca.none('reaction_added', 100);

    const r2 = await cb.request({ type: 'add_reaction', messageId: m.messageId, emoji: '👍', conversationId: 'extra ignored' });
    expect(r2).toMatchObject({ type: 'reaction_added', reaction: { userId: b, reaction: '👍' }, emoji: '👍' });
    for (const c of [ca, ca2]) expect((await c.next('reaction_added')).reaction.userId).toBe(b);
    await sleep(5);
    await ca.request({ type: 'add_reaction', messageId: m.messageId, emoji: '❤️' });
    await expectError(ca, { type: 'add_reaction', messageId: m.messageId, reaction: '👍' }, 'REACTION_EXISTS');
    await expectError(ca, { type: 'add_reaction', messageId: m.messageId, emoji: '❤️' }, 'REACTION_EXISTS');

    const expected = [
      { reaction: '👍', count: 2, userIds: [a, b] },
      { reaction: '❤️', count: 1, userIds: [a] },
    ];
    expect((await history(ca, b)).messages[0].reactions).toEqual(expected);
    expect((await history(cb, a)).messages[0].reactions).toEqual(expected);
    expect((await ca.request({ type: 'get_conversations' })).conversations[0].lastMessage.reactions).toEqual(expected);
    expect(await count(s, 'message_reactions', 'message_id = $1', [m.messageId])).toBe(3);

    cb.clear();
    const rm = await ca.request({ type: 'remove_reaction', messageId: m.messageId, emoji: '👍' });
    expect(rm).toMatchObject({ type: 'reaction_removed', messageId: m.messageId, reaction: { userId: a, reaction: '👍' }, emoji: '👍' });
    expect(await cb.next('reaction_removed')).toMatchObject({ messageId: m.messageId, conversationId: m.conversationId, emoji: '👍', reaction: { userId: a } });
    expect(await ca2.next('reaction_removed')).toMatchObject({ emoji: '👍' });
    await expectError(ca, { type: 'remove_reaction', messageId: m.messageId, reaction: '👍' }, 'REACTION_NOT_FOUND');
    await expectError(ca, { type: 'remove_reaction', messageId: m.messageId, reaction: '🎉' }, 'REACTION_NOT_FOUND');
    expect((await history(cb, a)).messages[0].reactions).toEqual([
      { reaction: '👍', count: 1, userIds: [b] },
      { reaction: '❤️', count: 1, userIds: [a] },
    ]);
  });

  it('a reaction is 1..16 code points: 16 astral emoji pass, 17 → BAD_REQUEST field reaction', async () => {
    const { a, b, ca } = await mutualPair(s);
    const m = await sendOk(ca, b, 'limits');
    const e16 = '\u{1F600}'.repeat(16);
    expect(e16.length).toBe(32);
    expect((await ca.request({ type: 'add_reaction', messageId: m.messageId, reaction: e16 })).type).toBe('reaction_added');
    await expectError(ca, { type: 'add_reaction', messageId: m.messageId, reaction: '\u{1F600}'.repeat(17) }, 'BAD_REQUEST', 'reaction');
    await expectError(ca, { type: 'add_reaction', messageId: m.messageId, emoji: 'abcdefghijklmnopq' }, 'BAD_REQUEST', 'reaction');
    await expectError(ca, { type: 'add_reaction', messageId: m.messageId, reaction: '' }, 'BAD_REQUEST', 'reaction');
    await expectError(ca, { type: 'add_reaction', messageId: m.messageId, reaction: '   ' }, 'BAD_REQUEST', 'reaction');
    await expectError(ca, { type: 'add_reaction', messageId: m.messageId, reaction: 5 }, 'BAD_REQUEST', 'reaction');
    await expectError(ca, { type: 'add_reaction', messageId: m.messageId }, 'BAD_REQUEST', 'reaction');
    expect((await history(ca, b)).messages[0].reactions).toEqual([{ reaction: e16, count: 1, userIds: [a] }]);
  });
});

describe('outsiders: NOT_FOUND, no existence leak', () => {
  it('reading, reacting, editing and deleting in a conversation one is not in → NOT_FOUND, same as a missing message; nobody is told', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const [c] = await freshUsers(s, 1, []);
    await s.follow([c!, a], [c!, b]);
    const cc = await s.login(c!);
    const m = await sendOk(ca, b, 'secret');
    await cb.next('new_private_message');
    const frames: Record<string, unknown>[] = [
      { type: 'mark_message_read', messageId: '%ID%' },
      { type: 'add_reaction', messageId: '%ID%', reaction: '👀' },
      { type: 'remove_reaction', messageId: '%ID%', reaction: '👀' },
      { type: 'edit_message', messageId: '%ID%', newContent: 'mine now' },
      { type: 'edit_private_message', messageId: '%ID%', content: 'mine now' },
      { type: 'delete_message', messageId: '%ID%' },
      { type: 'delete_message', messageId: '%ID%', deleteForEveryone: true },
      { type: 'delete_private_message', messageId: '%ID%' },
    ];
    for (const f of frames) {
      const real = await expectError(cc, { ...f, messageId: m.messageId }, 'NOT_FOUND');
      const missing = await expectError(cc, { ...f, messageId: MISSING_ID }, 'NOT_FOUND');
      expect({ ...real, requestId: undefined, timestamp: undefined }).toEqual({ ...missing, requestId: undefined, timestamp: undefined });
    }
    // A reply quoting it from c's own conversation with a is refused the same way.
    await expectError(cc, { type: 'send_private_message', recipientId: a, content: 'q', replyTo: m.messageId }, 'NOT_FOUND', 'replyTo');
    await Promise.all([ca.none(dmEvent, 250), cb.none(dmEvent, 10)]);
    const h = await history(ca, b);
    expect(h.messages[0]).toMatchObject({ content: 'secret', isRead: false, isEdited: false, reactions: [] });
    expect(await count(s, 'message_deletions', 'message_id = $1', [m.messageId])).toBe(0);
  });
});

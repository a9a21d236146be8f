/**
 * PROTOCOL §7 group messages: mentions, pins, announcements, reactions and §5 blocks in
 * groups (live, history, sync, typing, mentions, pins, unread). Paging, send details,
 * typing, read positions and listings are in groups-history.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addBlock } from '../../src/store/devData.ts';
import type { Frame } from '../helpers/client.ts';
import { ISO, MISSING_ID, UUID7, allGet, newMsg, userGroup, expectError, freshUsers, groupHistory, idsOf, makeGroup, ok, say, syncUntil, type Who } from '../helpers/groupkit.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startServer({ TYPING_TIMEOUT_MS: '400' });
});
afterAll(() => s?.close());

const mentionedOf = (id: string) => (f: Frame) => f.type === 'mentioned_in_group' && f.messageId === id;

describe('mentions', () => {
  it('@name case-insensitively, at the start or after white space; e-mails, self, non-members and duplicates ignored', async () => {
    const g = await makeGroup(s, { members: 3 });
    const [a, b, c] = g.members as [Who, Who, Who];
    const [stranger] = await freshUsers(s, 1);
    const senderOther = await s.login(g.owner.id);
    const content = `@U${a.id} hi\n@u${a.id} again;\tmail u${b.id}@example.com or x@u${b.id} ; @u${g.owner.id} @u${stranger} @U${c.id}`;
    const m = await say(g.owner, g.groupId, content);
    expect(m.mentions).toEqual([
      { type: 'user', userId: a.id, username: `u${a.id}` },
      { type: 'user', userId: c.id, username: `u${c.id}` },
    ]);
    expect(m.content).toBe(content);
    for (const w of [a, c]) {
      const f = await w.c.next(mentionedOf(m.id));
      expect(f).toMatchObject({ groupId: g.groupId, mentionedBy: g.owner.id, mentionedByUsername: `u${g.owner.id}`, message: { id: m.id, content, mentions: m.mentions } });
      expect(f.timestamp).toMatch(ISO);
      await w.c.next(newMsg(m.id));
      await w.c.none(mentionedOf(m.id), 50); // no duplicates
    }
    await b.c.next(newMsg(m.id));
    await b.c.none('mentioned_in_group', 100);
    await g.owner.c.none('mentioned_in_group', 50);
    expect((await senderOther.next('group_message_sent')).message.id).toBe(m.id);
    await senderOther.none('mentioned_in_group', 50);
    // Stored with the message.
    expect((await groupHistory(b, g.groupId)).messages[0].mentions).toEqual(m.mentions);
  });

  it.each(['everyone', 'all', 'EveryOne', 'ALL'])('@%s addresses all members but the sender, once each', async (word) => {
    const g = await makeGroup(s, { admins: 1, members: 2 });
    const me = g.members[0]!;
    const m = await say(me, g.groupId, `hey @${word} and @u${g.admins[0]!.id} and @${word}`);
    expect(m.mentions).toEqual([{ type: 'user', userId: g.admins[0]!.id, username: `u${g.admins[0]!.id}` }, { type: 'everyone' }]);
    for (const w of [g.owner, g.admins[0]!, g.members[1]!]) {
      expect((await w.c.next(mentionedOf(m.id))).mentionedBy).toBe(me.id);
      await w.c.none(mentionedOf(m.id), 50);
    }
    await me.c.none('mentioned_in_group', 50);
  });

  it('no mention: a word with @ inside, @ alone, or text without any', async () => {
    const g = await makeGroup(s, { members: 1 });
    const m = await say(g.owner, g.groupId, `a@everyone @ everyone me@u${g.members[0]!.id}.com`);
    expect(m.mentions).toEqual([]);
    await g.members[0]!.c.next(newMsg(m.id));
    await g.members[0]!.c.none('mentioned_in_group', 100);
  });
});

describe('pins and announcements', () => {
  it('several pins: get_pinned_messages → latest in message, all newest first, pin fields; unpin; NOT_FOUND cases', async () => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    const other = await makeGroup(s, {});
    const [m1, m2, m3, m4] = [await say(g.members[0]!, g.groupId, 'one'), await say(g.owner, g.groupId, 'two'), await say(g.admins[0]!, g.groupId, 'three'), await say(g.owner, g.groupId, 'four')];
    const foreign = await say(other.owner, other.groupId, 'elsewhere');
    const empty = await ok(g.members[0]!.c, { type: 'get_pinned_messages', groupId: g.groupId }, 'pinned_message');
    expect(empty).toMatchObject({ groupId: g.groupId, message: null, messages: [] });
    await ok(g.owner.c, { type: 'pin_message', groupId: g.groupId, messageId: m2!.id }, 'message_pinned');
    await ok(g.admins[0]!.c, { type: 'pin_message', groupId: g.groupId, messageId: m1!.id }, 'message_pinned');
    await ok(g.owner.c, { type: 'pin_message', groupId: g.groupId, messageId: m3!.id }, 'message_pinned');
    const p = await ok(g.members[0]!.c, { type: 'get_pinned_messages', groupId: g.groupId }, 'pinned_message');
    expect((p.messages as Frame[]).map((x) => x.id)).toEqual([m3!.id, m1!.id, m2!.id]);
    expect(p.message).toEqual(p.messages[0]);
    const pin1 = (p.messages as Frame[])[1]!;
    expect(pin1).toEqual({
      messageId: m1!.id,
      id: m1!.id,
      senderId: g.members[0]!.id,
      username: `u${g.members[0]!.id}`,
      content: 'one',
      createdAt: m1!.timestamp,
      pinnedAt: expect.stringMatching(ISO),
      pinnedBy: g.admins[0]!.id,
      isAnnouncement: false,
    });
    const pinnedAts = (p.messages as Frame[]).map((x) => x.pinnedAt as string);
    expect([...pinnedAts].sort().reverse()).toEqual(pinnedAts);
    // History shows pin state.
    const h = await groupHistory(g.members[0]!, g.groupId);
    expect(Object.fromEntries((h.messages as Frame[]).map((x) => [x.content, x.isPinned]))).toEqual({ one: true, two: true, three: true, four: false });
    // Unpin, then unpinning again or a never-pinned message → NOT_FOUND.
    await ok(g.admins[0]!.c, { type: 'unpin_message', groupId: g.groupId, messageId: m1!.id }, 'message_unpinned');
    await expectError(g.admins[0]!.c, { type: 'unpin_message', groupId: g.groupId, messageId: m1!.id }, 'NOT_FOUND');
    await expectError(g.owner.c, { type: 'unpin_message', groupId: g.groupId, messageId: m4!.id }, 'NOT_FOUND');
    await expectError(g.owner.c, { type: 'pin_message', groupId: g.groupId, messageId: MISSING_ID }, 'NOT_FOUND');
    await expectError(g.owner.c, { type: 'pin_message', groupId: g.groupId, messageId: foreign.id }, 'NOT_FOUND');
    await expectError(g.owner.c, { type: 'unpin_message', groupId: g.groupId, messageId: foreign.id }, 'NOT_FOUND');
    expect((await ok(g.owner.c, { type: 'get_pinned_messages', groupId: g.groupId }, 'pinned_message')).messages.map((x: Frame) => x.id)).toEqual([m3!.id, m2!.id]);
    // A pinned message deleted for everyone leaves the pins.
    await ok(g.admins[0]!.c, { type: 'delete_group_message', messageId: m3!.id, deleteForEveryone: true }, 'group_message_deleted');
    const after = await ok(g.owner.c, { type: 'get_pinned_messages', groupId: g.groupId }, 'pinned_message');
    expect(after.messages.map((x: Frame) => x.id)).toEqual([m2!.id]);
    expect(after.message.id).toBe(m2!.id);
    expect((await ok(other.owner.c, { type: 'get_pinned_messages', groupId: other.groupId }, 'pinned_message')).messages).toEqual([]);
  });

  it('send_announcement: announcement_sent (G flat + message), new_announcement to members, isAnnouncement, pinned; a member cannot', async () => {
    const g = await makeGroup(s, { admins: 1, members: 2 });
    const adminOther = await s.login(g.admins[0]!.id);
    const r = await ok(g.admins[0]!.c, { type: 'send_announcement', groupId: g.groupId, content: `Read this @u${g.members[0]!.id}` }, 'announcement_sent');
    const G = r.message as Frame;
    expect(G).toMatchObject({ groupId: g.groupId, senderId: g.admins[0]!.id, username: `u${g.admins[0]!.id}`, content: `Read this @u${g.members[0]!.id}`, isAnnouncement: true, isPinned: true, isEdited: false, editedAt: null, replyTo: null, reactions: [] });
    expect(G.id).toMatch(UUID7);
    expect(G.messageId).toBe(G.id);
    for (const k of ['id', 'messageId', 'groupId', 'senderId', 'username', 'content', 'timestamp', 'replyTo', 'mentions', 'isEdited', 'editedAt', 'isAnnouncement', 'isPinned', 'seq', 'clientMessageId', 'reactions']) {
      expect(r[k], k).toEqual(G[k]);
    }
    for (const w of [g.owner, ...g.members]) {
      const f = await w.c.next('new_announcement');
      expect(f.message).toEqual(G);
      expect(f).toMatchObject({ id: G.id, content: G.content, isAnnouncement: true, isPinned: true, groupId: g.groupId });
      await w.c.none('new_group_message', 50);
    }
    expect((await g.members[0]!.c.next(mentionedOf(G.id as string))).message.isAnnouncement).toBe(true);
    expect((await adminOther.next('announcement_sent')).message.id).toBe(G.id);
    const pins = await ok(g.members[1]!.c, { type: 'get_pinned_messages', groupId: g.groupId }, 'pinned_message');
    expect(pins.message).toMatchObject({ id: G.id, isAnnouncement: true, pinnedBy: g.admins[0]!.id, content: G.content });
    const h = await groupHistory(g.members[1]!, g.groupId);
    expect(h.messages[0]).toMatchObject({ id: G.id, isAnnouncement: true, isPinned: true });
    const normal = await say(g.owner, g.groupId, 'plain');
    expect(normal).toMatchObject({ isAnnouncement: false, isPinned: false });
    await expectError(g.members[0]!.c, { type: 'send_announcement', groupId: g.groupId, content: 'me too' }, 'INSUFFICIENT_PERMISSIONS');
    expect(idsOf(await groupHistory(g.owner, g.groupId))).toEqual([G.id, normal.id]);
  });

  it('sync shows the pin state as history does: a pinned message true, an unpinned announcement false', async () => {
    const g = await makeGroup(s, { members: 1 });
    const plain = await say(g.owner, g.groupId, 'pin me');
    const ann = (await ok(g.owner.c, { type: 'send_announcement', groupId: g.groupId, content: 'unpin me' }, 'announcement_sent')).message as Frame;
    await ok(g.owner.c, { type: 'pin_message', groupId: g.groupId, messageId: plain.id }, 'message_pinned');
    await ok(g.owner.c, { type: 'unpin_message', groupId: g.groupId, messageId: ann.id }, 'message_unpinned');
    const pinState = (msgs: Frame[]) => Object.fromEntries(msgs.filter((m) => m.groupId === g.groupId).map((m) => [m.content, m.isPinned]));
    const want = { 'pin me': true, 'unpin me': false };
    expect(pinState((await groupHistory(g.members[0]!, g.groupId)).messages)).toEqual(want);
    const r = await syncUntil(g.members[0]!, undefined, (x) => Object.keys(pinState(x.messages)).length === 2);
    expect(pinState(r.messages)).toEqual(want);
  });
});

describe('reactions', () => {
  it('add/remove_group_reaction (alias emoji), REACTION_EXISTS / REACTION_NOT_FOUND, persisted in history', async () => {
    const g = await makeGroup(s, { members: 2 });
    const [a, b] = g.members as [Who, Who];
    const m = await say(g.owner, g.groupId, 'react here');
    const r = await ok(a.c, { type: 'add_group_reaction', messageId: m.id, emoji: '🔥' }, 'group_reaction_added');
    expect(r).toMatchObject({ messageId: m.id, groupId: g.groupId, emoji: '🔥', reaction: { userId: a.id, username: `u${a.id}`, reaction: '🔥' } });
    expect(r.reaction.timestamp).toMatch(ISO);
    for (const f of await allGet([g.owner, b], 'group_reaction_added')) expect(f).toMatchObject({ messageId: m.id, emoji: '🔥', reaction: { userId: a.id } });
    await expectError(a.c, { type: 'add_group_reaction', messageId: m.id, emoji: '🔥' }, 'REACTION_EXISTS');
    await expectError(a.c, { type: 'add_group_reaction', messageId: m.id, reaction: '🔥' }, 'REACTION_EXISTS');
    await ok(b.c, { type: 'add_group_reaction', messageId: m.id, reaction: '🔥' }, 'group_reaction_added');
    await ok(b.c, { type: 'add_group_reaction', messageId: m.id, reaction: '👍' }, 'group_reaction_added');
    let h = await groupHistory(g.owner, g.groupId);
    expect(h.messages[0].reactions).toEqual(
      expect.arrayContaining([
        { reaction: '🔥', count: 2, userIds: [a.id, b.id] },
        { reaction: '👍', count: 1, userIds: [b.id] },
      ]),
    );
    expect(h.messages[0].reactions).toHaveLength(2);
    const rm = await ok(a.c, { type: 'remove_group_reaction', messageId: m.id, emoji: '🔥' }, 'group_reaction_removed');
    expect(rm).toMatchObject({ messageId: m.id, groupId: g.groupId, emoji: '🔥', reaction: { userId: a.id, reaction: '🔥' } });
    for (const f of await allGet([g.owner, b], 'group_reaction_removed')) expect(f.reaction.userId).toBe(a.id);
    await expectError(a.c, { type: 'remove_group_reaction', messageId: m.id, emoji: '🔥' }, 'REACTION_NOT_FOUND');
    await expectError(a.c, { type: 'remove_group_reaction', messageId: m.id, reaction: '👍' }, 'REACTION_NOT_FOUND');
    await expectError(a.c, { type: 'add_group_reaction', messageId: m.id, reaction: 'x'.repeat(17) }, 'BAD_REQUEST', 'reaction');
    await expectError(a.c, { type: 'add_group_reaction', messageId: MISSING_ID, reaction: '🔥' }, 'NOT_FOUND');
    h = await groupHistory(a, g.groupId);
    expect(h.messages[0].reactions).toEqual(
      expect.arrayContaining([
        { reaction: '🔥', count: 1, userIds: [b.id] },
        { reaction: '👍', count: 1, userIds: [b.id] },
      ]),
    );
    expect(h.messages[0].reactions).toHaveLength(2);
  });

  it('add_reaction / remove_reaction on a group message act as group reactions', async () => {
    const g = await makeGroup(s, { members: 2 });
    const [a, b] = g.members as [Who, Who];
    const m = await say(b, g.groupId, 'dm-named reaction');
    const r = await ok(a.c, { type: 'add_reaction', messageId: m.id, emoji: '🎉', conversationId: 'ignored' }, 'group_reaction_added');
    expect(r).toMatchObject({ messageId: m.id, groupId: g.groupId, emoji: '🎉', reaction: { userId: a.id, reaction: '🎉' } });
    for (const f of await allGet([g.owner, b], 'group_reaction_added')) expect(f).toMatchObject({ messageId: m.id, groupId: g.groupId });
    await expectError(a.c, { type: 'add_reaction', messageId: m.id, reaction: '🎉' }, 'REACTION_EXISTS');
    expect((await groupHistory(g.owner, g.groupId)).messages[0].reactions).toEqual([{ reaction: '🎉', count: 1, userIds: [a.id] }]);
    await ok(a.c, { type: 'remove_reaction', messageId: m.id, reaction: '🎉' }, 'group_reaction_removed');
    await allGet([g.owner, b], 'group_reaction_removed');
    await expectError(a.c, { type: 'remove_reaction', messageId: m.id, reaction: '🎉' }, 'REACTION_NOT_FOUND');
    expect((await groupHistory(g.owner, g.groupId)).messages[0].reactions).toEqual([]);
    for (const w of g.all) await w.c.none((f) => f.type === 'reaction_added' || f.type === 'reaction_removed', 50);
  });
});

describe('blocks in groups (§5)', () => {
  it('a member never receives nor sees messages of a user they have a block with (either way); others do', async () => {
    const g = await makeGroup(s, { admins: 1, members: 2 });
    // blocker (member) blocks blocked (admin); `d` is unaffected.
    const blocker = g.members[0]!;
    const blocked = g.admins[0]!;
    const d = g.members[1]!;
    const blockerOther = await s.login(blocker.id);
    const start = await ok(blocker.c, { type: 'sync' }, 'sync_result');
    const early = await say(blocked, g.groupId, 'before the block');
    await blocker.c.next(newMsg(early.id));
    await addBlock(s.app.db, blocker.id, blocked.id);
    const fromBlocked = await say(blocked, g.groupId, `hi @u${blocker.id} @everyone`);
    expect(fromBlocked.mentions).toEqual([{ type: 'everyone' }]);
    const fromBlocker = await say(blocker, g.groupId, `hi @u${blocked.id}`);
    expect(fromBlocker.mentions).toEqual([]);
    const fromOwner = await say(g.owner, g.groupId, 'owner speaks');
    const ann = await ok(blocked.c, { type: 'send_announcement', groupId: g.groupId, content: 'admin news' }, 'announcement_sent');
    // Live: the others get everything; the two never get each other's.
    for (const w of [g.owner, d]) {
      await w.c.next(newMsg(fromBlocked.id));
      await w.c.next(mentionedOf(fromBlocked.id));
      await w.c.next(newMsg(fromBlocker.id));
      await w.c.next('new_announcement');
    }
    for (const c of [blocker.c, blockerOther]) {
      await c.next(newMsg(fromOwner.id));
      await c.none((f) => newMsg(fromBlocked.id)(f) || mentionedOf(fromBlocked.id)(f) || f.type === 'new_announcement', 100);
    }
    await blocked.c.next(newMsg(fromOwner.id));
    await blocked.c.none(newMsg(fromBlocker.id), 100);
    // Typing across the block is dropped; others see it.
    await ok(blocked.c, { type: 'typing', groupId: g.groupId, isTyping: true }, 'typing_indicator_sent');
    expect((await d.c.next('typing_indicator')).userId).toBe(blocked.id);
    await blocker.c.none('typing_indicator', 100);
    await ok(blocker.c, { type: 'typing', groupId: g.groupId, isTyping: true }, 'typing_indicator_sent');
    expect((await g.owner.c.next((f) => f.type === 'typing_indicator' && f.userId === blocker.id)).groupId).toBe(g.groupId);
    await blocked.c.none((f) => f.type === 'typing_indicator' && f.userId === blocker.id, 100);
    // History (and total) leaves them out, for both sides.
    const hb = await groupHistory(blocker, g.groupId);
    expect(idsOf(hb)).toEqual([fromBlocker.id, fromOwner.id]);
    expect(hb.total).toBe(2);
    const hd = await groupHistory(blocked, g.groupId);
    expect(idsOf(hd)).toEqual([early.id, fromBlocked.id, fromOwner.id, ann.message.id]);
    expect(idsOf(await groupHistory(d, g.groupId))).toEqual([early.id, fromBlocked.id, fromBlocker.id, fromOwner.id, ann.message.id]);
    // Sync too.
    const has = (...ids: string[]) => (r: Frame) => ids.every((id) => (r.messages as Frame[]).some((m) => m.id === id));
    // The announcement is the last write; once sync shows it to d, every earlier one is below xmin too.
    const syd = await syncUntil(d, start.cursor, has(fromBlocked.id, fromBlocker.id, fromOwner.id, ann.message.id));
    expect(syd.messages.length).toBeGreaterThanOrEqual(4);
    const sy = await syncUntil(blocker, start.cursor, has(fromBlocker.id, fromOwner.id));
    const synced = (sy.messages as Frame[]).map((m) => m.id);
    for (const id of [early.id, fromBlocked.id, ann.message.id]) expect(synced).not.toContain(id);
    // Pins and unread counts too.
    expect((await ok(blocker.c, { type: 'get_pinned_messages', groupId: g.groupId }, 'pinned_message')).messages).toEqual([]);
    expect((await ok(d.c, { type: 'get_pinned_messages', groupId: g.groupId }, 'pinned_message')).messages.map((x: Frame) => x.id)).toEqual([ann.message.id]);
    expect((await userGroup(blocker, g.groupId)).unreadCount).toBe(1); // fromOwner only
    expect((await userGroup(d, g.groupId)).unreadCount).toBe(5);
  });

  it('reactions and pins on a message reach only members who can see it; an admin cannot pin what they cannot see; pins hide what the viewer deleted', async () => {
    const g = await makeGroup(s, { admins: 1, members: 2 });
    const [sender, blocker] = g.members as [Who, Who];
    const admin = g.admins[0]!;
    const m = await say(sender, g.groupId, 'from the sender');
    await addBlock(s.app.db, blocker.id, sender.id);
    await addBlock(s.app.db, admin.id, sender.id);
    // The owner reacts and pins: the sender hears of it, the blocker does not (never saw the message).
    await ok(g.owner.c, { type: 'add_group_reaction', messageId: m.id, reaction: '👍' }, 'group_reaction_added');
    await ok(g.owner.c, { type: 'pin_message', groupId: g.groupId, messageId: m.id }, 'message_pinned');
    await sender.c.next('group_reaction_added');
    await sender.c.next('message_pinned');
    await blocker.c.none((f) => f.messageId === m.id, 150);
    // The admin in a block with the sender cannot see the message, so cannot pin or unpin it either.
    await expectError(admin.c, { type: 'pin_message', groupId: g.groupId, messageId: m.id }, 'NOT_FOUND', 'messageId');
    await expectError(admin.c, { type: 'unpin_message', groupId: g.groupId, messageId: m.id }, 'NOT_FOUND', 'messageId');
    // A pinned message the owner deleted for themselves leaves their pins, not the sender's.
    const pinnedIds = async (w: Who) => (await ok(w.c, { type: 'get_pinned_messages', groupId: g.groupId }, 'pinned_message')).messages.map((x: Frame) => x.id);
    await ok(g.owner.c, { type: 'delete_group_message', messageId: m.id, deleteForEveryone: false }, 'group_message_deleted');
    expect(await pinnedIds(g.owner)).toEqual([]);
    expect(await pinnedIds(sender)).toEqual([m.id]);
  });
});

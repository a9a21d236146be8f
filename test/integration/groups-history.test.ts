/**
 * PROTOCOL §7 group history paging with edits and deletions, send details, typing, read
 * positions, and the listing commands' fields. (Split from groups-messages.test.ts.)
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

describe('history paging with edits and deletions', () => {
  it('offset and before, hasMore, total; edited text with isEdited; deleted-for-everyone gone; deleted-for-me gone only for that member', async () => {
    const g = await makeGroup(s, { members: 2 });
    const [x, y] = g.members as [Who, Who];
    const m: Frame[] = [];
    for (let i = 1; i <= 7; i++) m.push(await say(g.owner, g.groupId, `m${i}`));
    expect(m.map((v) => v.seq)).toEqual(m.map((_, i) => m[0]!.seq + i)); // gap-free
    const e = await ok(g.owner.c, { type: 'edit_group_message', messageId: m[2]!.id, content: 'm3 edited' }, 'group_message_edited');
    expect(e.editedAt).toMatch(ISO);
    await ok(g.owner.c, { type: 'delete_group_message', messageId: m[4]!.id, deleteForEveryone: true }, 'group_message_deleted');
    const mine = await ok(x.c, { type: 'delete_group_message', messageId: m[5]!.id, deleteForEveryone: false }, 'group_message_deleted');
    expect(mine.deleteForEveryone).toBe(false);
    await g.owner.c.none((f) => f.type === 'group_message_deleted' && f.messageId === m[5]!.id, 100);
    const id = (i: number) => m[i - 1]!.id;
    const page = (w: Who, extra: Record<string, unknown>) => groupHistory(w, g.groupId, extra);
    // y sees 6 messages: m1 m2 m3' m4 m6 m7
    let p = await page(y, { limit: 2 });
    expect(p).toMatchObject({ groupId: g.groupId, total: 6, hasMore: true, offset: 0, limit: 2 });
    expect(idsOf(p)).toEqual([id(6), id(7)]);
    p = await page(y, { limit: 2, offset: 2 });
    expect(idsOf(p)).toEqual([id(3), id(4)]);
    expect(p.hasMore).toBe(true);
    expect(p.messages[0]).toMatchObject({ content: 'm3 edited', isEdited: true, editedAt: e.editedAt });
    expect(p.messages[1]).toMatchObject({ content: 'm4', isEdited: false, editedAt: null });
    p = await page(y, { limit: 2, offset: 4 });
    expect(idsOf(p)).toEqual([id(1), id(2)]);
    expect(p).toMatchObject({ hasMore: false, total: 6, offset: 4 });
    p = await page(y, { limit: '2', offset: '6' });
    expect(p).toMatchObject({ messages: [], hasMore: false, total: 6 });
    p = await page(y, { limit: 2, before: m[3]!.seq });
    expect(idsOf(p)).toEqual([id(2), id(3)]);
    expect(p.hasMore).toBe(true);
    p = await page(y, { limit: 2, before: m[1]!.seq });
    expect(idsOf(p)).toEqual([id(1)]);
    expect(p.hasMore).toBe(false);
    p = await page(y, { limit: 3, before: m[6]!.seq });
    expect(idsOf(p)).toEqual([id(3), id(4), id(6)]);
    // x also deleted m6 for themselves.
    p = await page(x, {});
    expect(idsOf(p)).toEqual([id(1), id(2), id(3), id(4), id(7)]);
    expect(p.total).toBe(5);
    expect(idsOf(await page(g.owner, {}))).toEqual([id(1), id(2), id(3), id(4), id(6), id(7)]);
    // Deleted messages cannot be acted on.
    await expectError(g.owner.c, { type: 'edit_group_message', messageId: id(5), newContent: 'back?' }, 'NOT_FOUND');
    await expectError(y.c, { type: 'add_group_reaction', messageId: id(5), reaction: '👍' }, 'NOT_FOUND');
    await expectError(x.c, { type: 'add_group_reaction', messageId: id(6), reaction: '👍' }, 'NOT_FOUND');
    await expectError(y.c, { type: 'get_group_messages', groupId: g.groupId, limit: 101 }, 'BAD_REQUEST', 'limit');
    await expectError(y.c, { type: 'get_group_messages', groupId: g.groupId, offset: -1 }, 'BAD_REQUEST', 'offset');
  });

  it('editing: only the sender, newContent alias content, edit_message on a group message acts like edit_group_message', async () => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    const m = await say(g.members[0]!, g.groupId, 'original');
    await expectError(g.owner.c, { type: 'edit_group_message', messageId: m.id, newContent: 'owner edit' }, 'INSUFFICIENT_PERMISSIONS');
    await expectError(g.admins[0]!.c, { type: 'edit_message', messageId: m.id, newContent: 'admin edit' }, 'INSUFFICIENT_PERMISSIONS');
    const r = await ok(g.members[0]!.c, { type: 'edit_message', messageId: m.id, newContent: 'via edit_message' }, 'group_message_edited');
    expect(r).toMatchObject({ messageId: m.id, groupId: g.groupId, newContent: 'via edit_message' });
    for (const f of await allGet([g.owner, g.admins[0]!], 'group_message_edited')) expect(f).toMatchObject({ newContent: 'via edit_message', editedBy: g.members[0]!.id });
    expect((await groupHistory(g.owner, g.groupId)).messages[0]).toMatchObject({ content: 'via edit_message', isEdited: true });
  });
});

describe('send details', () => {
  it('G fields; clientMessageId retry → original ack with duplicate:true, nothing new stored or delivered; replyTo must be in the group', async () => {
    const g = await makeGroup(s, { members: 1 });
    const other = await makeGroup(s, {});
    const foreign = await say(other.owner, other.groupId, 'elsewhere');
    const first = await say(g.owner, g.groupId, 'first');
    const r = await ok(g.owner.c, { type: 'send_group_message', groupId: g.groupId, content: 'reply', replyToMessageId: first.id, clientMessageId: 'cm-1', senderId: '1', id: MISSING_ID }, 'group_message_sent');
    const G = r.message as Frame;
    expect(G).toEqual({
      id: expect.stringMatching(UUID7),
      messageId: G.id,
      groupId: g.groupId,
      senderId: g.owner.id,
      username: `u${g.owner.id}`,
      content: 'reply',
      timestamp: expect.stringMatching(ISO),
      replyTo: first.id,
      mentions: [],
      isEdited: false,
      editedAt: null,
      isAnnouncement: false,
      isPinned: false,
      seq: first.seq + 1,
      clientMessageId: 'cm-1',
      reactions: [],
    });
    expect((await g.members[0]!.c.next(newMsg(G.id as string))).message).toEqual(G);
    const again = await ok(g.owner.c, { type: 'send_group_message', groupId: g.groupId, content: 'reply', replyTo: first.id, clientMessageId: 'cm-1' }, 'group_message_sent');
    expect(again.duplicate).toBe(true);
    expect(again.message.id).toBe(G.id);
    await g.members[0]!.c.none(newMsg(G.id as string), 150);
    expect(idsOf(await groupHistory(g.members[0]!, g.groupId))).toEqual([first.id, G.id]);
    await expectError(g.owner.c, { type: 'send_group_message', groupId: g.groupId, content: 'x', replyTo: foreign.id }, 'NOT_FOUND', 'replyTo');
    await expectError(g.owner.c, { type: 'send_group_message', groupId: g.groupId, content: '   ' }, 'BAD_REQUEST', 'content');
    await expectError(g.owner.c, { type: 'send_group_message', groupId: g.groupId, content: '' }, 'BAD_REQUEST', 'content');
    expect(idsOf(await groupHistory(g.members[0]!, g.groupId))).toEqual([first.id, G.id]);
  });
});

describe('typing and read positions', () => {
  it('typing with groupId → typing_indicator with groupId to the other members (all devices), not across a block; stops by itself', async () => {
    const g = await makeGroup(s, { members: 3 });
    const [a, b, blocker] = g.members as [Who, Who, Who];
    const b2 = await s.login(b.id);
    const ownerOther = await s.login(g.owner.id);
    await addBlock(s.app.db, blocker.id, g.owner.id);
    const r = await ok(g.owner.c, { type: 'typing', groupId: g.groupId, isTyping: true }, 'typing_indicator_sent');
    expect(r).toMatchObject({ groupId: g.groupId, isTyping: true });
    for (const c of [a.c, b.c, b2]) {
      const f = await c.next('typing_indicator');
      expect(f).toMatchObject({ senderId: g.owner.id, userId: g.owner.id, senderUsername: `u${g.owner.id}`, groupId: g.groupId, isTyping: true });
      expect(f.conversationId).toBeUndefined();
    }
    await blocker.c.none('typing_indicator', 100);
    await ownerOther.none('typing_indicator', 10);
    // No refresh: isTyping:false by itself after TYPING_TIMEOUT_MS (400 ms here).
    for (const c of [a.c, b.c, b2]) expect((await c.next('typing_indicator', 3000)).isTyping).toBe(false);
    await blocker.c.none('typing_indicator', 50);
    // Explicit stop.
    await ok(a.c, { type: 'typing', groupId: g.groupId, isTyping: true }, 'typing_indicator_sent');
    await ok(a.c, { type: 'typing', groupId: g.groupId, isTyping: false }, 'typing_indicator_sent');
    for (const c of [g.owner.c, b.c, blocker.c]) {
      expect((await c.next('typing_indicator')).isTyping).toBe(true);
      expect((await c.next('typing_indicator')).isTyping).toBe(false);
    }
  });

  it('mark_message_read on a group message moves unreadCount and tells the sender (message_read, message_status)', async () => {
    const g = await makeGroup(s, { members: 2 });
    const [r, q] = g.members as [Who, Who];
    const r2 = await s.login(r.id);
    const sender = g.owner;
    const ms = [await say(sender, g.groupId, 'g1'), await say(sender, g.groupId, 'g2'), await say(sender, g.groupId, 'g3')];
    await r.c.next(newMsg(ms[2]!.id));
    expect((await userGroup(r, g.groupId)).unreadCount).toBe(3);
    expect((await userGroup(sender, g.groupId)).unreadCount).toBe(0);
    const reply = await ok(r.c, { type: 'mark_message_read', messageId: ms[1]!.id }, 'message_marked_read');
    expect(reply).toMatchObject({ messageId: ms[1]!.id, groupId: g.groupId });
    const read = await sender.c.next('message_read');
    expect(read).toMatchObject({ messageId: ms[1]!.id, readBy: r.id, groupId: g.groupId });
    const status = await sender.c.next('message_status');
    expect(status).toMatchObject({ messageId: ms[1]!.id, status: 'read', userId: r.id });
    expect((await r2.next('message_marked_read')).messageId).toBe(ms[1]!.id);
    expect((await userGroup(r, g.groupId)).unreadCount).toBe(1);
    expect((await userGroup(q, g.groupId)).unreadCount).toBe(3);
    // Reading an older one does not move back.
    await ok(r.c, { type: 'mark_message_read', messageId: ms[0]!.id }, 'message_marked_read');
    expect((await userGroup(r, g.groupId)).unreadCount).toBe(1);
    await ok(r.c, { type: 'mark_message_read', messageId: ms[2]!.id }, 'message_marked_read');
    expect((await userGroup(r, g.groupId)).unreadCount).toBe(0);
    expect((await sender.c.next('message_read')).messageId).toBe(ms[2]!.id);
    await q.c.none((f) => f.type === 'message_read' || f.type === 'message_status', 50);
  });
});

describe('listings: get_user_groups, get_group_members, get_group_info', () => {
  it('fields, types and order', async () => {
    const g1 = await makeGroup(s, { admins: 1, members: 1, groupName: 'first' });
    // A second group with the same member as admin... created later; then activity in the first.
    const me = g1.admins[0]!;
    await s.follow([me.id, g1.owner.id]);
    const c2 = await ok(me.c, { type: 'create_group', groupName: 'second', groupDescription: 'desc2', initialMembers: [g1.owner.id] }, 'group_created');
    let ug = await ok(me.c, { type: 'get_user_groups' }, 'user_groups');
    expect((ug.groups as Frame[]).map((x) => x.groupId)).toEqual([c2.groupId, g1.groupId]);
    const second = (ug.groups as Frame[])[0]!;
    expect(second).toMatchObject({ groupId: c2.groupId, groupName: 'second', groupDescription: 'desc2', createdBy: me.id, myRole: 'owner', role: 'owner', memberCount: 2, unreadCount: 0 });
    expect(second.lastMessageAt === null || ISO.test(second.lastMessageAt)).toBe(true);
    expect(second.joinedAt).toMatch(ISO);
    const m = await say(g1.owner, g1.groupId, 'activity');
    ug = await ok(me.c, { type: 'get_user_groups' }, 'user_groups');
    expect((ug.groups as Frame[]).map((x) => x.groupId)).toEqual([g1.groupId, c2.groupId]);
    const first = (ug.groups as Frame[])[0]!;
    expect(first).toMatchObject({ groupName: 'first', createdBy: g1.owner.id, myRole: 'admin', role: 'admin', unreadCount: 1 });
    expect(typeof first.memberCount).toBe('number');
    expect(first.memberCount).toBe(3);
    expect(first.lastMessageAt).toMatch(ISO);
    expect(Date.parse(first.lastMessageAt)).toBeGreaterThanOrEqual(Date.parse(m.timestamp) - 1000);
    expect((await userGroup(g1.members[0]!, g1.groupId))).toMatchObject({ myRole: 'member', role: 'member', unreadCount: 1 });
    // get_group_members: oldest first, with display fields.
    const gm = await ok(g1.members[0]!.c, { type: 'get_group_members', groupId: g1.groupId }, 'group_members');
    expect(gm.groupId).toBe(g1.groupId);
    expect(gm.members).toEqual([
      { userId: g1.owner.id, username: `u${g1.owner.id}`, displayName: `First${g1.owner.id} Last${g1.owner.id}`, role: 'owner', joinedAt: expect.stringMatching(ISO) },
      { userId: me.id, username: `u${me.id}`, displayName: `First${me.id} Last${me.id}`, role: 'admin', joinedAt: expect.stringMatching(ISO) },
      { userId: g1.members[0]!.id, username: `u${g1.members[0]!.id}`, displayName: `First${g1.members[0]!.id} Last${g1.members[0]!.id}`, role: 'member', joinedAt: expect.stringMatching(ISO) },
    ]);
    // get_group_info: the group object, and the same fields flat.
    const info = await ok(g1.members[0]!.c, { type: 'get_group_info', groupId: g1.groupId }, 'group_info');
    expect(info.group).toEqual({
      groupId: g1.groupId,
      groupName: 'first',
      groupDescription: '',
      createdBy: g1.owner.id,
      ownerId: g1.owner.id,
      maxMembers: 50,
      memberCount: 3,
      isActive: true,
      createdAt: expect.stringMatching(ISO),
      members: gm.members,
    });
    for (const [k, v] of Object.entries(info.group as Frame)) expect(info[k], k).toEqual(v);
  });
});

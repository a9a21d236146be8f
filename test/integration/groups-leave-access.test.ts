/**
 * PROTOCOL §7 ownership when the owner leaves (the longest-standing admin, else the
 * longest-standing member, becomes owner), the last member leaving (the group is
 * deleted), and NOT_FOUND without existence leak for non-members and removed members
 * (§2.2). The §7 permission matrix and role rules: groups-roles.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Frame } from '../helpers/client.ts';
import { MISSING_GROUP, PRESENCE, MISSING_ID, allGet, count, expectError, freshUsers, groupHistory, idsOf, makeGroup, ok, say, type Who } from '../helpers/groupkit.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startServer({ TYPING_TIMEOUT_MS: '500' });
});
afterAll(() => s?.close());

describe('ownership when the owner leaves; the last member leaving', () => {
  /** A group whose members joined one by one in `joinOrder` (fresh users), so joined_at differs. */
  async function joinedInOrder(n: number): Promise<{ groupId: string; owner: Who; joined: Who[] }> {
    const ids = await freshUsers(s, n + 1);
    const [ownerId, ...rest] = ids as [string, ...string[]];
    await s.follow(...rest.map((id) => [ownerId, id] as [string, string]));
    const owner = { id: ownerId, c: await s.login(ownerId) };
    const groupId = (await ok(owner.c, { type: 'create_group', groupName: 'order' }, 'group_created')).groupId as string;
    // Highest id joins first, so neither id order nor promotion order matches join order.
    const joined: Who[] = [];
    for (const id of [...rest].reverse()) {
      await ok(owner.c, { type: 'add_group_member', groupId, userId: id }, 'member_added');
      joined.push({ id, c: await s.login(id) });
    }
    return { groupId, owner, joined };
  }

  it('the owner leaving passes ownership to the longest-standing admin (not the first promoted, not the oldest member)', async () => {
    const { groupId, owner, joined } = await joinedInOrder(4);
    const [j0, j1, j2, j3] = joined as [Who, Who, Who, Who];
    // j0 is the oldest member but stays a member; j3 is promoted before j1.
    await ok(owner.c, { type: 'promote_member', groupId, userId: j3.id }, 'member_promoted');
    await ok(owner.c, { type: 'promote_member', groupId, userId: j1.id }, 'member_promoted');
    for (const w of joined) w.c.clear();
    await ok(owner.c, { type: 'leave_group', groupId }, 'left_group');
    for (const f of await allGet(joined, 'ownership_transferred')) expect(f).toMatchObject({ groupId, newOwnerId: j1.id, previousOwnerId: owner.id });
    await allGet(joined, 'member_left', (f) => f.userId === owner.id);
    const info = await ok(j2.c, { type: 'get_group_info', groupId }, 'group_info');
    expect(info.ownerId).toBe(j1.id);
    expect(Object.fromEntries((info.members as Frame[]).map((m) => [m.userId, m.role]))).toEqual({ [j0.id]: 'member', [j1.id]: 'owner', [j2.id]: 'member', [j3.id]: 'admin' });
    await ok(j1.c, { type: 'delete_group', groupId, permanent: false }, 'group_deleted');
  });

  it('with no admin, ownership passes to the longest-standing member', async () => {
    const { groupId, owner, joined } = await joinedInOrder(3);
    await ok(owner.c, { type: 'leave_group', groupId }, 'left_group');
    for (const f of await allGet(joined, 'ownership_transferred')) expect(f).toMatchObject({ groupId, newOwnerId: joined[0]!.id, previousOwnerId: owner.id });
    const info = await ok(joined[2]!.c, { type: 'get_group_info', groupId }, 'group_info');
    expect(info.ownerId).toBe(joined[0]!.id);
    expect(info.memberCount).toBe(3);
    await ok(joined[0]!.c, { type: 'promote_member', groupId, userId: joined[1]!.id }, 'member_promoted');
  });

  it('the last member leaving deletes the group; a former member then gets NOT_FOUND', async () => {
    const g = await makeGroup(s, { members: 1 });
    await say(g.owner, g.groupId, 'soon gone');
    await ok(g.members[0]!.c, { type: 'leave_group', groupId: g.groupId }, 'left_group');
    await ok(g.owner.c, { type: 'leave_group', groupId: g.groupId }, 'left_group');
    await g.owner.c.next((f) => f.type === 'member_left' && f.userId === g.owner.id);
    await g.owner.c.none('ownership_transferred', 100);
    for (const w of g.all) {
      await expectError(w.c, { type: 'get_group_info', groupId: g.groupId }, 'NOT_FOUND');
      await expectError(w.c, { type: 'get_group_messages', groupId: g.groupId }, 'NOT_FOUND');
      expect((await ok(w.c, { type: 'get_user_groups' }, 'user_groups')).groups).toEqual([]);
    }
    expect(await count(s, 'group_chats', 'group_id = $1', [g.groupId])).toBe(0);
    expect(await count(s, 'private_messages', 'conversation_id = $1', [g.groupId])).toBe(0);
  });
});

describe('non-members get NOT_FOUND for anything about the group (existence never leaked)', () => {
  it('every group command by a non-member answers exactly like a missing group', async () => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    const m = await say(g.members[0]!, g.groupId, 'members only');
    await ok(g.owner.c, { type: 'pin_message', groupId: g.groupId, messageId: m.id }, 'message_pinned');
    const x = await g.outsider();
    const [y] = await freshUsers(s, 1);
    await s.follow([x.id, y!], [x.id, g.members[0]!.id]);
    const byGroup = (groupId: string, messageId: string): Record<string, unknown>[] => [
      { type: 'get_group_info', groupId },
      { type: 'get_group_messages', groupId },
      { type: 'get_group_members', groupId },
      { type: 'send_group_message', groupId, content: 'let me in' },
      { type: 'send_announcement', groupId, content: 'let me in' },
      { type: 'add_group_member', groupId, userId: y },
      { type: 'add_group_member', groupId, userId: g.members[0]!.id },
      { type: 'remove_group_member', groupId, userId: g.members[0]!.id },
      { type: 'leave_group', groupId },
      { type: 'update_group_info', groupId, groupName: 'hijack' },
      { type: 'promote_member', groupId, userId: g.members[0]!.id },
      { type: 'demote_member', groupId, userId: g.admins[0]!.id },
      { type: 'transfer_ownership', groupId, userId: x.id },
      { type: 'delete_group', groupId },
      { type: 'delete_group', groupId, permanent: true },
      { type: 'restore_group', groupId },
      { type: 'pin_message', groupId, messageId },
      { type: 'unpin_message', groupId, messageId },
      { type: 'get_pinned_messages', groupId },
    ];
    const real = byGroup(g.groupId, m.id);
    const missing = byGroup(MISSING_GROUP, m.id);
    for (let i = 0; i < real.length; i++) {
      const a = await expectError(x.c, real[i]!, 'NOT_FOUND');
      const b = await expectError(x.c, missing[i]!, 'NOT_FOUND');
      expect({ message: a.message, field: a.field }, JSON.stringify(real[i])).toEqual({ message: b.message, field: b.field });
    }
    // By message id: the group's message vs a message that does not exist.
    const byMessage = (messageId: string): Record<string, unknown>[] => [
      { type: 'edit_group_message', messageId, newContent: 'x' },
      { type: 'delete_group_message', messageId },
      { type: 'delete_group_message', messageId, deleteForEveryone: false },
      { type: 'add_group_reaction', messageId, reaction: '👀' },
      { type: 'remove_group_reaction', messageId, reaction: '👀' },
      { type: 'add_reaction', messageId, reaction: '👀' },
      { type: 'mark_message_read', messageId },
      { type: 'edit_message', messageId, newContent: 'x' },
      { type: 'delete_message', messageId },
      { type: 'send_group_message', groupId: g.groupId, content: 'reply', replyTo: messageId },
    ];
    const realM = byMessage(m.id);
    const missingM = byMessage(MISSING_ID);
    for (let i = 0; i < realM.length; i++) {
      const a = await expectError(x.c, realM[i]!, 'NOT_FOUND');
      const b = await expectError(x.c, missingM[i]!, 'NOT_FOUND');
      expect({ message: a.message, field: a.field }, JSON.stringify(realM[i])).toEqual({ message: b.message, field: b.field });
    }
    // Typing into a group one is not in: one reply, nothing delivered.
    await ok(x.c, { type: 'typing', groupId: g.groupId, isTyping: true }, 'typing_indicator_sent');
    // Nothing changed.
    const info = await ok(g.owner.c, { type: 'get_group_info', groupId: g.groupId }, 'group_info');
    expect(info).toMatchObject({ groupName: 'Crew', memberCount: 3, ownerId: g.owner.id, isActive: true });
    expect(idsOf(await groupHistory(g.owner, g.groupId))).toEqual([m.id]);
    expect((await groupHistory(g.owner, g.groupId)).messages[0]).toMatchObject({ content: 'members only', reactions: [] });
    for (const w of g.all) await w.c.none((f) => !PRESENCE.has(f.type) && f.type !== 'message_pinned' && f.type !== 'new_group_message', 200);
  });

  it('a removed member is a non-member: NOT_FOUND for info, history and send', async () => {
    const g = await makeGroup(s, { members: 2 });
    const gone = g.members[1]!;
    const m = await say(g.owner, g.groupId, 'before removal');
    await ok(g.owner.c, { type: 'remove_group_member', groupId: g.groupId, userId: gone.id }, 'member_removed');
    await expectError(gone.c, { type: 'get_group_info', groupId: g.groupId }, 'NOT_FOUND');
    await expectError(gone.c, { type: 'get_group_messages', groupId: g.groupId }, 'NOT_FOUND');
    await expectError(gone.c, { type: 'send_group_message', groupId: g.groupId, content: 'still here?' }, 'NOT_FOUND');
    await expectError(gone.c, { type: 'add_group_reaction', messageId: m.id, reaction: '😢' }, 'NOT_FOUND');
    expect(await count(s, 'private_messages', 'conversation_id = $1', [g.groupId])).toBe(1);
  });
});

/**
 * PROTOCOL §7 permission matrix, row by row, for owner / admin / member (allowed and
 * refused), the role rules (CANNOT_DEMOTE_SELF, ALREADY_ADMIN, NOT_ADMIN,
 * OWNER_CANNOT_BE_REMOVED) and ownership by transfer. Ownership when the owner leaves,
 * the last member leaving and NOT_FOUND for non-members: groups-leave-access.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Frame } from '../helpers/client.ts';
import { ROLES, allGet, by, count, expectError, groupHistory, idsOf, makeGroup, ok, say, type Crew, type Who } from '../helpers/groupkit.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startServer({ TYPING_TIMEOUT_MS: '500' });
});
afterAll(() => s?.close());

/** Everyone in `g` but `w`. */
const others = (g: Crew, w: Who): Who[] => g.all.filter((x) => x.id !== w.id);
const isAbout = (id: string) => (f: Frame) => f.messageId === id;

describe('§7 row 1: send / read / react / typing / leave; edit own; delete own for everyone — every role', () => {
  it.each(ROLES)('%s may send, read, react, type, edit and delete their own message for everyone', async (role) => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    const me = by(g, role);
    const rest = others(g, me);
    // send
    const m = await say(me, g.groupId, `hello from the ${role}`);
    const got = await allGet(rest, 'new_group_message', (f) => f.message.id === m.id);
    for (const f of got) expect(f.message).toMatchObject({ senderId: me.id, content: `hello from the ${role}`, groupId: g.groupId });
    // read
    expect(idsOf(await groupHistory(me, g.groupId))).toEqual([m.id]);
    // react (to another member's message)
    const theirs = await say(rest[0]!, g.groupId, 'react to me');
    await me.c.next((f) => f.type === 'new_group_message' && f.message.id === theirs.id);
    const r = await ok(me.c, { type: 'add_group_reaction', messageId: theirs.id, reaction: '👍' }, 'group_reaction_added');
    expect(r).toMatchObject({ messageId: theirs.id, groupId: g.groupId, emoji: '👍', reaction: { userId: me.id, reaction: '👍' } });
    await allGet(rest, 'group_reaction_added', (f) => f.messageId === theirs.id);
    // typing
    const t = await ok(me.c, { type: 'typing', groupId: g.groupId, isTyping: true }, 'typing_indicator_sent');
    expect(t.isTyping).toBe(true);
    for (const f of await allGet(rest, 'typing_indicator', (f) => f.isTyping === true)) expect(f).toMatchObject({ groupId: g.groupId, senderId: me.id, userId: me.id });
    await ok(me.c, { type: 'typing', groupId: g.groupId, isTyping: false }, 'typing_indicator_sent');
    await allGet(rest, 'typing_indicator', (f) => f.isTyping === false && f.groupId === g.groupId);
    // edit own
    const e = await ok(me.c, { type: 'edit_group_message', messageId: m.id, newContent: 'edited' }, 'group_message_edited');
    expect(e).toMatchObject({ messageId: m.id, groupId: g.groupId, newContent: 'edited' });
    for (const f of await allGet(rest, 'group_message_edited', isAbout(m.id))) expect(f.editedBy).toBe(me.id);
    // delete own for everyone
    const d = await ok(me.c, { type: 'delete_group_message', messageId: m.id, deleteForEveryone: true }, 'group_message_deleted');
    expect(d).toMatchObject({ messageId: m.id, groupId: g.groupId, deleteForEveryone: true });
    for (const f of await allGet(rest, 'group_message_deleted', isAbout(m.id))) expect(f).toMatchObject({ deletedBy: me.id, deleteForEveryone: true });
    for (const w of g.all) expect(idsOf(await groupHistory(w, g.groupId))).toEqual([theirs.id]);
  });

  it.each(ROLES)('%s may leave the group (left_group, member_left to the others)', async (role) => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    const me = by(g, role);
    await ok(me.c, { type: 'leave_group', groupId: g.groupId }, 'left_group');
    for (const f of await allGet(others(g, me), 'member_left')) expect(f).toMatchObject({ groupId: g.groupId, userId: me.id });
    await expectError(me.c, { type: 'get_group_info', groupId: g.groupId }, 'NOT_FOUND');
    const info = await ok(g.all.find((w) => w.id !== me.id)!.c, { type: 'get_group_info', groupId: g.groupId }, 'group_info');
    expect(info.memberCount).toBe(2);
    expect(info.members.map((m: Frame) => m.userId)).not.toContain(me.id);
  });
});

describe("§7 row 2: delete another's message for everyone; pin / unpin; announcement; update info — owner and admin only", () => {
  it.each(['owner', 'admin'] as const)("%s deletes another member's message for everyone", async (role) => {
    const g = await makeGroup(s, { admins: 1, members: 2 });
    const me = by(g, role);
    const m = await say(g.members[1]!, g.groupId, 'to be moderated');
    await me.c.next((f) => f.type === 'new_group_message' && f.message.id === m.id);
    // deleteForEveryone defaults to true when the caller may delete for everyone
    const d = await ok(me.c, { type: 'delete_group_message', messageId: m.id }, 'group_message_deleted');
    expect(d.deleteForEveryone).toBe(true);
    for (const f of await allGet(others(g, me), 'group_message_deleted', isAbout(m.id))) expect(f.deletedBy).toBe(me.id);
    for (const w of g.all) expect(idsOf(await groupHistory(w, g.groupId))).toEqual([]);
  });

  it("member cannot delete another's message for everyone (INSUFFICIENT_PERMISSIONS); without the flag it is deleted for them only", async () => {
    const g = await makeGroup(s, { admins: 1, members: 2 });
    const me = g.members[0]!;
    for (const author of [g.owner, g.admins[0]!, g.members[1]!]) {
      const m = await say(author, g.groupId, `by ${author.id}`);
      await me.c.next((f) => f.type === 'new_group_message' && f.message.id === m.id);
      await expectError(me.c, { type: 'delete_group_message', messageId: m.id, deleteForEveryone: true }, 'INSUFFICIENT_PERMISSIONS');
      await expectError(me.c, { type: 'delete_message', messageId: m.id, deleteForEveryone: true }, 'INSUFFICIENT_PERMISSIONS');
      expect(idsOf(await groupHistory(author, g.groupId))).toContain(m.id);
      const d = await ok(me.c, { type: 'delete_group_message', messageId: m.id }, 'group_message_deleted');
      expect(d.deleteForEveryone).toBe(false);
      expect(idsOf(await groupHistory(me, g.groupId))).not.toContain(m.id);
      expect(idsOf(await groupHistory(author, g.groupId))).toContain(m.id);
      await author.c.none((f) => f.type === 'group_message_deleted', 150);
    }
  });

  it('delete_message (the §6 command) on a group message keeps §6 defaults: for me only, even by its sender or the owner; delete_private_message by the sender is for everyone', async () => {
    const g = await makeGroup(s, { members: 2 });
    const [author, reader] = g.members as [Who, Who];
    const m = await say(author, g.groupId, 'mine');
    expect(await ok(author.c, { type: 'delete_message', messageId: m.id }, 'group_message_deleted')).toMatchObject({ deleteForEveryone: false });
    const n = await say(author, g.groupId, 'by the author');
    expect(await ok(g.owner.c, { type: 'delete_message', messageId: n.id }, 'group_message_deleted')).toMatchObject({ deleteForEveryone: false });
    expect(idsOf(await groupHistory(reader, g.groupId))).toEqual([m.id, n.id]);
    await reader.c.none((f) => f.type === 'group_message_deleted', 100);
    expect(await ok(author.c, { type: 'delete_private_message', messageId: n.id }, 'group_message_deleted')).toMatchObject({ deleteForEveryone: true });
    expect(idsOf(await groupHistory(reader, g.groupId))).toEqual([m.id]);
  });

  it.each(['owner', 'admin'] as const)('%s pins and unpins', async (role) => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    const me = by(g, role);
    const m = await say(g.members[0]!, g.groupId, 'pin me');
    const p = await ok(me.c, { type: 'pin_message', groupId: g.groupId, messageId: m.id }, 'message_pinned');
    expect(p).toMatchObject({ messageId: m.id, groupId: g.groupId, pinnedBy: me.id });
    for (const f of await allGet(others(g, me), 'message_pinned', isAbout(m.id))) expect(f.pinnedBy).toBe(me.id);
    expect((await ok(g.members[0]!.c, { type: 'get_pinned_messages', groupId: g.groupId }, 'pinned_message')).messages.map((x: Frame) => x.id)).toEqual([m.id]);
    const u = await ok(me.c, { type: 'unpin_message', groupId: g.groupId, messageId: m.id }, 'message_unpinned');
    expect(u).toMatchObject({ messageId: m.id, groupId: g.groupId, unpinnedBy: me.id });
    for (const f of await allGet(others(g, me), 'message_unpinned', isAbout(m.id))) expect(f.unpinnedBy).toBe(me.id);
    expect((await ok(g.members[0]!.c, { type: 'get_pinned_messages', groupId: g.groupId }, 'pinned_message')).messages).toEqual([]);
  });

  it('member cannot pin or unpin (INSUFFICIENT_PERMISSIONS), nothing changes', async () => {
    const g = await makeGroup(s, { admins: 0, members: 1 });
    const me = g.members[0]!;
    const a = await say(me, g.groupId, 'mine');
    const b = await say(g.owner, g.groupId, 'pinned by owner');
    await ok(g.owner.c, { type: 'pin_message', groupId: g.groupId, messageId: b.id }, 'message_pinned');
    await expectError(me.c, { type: 'pin_message', groupId: g.groupId, messageId: a.id }, 'INSUFFICIENT_PERMISSIONS');
    await expectError(me.c, { type: 'unpin_message', groupId: g.groupId, messageId: b.id }, 'INSUFFICIENT_PERMISSIONS');
    expect((await ok(me.c, { type: 'get_pinned_messages', groupId: g.groupId }, 'pinned_message')).messages.map((x: Frame) => x.id)).toEqual([b.id]);
  });

  it.each(['owner', 'admin'] as const)('%s sends an announcement', async (role) => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    const me = by(g, role);
    const r = await ok(me.c, { type: 'send_announcement', groupId: g.groupId, content: 'hear ye' }, 'announcement_sent');
    expect(r.message).toMatchObject({ isAnnouncement: true, senderId: me.id, content: 'hear ye' });
    for (const f of await allGet(others(g, me), 'new_announcement')) expect(f.message.id).toBe(r.message.id);
  });

  it('member cannot send an announcement (INSUFFICIENT_PERMISSIONS); nothing is stored or delivered', async () => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    const me = g.members[0]!;
    await expectError(me.c, { type: 'send_announcement', groupId: g.groupId, content: 'not allowed' }, 'INSUFFICIENT_PERMISSIONS');
    expect(await count(s, 'private_messages', 'conversation_id = $1', [g.groupId])).toBe(0);
    await g.owner.c.none('new_announcement', 150);
  });

  it.each(['owner', 'admin'] as const)('%s updates the group info', async (role) => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    const me = by(g, role);
    const r = await ok(me.c, { type: 'update_group_info', groupId: g.groupId, groupName: `by ${role}`, groupDescription: 'new d' }, 'group_updated');
    expect(r).toMatchObject({ groupId: g.groupId, updates: { groupName: `by ${role}`, groupDescription: 'new d' } });
    for (const f of await allGet(others(g, me), 'group_info_updated')) expect(f).toMatchObject({ groupId: g.groupId, updatedBy: me.id, updatedByUsername: `u${me.id}`, updates: { groupName: `by ${role}` } });
    expect((await ok(g.members[0]!.c, { type: 'get_group_info', groupId: g.groupId }, 'group_info')).groupName).toBe(`by ${role}`);
  });

  it('member cannot update the group info (INSUFFICIENT_PERMISSIONS)', async () => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    await expectError(g.members[0]!.c, { type: 'update_group_info', groupId: g.groupId, groupName: 'mine now' }, 'INSUFFICIENT_PERMISSIONS');
    await expectError(g.members[0]!.c, { type: 'update_group_info', groupId: g.groupId, maxMembers: 10 }, 'INSUFFICIENT_PERMISSIONS');
    const info = await ok(g.owner.c, { type: 'get_group_info', groupId: g.groupId }, 'group_info');
    expect(info.groupName).toBe('Crew');
    expect(info.maxMembers).toBe(50);
    await g.owner.c.none('group_info_updated', 150);
  });
});

describe('§7 row 3: add member; remove a member — owner and admin only', () => {
  it.each(['owner', 'admin'] as const)('%s adds and removes a member', async (role) => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    const me = by(g, role);
    const x = await g.outsider();
    await s.follow([me.id, x.id]);
    const a = await ok(me.c, { type: 'add_group_member', groupId: g.groupId, userId: x.id }, 'member_added');
    expect(a).toMatchObject({ groupId: g.groupId, userId: x.id, addedBy: me.id, role: 'member' });
    await allGet([...others(g, me), x], 'member_added', (f) => f.userId === x.id);
    await x.c.next('group_created');
    const r = await ok(me.c, { type: 'remove_group_member', groupId: g.groupId, userId: x.id }, 'member_removed');
    expect(r).toMatchObject({ groupId: g.groupId, userId: x.id, removedBy: me.id });
    await allGet([...others(g, me), x], 'member_removed', (f) => f.userId === x.id);
    await expectError(x.c, { type: 'get_group_info', groupId: g.groupId }, 'NOT_FOUND');
  });

  it('member cannot add or remove members (INSUFFICIENT_PERMISSIONS)', async () => {
    const g = await makeGroup(s, { admins: 0, members: 2 });
    const me = g.members[0]!;
    const x = await g.outsider();
    await s.follow([me.id, x.id]);
    await expectError(me.c, { type: 'add_group_member', groupId: g.groupId, userId: x.id }, 'INSUFFICIENT_PERMISSIONS');
    await expectError(me.c, { type: 'remove_group_member', groupId: g.groupId, userId: g.members[1]!.id }, 'INSUFFICIENT_PERMISSIONS');
    expect((await ok(g.owner.c, { type: 'get_group_info', groupId: g.groupId }, 'group_info')).memberCount).toBe(3);
    await x.c.none('group_created', 150);
  });
});

describe('§7 row 4: remove an admin; promote / demote; transfer ownership; delete / restore — owner only', () => {
  it('owner removes an admin; an admin cannot remove another admin; a member cannot either', async () => {
    const g = await makeGroup(s, { admins: 3, members: 1 });
    await expectError(g.admins[0]!.c, { type: 'remove_group_member', groupId: g.groupId, userId: g.admins[1]!.id }, 'INSUFFICIENT_PERMISSIONS');
    await expectError(g.members[0]!.c, { type: 'remove_group_member', groupId: g.groupId, userId: g.admins[1]!.id }, 'INSUFFICIENT_PERMISSIONS');
    const r = await ok(g.owner.c, { type: 'remove_group_member', groupId: g.groupId, userId: g.admins[1]!.id }, 'member_removed');
    expect(r.userId).toBe(g.admins[1]!.id);
    expect((await ok(g.owner.c, { type: 'get_group_info', groupId: g.groupId }, 'group_info')).memberCount).toBe(4);
  });

  it('owner promotes and demotes (member_promoted / member_demoted to all); admin and member refused', async () => {
    const g = await makeGroup(s, { admins: 1, members: 2 });
    const [m1, m2] = g.members as [Who, Who];
    for (const actor of [g.admins[0]!, m2]) {
      await expectError(actor.c, { type: 'promote_member', groupId: g.groupId, userId: m1.id }, 'INSUFFICIENT_PERMISSIONS');
      await expectError(actor.c, { type: 'demote_member', groupId: g.groupId, userId: g.admins[0]!.id }, 'INSUFFICIENT_PERMISSIONS');
    }
    const p = await ok(g.owner.c, { type: 'promote_member', groupId: g.groupId, userId: Number(m1.id) }, 'member_promoted');
    expect(p).toMatchObject({ groupId: g.groupId, userId: m1.id, newRole: 'admin', promotedBy: g.owner.id });
    await allGet(others(g, g.owner), 'member_promoted', (f) => f.userId === m1.id);
    // m1 now has admin powers
    await ok(m1.c, { type: 'update_group_info', groupId: g.groupId, groupDescription: 'm1 is admin' }, 'group_updated');
    const d = await ok(g.owner.c, { type: 'demote_member', groupId: g.groupId, userId: m1.id }, 'member_demoted');
    expect(d).toMatchObject({ groupId: g.groupId, userId: m1.id, newRole: 'member', demotedBy: g.owner.id });
    await allGet(others(g, g.owner), 'member_demoted', (f) => f.userId === m1.id);
    await expectError(m1.c, { type: 'update_group_info', groupId: g.groupId, groupDescription: 'not anymore' }, 'INSUFFICIENT_PERMISSIONS');
    const members = (await ok(m2.c, { type: 'get_group_members', groupId: g.groupId }, 'group_members')).members as Frame[];
    expect(Object.fromEntries(members.map((m) => [m.userId, m.role]))).toEqual({ [g.owner.id]: 'owner', [g.admins[0]!.id]: 'admin', [m1.id]: 'member', [m2.id]: 'member' });
  });

  it('CANNOT_DEMOTE_SELF, ALREADY_ADMIN, NOT_ADMIN; promote/demote of a non-member → NOT_FOUND', async () => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    await expectError(g.owner.c, { type: 'demote_member', groupId: g.groupId, userId: g.owner.id }, 'CANNOT_DEMOTE_SELF');
    await expectError(g.owner.c, { type: 'promote_member', groupId: g.groupId, userId: g.admins[0]!.id }, 'ALREADY_ADMIN');
    await expectError(g.owner.c, { type: 'demote_member', groupId: g.groupId, userId: g.members[0]!.id }, 'NOT_ADMIN');
    const x = await g.outsider();
    await expectError(g.owner.c, { type: 'promote_member', groupId: g.groupId, userId: x.id }, 'NOT_FOUND');
    await expectError(g.owner.c, { type: 'demote_member', groupId: g.groupId, userId: x.id }, 'NOT_FOUND');
    const members = (await ok(g.owner.c, { type: 'get_group_members', groupId: g.groupId }, 'group_members')).members as Frame[];
    expect(members.map((m) => m.role).sort()).toEqual(['admin', 'member', 'owner']);
    await g.members[0]!.c.none((f) => f.type === 'member_promoted' || f.type === 'member_demoted', 150);
  });

  it('owner cannot be removed: OWNER_CANNOT_BE_REMOVED (by an admin or by the owner), owner stays', async () => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    await expectError(g.admins[0]!.c, { type: 'remove_group_member', groupId: g.groupId, userId: g.owner.id }, 'OWNER_CANNOT_BE_REMOVED');
    await expectError(g.members[0]!.c, { type: 'remove_group_member', groupId: g.groupId, userId: g.owner.id }, 'INSUFFICIENT_PERMISSIONS');
    await expectError(g.owner.c, { type: 'remove_group_member', groupId: g.groupId, userId: g.owner.id }, 'OWNER_CANNOT_BE_REMOVED');
    const info = await ok(g.owner.c, { type: 'get_group_info', groupId: g.groupId }, 'group_info');
    expect(info.ownerId).toBe(g.owner.id);
    expect(info.memberCount).toBe(3);
  });

  it('transfer_ownership: owner only; new owner gets owner, previous owner becomes admin; ownership_transferred to all', async () => {
    const g = await makeGroup(s, { admins: 1, members: 2 });
    const [m1, m2] = g.members as [Who, Who];
    await expectError(g.admins[0]!.c, { type: 'transfer_ownership', groupId: g.groupId, userId: m1.id }, 'INSUFFICIENT_PERMISSIONS');
    await expectError(m2.c, { type: 'transfer_ownership', groupId: g.groupId, userId: m1.id }, 'INSUFFICIENT_PERMISSIONS');
    const outsider = await g.outsider();
    await expectError(g.owner.c, { type: 'transfer_ownership', groupId: g.groupId, userId: outsider.id }, 'NOT_FOUND');
    const t = await ok(g.owner.c, { type: 'transfer_ownership', groupId: g.groupId, userId: m1.id }, 'ownership_transferred');
    expect(t).toMatchObject({ groupId: g.groupId, newOwnerId: m1.id, previousOwnerId: g.owner.id });
    for (const f of await allGet(others(g, g.owner), 'ownership_transferred')) expect(f).toMatchObject({ newOwnerId: m1.id, previousOwnerId: g.owner.id });
    const info = await ok(m2.c, { type: 'get_group_info', groupId: g.groupId }, 'group_info');
    expect(info.ownerId).toBe(m1.id);
    expect(info.group.ownerId).toBe(m1.id);
    expect(info.createdBy).toBe(g.owner.id); // the creator stays the creator
    expect(Object.fromEntries((info.members as Frame[]).map((m) => [m.userId, m.role]))).toEqual({ [g.owner.id]: 'admin', [g.admins[0]!.id]: 'admin', [m1.id]: 'owner', [m2.id]: 'member' });
    // Powers moved with the role.
    await expectError(g.owner.c, { type: 'promote_member', groupId: g.groupId, userId: m2.id }, 'INSUFFICIENT_PERMISSIONS');
    await ok(g.owner.c, { type: 'pin_message', groupId: g.groupId, messageId: (await say(m2, g.groupId, 'x')).id }, 'message_pinned');
    await ok(m1.c, { type: 'promote_member', groupId: g.groupId, userId: m2.id }, 'member_promoted');
    const ug = await ok(g.owner.c, { type: 'get_user_groups' }, 'user_groups');
    expect(ug.groups.find((x: Frame) => x.groupId === g.groupId)).toMatchObject({ myRole: 'admin', role: 'admin' });
  });

  it('delete / restore: owner only (admin and member → INSUFFICIENT_PERMISSIONS)', async () => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    for (const w of [g.admins[0]!, g.members[0]!]) {
      await expectError(w.c, { type: 'delete_group', groupId: g.groupId }, 'INSUFFICIENT_PERMISSIONS');
      await expectError(w.c, { type: 'delete_group', groupId: g.groupId, permanent: true }, 'INSUFFICIENT_PERMISSIONS');
    }
    await say(g.members[0]!, g.groupId, 'still alive');
    await ok(g.owner.c, { type: 'delete_group', groupId: g.groupId }, 'group_deleted');
    await allGet(others(g, g.owner), 'group_deleted');
    for (const w of [g.admins[0]!, g.members[0]!]) {
      await expectError(w.c, { type: 'restore_group', groupId: g.groupId }, 'INSUFFICIENT_PERMISSIONS');
      await expectError(w.c, { type: 'get_group_info', groupId: g.groupId }, 'NOT_FOUND');
    }
    const r = await ok(g.owner.c, { type: 'restore_group', groupId: g.groupId }, 'group_restored');
    expect(r).toMatchObject({ groupId: g.groupId, restoredBy: g.owner.id });
    expect((await ok(g.admins[0]!.c, { type: 'get_group_info', groupId: g.groupId }, 'group_info')).isActive).toBe(true);
  });
});

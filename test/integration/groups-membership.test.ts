/**
 * PROTOCOL §7 membership: create_group (rejectedMembers, alias, limits,
 * TOO_MANY_MEMBERS counted after de-duplication), add_group_member (§5 blocks and
 * follows, GROUP_FULL, event order), remove_group_member, leave_group event order and
 * update_group_info limits. Soft delete / restore / hard delete and the purge:
 * groups-lifecycle.test.ts. Concurrent membership changes: groups-races.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maxInitialMembersListed } from '../../src/protocol/inboundGroups.ts';
import { addBlock } from '../../src/store/devData.ts';
import type { Frame, TestClient } from '../helpers/client.ts';
import { PRESENCE, allGet, count, expectError, freshUsers, makeGroup, ok, say, syncUntil, waitFor } from '../helpers/groupkit.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

const MAX = 20;
let s: TestServer;
beforeAll(async () => {
  s = await startServer({ MAX_GROUP_SIZE: String(MAX), GROUP_DEFAULT_MAX_MEMBERS: '10', GROUP_PURGE_DAYS: '0' });
});
afterAll(() => s?.close());

/** Index in `c.frames` of the first frame matching. */
const indexOf = (c: TestClient, pred: (f: Frame) => boolean): number => c.frames.findIndex(pred);
/** Any frame but presence. */
const anyFrame = (f: Frame): boolean => !PRESENCE.has(f.type);

describe('create_group', () => {
  it('rejectedMembers lists unknown, blocked (either way) and not-followed users; only accepted members are added and told', async () => {
    const [me, okA, okB, blockedByMe, blocksMe, notFollowed] = await freshUsers(s, 6);
    await s.follow([me!, okA!], [me!, okB!], [me!, blockedByMe!], [me!, blocksMe!], [notFollowed!, me!]);
    await addBlock(s.app.db, me!, blockedByMe!);
    await addBlock(s.app.db, blocksMe!, me!);
    const c = await s.login(me!);
    const other = await s.login(me!);
    const cs = Object.fromEntries(await Promise.all([okA!, okB!, blockedByMe!, blocksMe!, notFollowed!].map(async (id) => [id, await s.login(id)] as const)));
    const r = await ok(c, { type: 'create_group', groupName: 'R', groupDescription: 'd', initialMembers: [Number(okA), okB, blockedByMe, blocksMe, notFollowed, '999999', me] }, 'group_created');
    expect(r.rejectedMembers).toEqual([
      { userId: blockedByMe, code: 'USER_BLOCKED' },
      { userId: blocksMe, code: 'USER_BLOCKED' },
      { userId: notFollowed, code: 'NOT_FOLLOWING' },
      { userId: '999999', code: 'NOT_FOUND' },
    ]);
    expect(r).toMatchObject({ groupName: 'R', groupDescription: 'd', createdBy: me, maxMembers: 10 });
    expect(r.groupId).toMatch(/^group_[0-9a-f-]{36}$/);
    expect(r.group).toMatchObject({ groupId: r.groupId, ownerId: me, memberCount: 3, isActive: true });
    expect((r.members as Frame[]).map((m) => [m.userId, m.role])).toEqual([
      [me, 'owner'],
      [okA, 'member'],
      [okB, 'member'],
    ]);
    for (const id of [okA!, okB!]) {
      const f = await cs[id]!.next('group_created');
      expect(f.groupId).toBe(r.groupId);
      expect(f.group.memberCount).toBe(3);
      expect(f.rejectedMembers).toBeUndefined();
    }
    expect((await other.next('group_created')).groupId).toBe(r.groupId);
    for (const id of [blockedByMe!, blocksMe!, notFollowed!]) await cs[id]!.none('group_created', 100);
    await c.none('group_created', 50);
  });

  it('memberUserIds is an alias of initialMembers; ids as numbers or strings', async () => {
    const [me, a, b] = await freshUsers(s, 3, [
      [0, 1],
      [0, 2],
    ]);
    const c = await s.login(me!);
    const r = await ok(c, { type: 'create_group', groupName: 'alias', memberUserIds: [Number(a), `${b}`] }, 'group_created');
    expect(r.rejectedMembers).toEqual([]);
    expect((r.members as Frame[]).map((m) => m.userId).sort()).toEqual([me, a, b].sort());
  });

  it('more accepted initial members than maxMembers → TOO_MANY_MEMBERS (rejected ones do not count); nothing created', async () => {
    const [me, a, b, c3] = await freshUsers(s, 4, [
      [0, 1],
      [0, 2],
    ]);
    const c = await s.login(me!);
    const before = await count(s, 'group_chats');
    await expectError(c, { type: 'create_group', groupName: 'big', maxMembers: 2, initialMembers: [a, b] }, 'TOO_MANY_MEMBERS');
    expect(await count(s, 'group_chats')).toBe(before);
    // c3 is not followed: rejected, so 2 members fit maxMembers 2.
    const r = await ok(c, { type: 'create_group', groupName: 'fits', maxMembers: 2, initialMembers: [a, c3] }, 'group_created');
    expect(r.group.memberCount).toBe(2);
    expect(r.rejectedMembers).toEqual([{ userId: c3, code: 'NOT_FOLLOWING' }]);
    // The default maxMembers (GROUP_DEFAULT_MAX_MEMBERS=10 here) is enforced too.
    const many = await freshUsers(s, 10);
    await s.follow(...many.map((id) => [me!, id] as [string, string]));
    await expectError(c, { type: 'create_group', groupName: 'default cap', initialMembers: many }, 'TOO_MANY_MEMBERS');
    expect((await ok(c, { type: 'create_group', groupName: 'default cap', initialMembers: many.slice(1) }, 'group_created')).group.memberCount).toBe(10);
  });

  it('initialMembers is counted after dropping duplicates, the creator and rejected users: a long list that fits is accepted', async () => {
    const [me, a, b, nf] = await freshUsers(s, 4, [[0, 1], [0, 2]]);
    const c = await s.login(me!);
    const list = [...Array<string>(MAX).fill(a!), Number(b), `${b}`, me, me, nf, nf]; // 26 entries > MAX_GROUP_SIZE, 2 accepted
    const r = await ok(c, { type: 'create_group', groupName: 'dups', maxMembers: 3, initialMembers: list }, 'group_created');
    expect((r.members as Frame[]).map((m) => m.userId).sort()).toEqual([me, a, b].sort());
    expect(r.rejectedMembers).toEqual([{ userId: nf, code: 'NOT_FOLLOWING' }]);
  });

  it('more distinct accepted initial members than MAX_GROUP_SIZE allows → TOO_MANY_MEMBERS; only an absurdly long list is BAD_REQUEST', async () => {
    const [me, ...others] = await freshUsers(s, MAX + 2); // MAX + 1 distinct others
    await s.follow(...others.map((id) => [me!, id] as [string, string]));
    const c = await s.login(me!);
    const before = await count(s, 'group_chats');
    await expectError(c, { type: 'create_group', groupName: 'big', maxMembers: MAX, initialMembers: others }, 'TOO_MANY_MEMBERS', 'initialMembers');
    const tooLong = Array<string>(maxInitialMembersListed(MAX) + 1).fill(others[0]!);
    await expectError(c, { type: 'create_group', groupName: 'abuse', initialMembers: tooLong }, 'BAD_REQUEST', 'initialMembers');
    expect(await count(s, 'group_chats')).toBe(before);
    const r = await ok(c, { type: 'create_group', groupName: 'full', maxMembers: MAX, initialMembers: [...others.slice(2), ...others.slice(2)] }, 'group_created');
    expect(r.group.memberCount).toBe(MAX);
  });

  it('groupName 1..100 code points, groupDescription ≤ 1000, maxMembers 2..MAX_GROUP_SIZE; stored exactly as sent', async () => {
    const [me] = await freshUsers(s, 1);
    const c = await s.login(me!);
    const emoji100 = '😀'.repeat(100); // 200 UTF-16 units, 100 code points
    const r = await ok(c, { type: 'create_group', groupName: emoji100, groupDescription: 'd'.repeat(1000), maxMembers: MAX }, 'group_created');
    expect(r.groupName).toBe(emoji100);
    expect(r.maxMembers).toBe(MAX);
    await ok(c, { type: 'create_group', groupName: 'x', maxMembers: 2 }, 'group_created');
    await ok(c, { type: 'create_group', groupName: 'x', maxMembers: '3' }, 'group_created');
    const html = '<b>"&amp;</b>';
    const h = await ok(c, { type: 'create_group', name: html, description: html }, 'group_created');
    expect(h).toMatchObject({ groupName: html, groupDescription: html });
    expect((await ok(c, { type: 'get_group_info', groupId: h.groupId }, 'group_info')).group).toMatchObject({ groupName: html, groupDescription: html });
    const before = await count(s, 'group_chats');
    await expectError(c, { type: 'create_group', groupName: emoji100 + 'a' }, 'BAD_REQUEST', 'groupName');
    await expectError(c, { type: 'create_group', groupName: '' }, 'BAD_REQUEST', 'groupName');
    await expectError(c, { type: 'create_group', groupName: '   ' }, 'BAD_REQUEST', 'groupName');
    await expectError(c, { type: 'create_group' }, 'BAD_REQUEST', 'groupName');
    await expectError(c, { type: 'create_group', groupName: 7 }, 'BAD_REQUEST', 'groupName');
    await expectError(c, { type: 'create_group', groupName: 'a\u0000b' }, 'BAD_REQUEST', 'groupName');
    await expectError(c, { type: 'create_group', groupName: 'ok', groupDescription: 'd'.repeat(1001) }, 'BAD_REQUEST', 'groupDescription');
    await expectError(c, { type: 'create_group', groupName: 'ok', maxMembers: 1 }, 'BAD_REQUEST', 'maxMembers');
    await expectError(c, { type: 'create_group', groupName: 'ok', maxMembers: MAX + 1 }, 'BAD_REQUEST', 'maxMembers');
    await expectError(c, { type: 'create_group', groupName: 'ok', maxMembers: 2.5 }, 'BAD_REQUEST', 'maxMembers');
    await expectError(c, { type: 'create_group', groupName: 'ok', initialMembers: ['abc'] }, 'BAD_REQUEST', 'initialMembers');
    expect(await count(s, 'group_chats')).toBe(before);
  });
});

describe('add_group_member', () => {
  it('member_added to every member (all devices) incl. the new one, THEN group_created to the new member', async () => {
    const g = await makeGroup(s, { members: 2 });
    const ownerOther = await s.login(g.owner.id);
    const x = await g.outsider();
    const x2 = await s.login(x.id);
    const r = await ok(g.owner.c, { type: 'add_group_member', groupId: g.groupId, userId: Number(x.id) }, 'member_added');
    expect(r).toMatchObject({ groupId: g.groupId, userId: x.id, username: `u${x.id}`, addedBy: g.owner.id, role: 'member' });
    for (const c of [x.c, x2]) {
      // Both arrive; in c.frames (arrival order) member_added comes first.
      await waitFor(async () => c.frames.some((f) => f.type === 'group_created' && f.groupId === g.groupId) && c.frames.some((f) => f.type === 'member_added'));
      const iAdded = indexOf(c, (f) => f.type === 'member_added' && f.userId === x.id && f.groupId === g.groupId);
      const iCreated = indexOf(c, (f) => f.type === 'group_created' && f.groupId === g.groupId);
      expect(iAdded, JSON.stringify(c.frames.map((f) => f.type))).toBeLessThan(iCreated);
      const created = await c.next('group_created');
      expect(created.group.memberCount).toBe(4);
      expect((created.group.members as Frame[]).map((m) => m.userId)).toContain(x.id);
      expect(await c.next('member_added')).toMatchObject({ groupId: g.groupId, userId: x.id, addedBy: g.owner.id });
      await c.none((f) => f.type === 'member_added' || f.type === 'group_created', 50);
    }
    for (const w of [...g.members, { id: g.owner.id, c: ownerOther }]) {
      const f = await w.c.next('member_added');
      expect(f).toMatchObject({ groupId: g.groupId, userId: x.id, addedBy: g.owner.id, role: 'member' });
      await w.c.none((f) => f.type === 'group_created', 50);
    }
    await g.owner.c.none('member_added', 100); // the reply only, once
    expect((await ok(x.c, { type: 'get_group_info', groupId: g.groupId }, 'group_info')).memberCount).toBe(4);
  });

  it('USER_BLOCKED when the adder or any current member has a block with the target (either way); nothing added', async () => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    const blocks: [string, 'to' | 'from'][] = [
      [g.owner.id, 'to'],
      [g.owner.id, 'from'],
      [g.members[0]!.id, 'to'],
      [g.members[0]!.id, 'from'],
    ];
    for (const [who, dir] of blocks) {
      const x = await g.outsider();
      await s.follow([g.admins[0]!.id, x.id]);
      if (dir === 'to') await addBlock(s.app.db, who, x.id);
      else await addBlock(s.app.db, x.id, who);
      // The owner adds (adder's own block for the owner rows); the admin adds (a member's block).
      await expectError(g.owner.c, { type: 'add_group_member', groupId: g.groupId, userId: x.id }, 'USER_BLOCKED');
      await expectError(g.admins[0]!.c, { type: 'add_group_member', groupId: g.groupId, userId: x.id }, 'USER_BLOCKED');
      await x.c.none('group_created', 50);
    }
    expect((await ok(g.owner.c, { type: 'get_group_info', groupId: g.groupId }, 'group_info')).memberCount).toBe(3);
    for (const w of g.all) await w.c.none('member_added', 50);
  });

  it('NOT_FOLLOWING when the adder does not follow the target; NOT_FOUND for an unknown user; ALREADY_MEMBER', async () => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    const [x] = await freshUsers(s, 1);
    await s.follow([x!, g.admins[0]!.id], [g.owner.id, x!]); // the owner follows x, the admin does not
    await expectError(g.admins[0]!.c, { type: 'add_group_member', groupId: g.groupId, userId: x }, 'NOT_FOLLOWING');
    await expectError(g.owner.c, { type: 'add_group_member', groupId: g.groupId, userId: '999998' }, 'NOT_FOUND');
    await expectError(g.owner.c, { type: 'add_group_member', groupId: g.groupId, userId: g.members[0]!.id }, 'ALREADY_MEMBER');
    await expectError(g.owner.c, { type: 'add_group_member', groupId: g.groupId, userId: Number(g.admins[0]!.id) }, 'ALREADY_MEMBER');
    expect((await ok(g.owner.c, { type: 'get_group_info', groupId: g.groupId }, 'group_info')).memberCount).toBe(3);
    await ok(g.owner.c, { type: 'add_group_member', groupId: g.groupId, userId: x }, 'member_added');
  });

  it('GROUP_FULL at maxMembers; room again after a member leaves', async () => {
    const g = await makeGroup(s, { members: 2, maxMembers: 3 });
    const x = await g.outsider();
    await expectError(g.owner.c, { type: 'add_group_member', groupId: g.groupId, userId: x.id }, 'GROUP_FULL');
    expect((await ok(g.owner.c, { type: 'get_group_info', groupId: g.groupId }, 'group_info')).memberCount).toBe(3);
    await ok(g.members[1]!.c, { type: 'leave_group', groupId: g.groupId }, 'left_group');
    await ok(g.owner.c, { type: 'add_group_member', groupId: g.groupId, userId: x.id }, 'member_added');
    const y = await g.outsider();
    await expectError(g.owner.c, { type: 'add_group_member', groupId: g.groupId, userId: y.id }, 'GROUP_FULL');
  });
});

describe('update_group_info limits', () => {
  it('maxMembers below the member count → TOO_MANY_MEMBERS; above MAX_GROUP_SIZE → BAD_REQUEST; equal is fine', async () => {
    const g = await makeGroup(s, { members: 3 });
    await expectError(g.owner.c, { type: 'update_group_info', groupId: g.groupId, maxMembers: 3 }, 'TOO_MANY_MEMBERS', 'maxMembers');
    await expectError(g.owner.c, { type: 'update_group_info', groupId: g.groupId, maxMembers: MAX + 1 }, 'BAD_REQUEST', 'maxMembers');
    await expectError(g.owner.c, { type: 'update_group_info', groupId: g.groupId, maxMembers: 1 }, 'BAD_REQUEST', 'maxMembers');
    await expectError(g.owner.c, { type: 'update_group_info', groupId: g.groupId }, 'BAD_REQUEST');
    await expectError(g.owner.c, { type: 'update_group_info', groupId: g.groupId, groupName: 'n'.repeat(101) }, 'BAD_REQUEST', 'groupName');
    await expectError(g.owner.c, { type: 'update_group_info', groupId: g.groupId, groupDescription: 'n'.repeat(1001) }, 'BAD_REQUEST', 'groupDescription');
    expect((await ok(g.owner.c, { type: 'get_group_info', groupId: g.groupId }, 'group_info')).maxMembers).toBe(10);
    for (const w of g.members) await w.c.none('group_info_updated', 50);
    const r = await ok(g.owner.c, { type: 'update_group_info', groupId: g.groupId, maxMembers: 4 }, 'group_updated');
    expect(r.updates).toEqual({ maxMembers: 4 });
    for (const f of await allGet(g.members, 'group_info_updated')) expect(f.updates).toEqual({ maxMembers: 4 });
    await ok(g.owner.c, { type: 'update_group_info', groupId: g.groupId, maxMembers: MAX }, 'group_updated');
    expect((await ok(g.owner.c, { type: 'get_group_info', groupId: g.groupId }, 'group_info')).maxMembers).toBe(MAX);
  });
});

describe('remove_group_member and leave_group', () => {
  it('member_removed to the remaining members and to the removed user; afterwards the removed user receives nothing', async () => {
    const g = await makeGroup(s, { admins: 1, members: 2 });
    const gone = g.members[1]!;
    const gone2 = await s.login(gone.id);
    await say(g.owner, g.groupId, 'before');
    await allGet([gone, { id: gone.id, c: gone2 }], 'new_group_message');
    const r = await ok(g.admins[0]!.c, { type: 'remove_group_member', groupId: g.groupId, userId: gone.id }, 'member_removed');
    expect(r).toMatchObject({ groupId: g.groupId, userId: gone.id, username: `u${gone.id}`, removedBy: g.admins[0]!.id });
    for (const f of await allGet([g.owner, g.members[0]!, gone, { id: gone.id, c: gone2 }], 'member_removed')) expect(f).toMatchObject({ groupId: g.groupId, userId: gone.id, removedBy: g.admins[0]!.id });
    // The conversation goes on without them.
    const m1 = await say(g.members[0]!, g.groupId, `@u${gone.id} are you there? @everyone`);
    expect(m1.mentions).toEqual([{ type: 'everyone' }]);
    await ok(g.owner.c, { type: 'send_announcement', groupId: g.groupId, content: 'news' }, 'announcement_sent');
    await ok(g.owner.c, { type: 'typing', groupId: g.groupId, isTyping: true }, 'typing_indicator_sent');
    await ok(g.owner.c, { type: 'typing', groupId: g.groupId, isTyping: false }, 'typing_indicator_sent');
    await ok(g.admins[0]!.c, { type: 'update_group_info', groupId: g.groupId, groupName: 'renamed' }, 'group_updated');
    await ok(g.owner.c, { type: 'add_group_reaction', messageId: m1.id, reaction: '👋' }, 'group_reaction_added');
    await ok(g.owner.c, { type: 'pin_message', groupId: g.groupId, messageId: m1.id }, 'message_pinned');
    await allGet([g.owner, g.admins[0]!], 'new_group_message', (f) => f.message.id === m1.id);
    await g.members[0]!.c.next('message_pinned');
    await gone.c.none(anyFrame, 300);
    await gone2.none(anyFrame, 50);
    // sync: the removal is there (a change about them), the later messages are not.
    const sync = await syncUntil(gone, undefined, (r) => (r.changes as Frame[]).some((ch) => ch.type === 'member_removed' && ch.userId === gone.id));
    expect((sync.changes as Frame[]).find((ch) => ch.type === 'member_removed')).toMatchObject({ groupId: g.groupId, userId: gone.id, actorId: g.admins[0]!.id });
    await syncUntil(g.members[0]!, undefined, (r) => (r.messages as Frame[]).some((m) => m.id === m1.id)); // m1 is visible to sync by now
    const later = await ok(gone.c, { type: 'sync' }, 'sync_result');
    expect((later.messages as Frame[]).filter((m) => m.groupId === g.groupId && m.seq > 1)).toEqual([]);
  });

  it('leave_group: left_group then member_left on the same connection; member_left to the other devices and remaining members', async () => {
    const g = await makeGroup(s, { members: 2 });
    const leaver = g.members[0]!;
    const other = await s.login(leaver.id);
    const rid = 'leave-order';
    leaver.c.send({ type: 'leave_group', groupId: g.groupId, requestId: rid });
    const first = await leaver.c.next((f) => f.type === 'left_group' || f.type === 'member_left');
    expect(first).toMatchObject({ type: 'left_group', groupId: g.groupId, requestId: rid });
    const ml = await leaver.c.next('member_left');
    expect(ml).toMatchObject({ groupId: g.groupId, userId: leaver.id, username: `u${leaver.id}` });
    expect(ml.requestId).toBeUndefined();
    await leaver.c.none('member_left', 100); // exactly once
    expect(await other.next('member_left')).toMatchObject({ groupId: g.groupId, userId: leaver.id });
    await other.none('left_group', 50);
    for (const w of [g.owner, g.members[1]!]) expect(await w.c.next('member_left')).toMatchObject({ groupId: g.groupId, userId: leaver.id, username: `u${leaver.id}` });
    await say(g.owner, g.groupId, 'after');
    await leaver.c.none(anyFrame, 150);
    await other.none(anyFrame, 50);
    expect((await ok(g.owner.c, { type: 'get_group_members', groupId: g.groupId }, 'group_members')).members.map((m: Frame) => m.userId)).toEqual([g.owner.id, g.members[1]!.id]);
  });
});

/**
 * PROTOCOL §7 group lifecycle: soft delete (every member notified before anything
 * changes; everything but restore_group by the owner refused), restore_group, hard
 * delete (permanent:true: notified once the group is deleted for good, before its rows are
 * removed; bounded batches: groups-purge.test.ts) and the purge of
 * soft-deleted groups (GROUP_PURGE_DAYS). Membership: groups-membership.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Frame } from '../helpers/client.ts';
import { allGet, count, expectError, groupHistory, idsOf, makeGroup, ok, say } from '../helpers/groupkit.ts';
import { sleep, startServer, type TestServer } from '../helpers/server.ts';

const MAX = 20;
let s: TestServer;
beforeAll(async () => {
  s = await startServer({ MAX_GROUP_SIZE: String(MAX), GROUP_DEFAULT_MAX_MEMBERS: '10', GROUP_PURGE_DAYS: '0' });
});
afterAll(() => s?.close());

/** Wrap `store[name]` so it waits `ms` first; resolves an undo function. */
function delay(obj: any, name: string, ms: number): () => void {
  const orig = obj[name];
  obj[name] = async (...args: unknown[]) => {
    await sleep(ms);
    return orig.apply(obj, args);
  };
  return () => {
    obj[name] = orig;
  };
}

/** Make `store.softDelete` wait `ms` after telling the members, before it changes anything. */
function holdAfterTell(store: any, ms: number): () => void {
  const orig = store.softDelete;
  store.softDelete = (groupId: string, actorId: string, guard: unknown, tell: (ids: string[]) => void) =>
    orig.call(store, groupId, actorId, guard, async (ids: string[]) => {
      tell(ids);
      await sleep(ms);
    });
  return () => {
    store.softDelete = orig;
  };
}

describe('delete_group, restore_group, purge', () => {
  const store = () => s.app.chat.deps.stores.groups;
  const isActive = async (groupId: string): Promise<boolean | null> => {
    const { rows } = await s.app.db.query<{ is_active: boolean }>('SELECT is_active FROM group_chats WHERE group_id = $1', [groupId]);
    return rows[0] ? rows[0].is_active : null;
  };

  it('soft delete: every member (all devices) gets group_deleted permanent:false BEFORE anything changes; everything is refused; restore by the owner', async () => {
    const g = await makeGroup(s, { admins: 1, members: 2 });
    const ownerOther = await s.login(g.owner.id);
    const m = await say(g.members[0]!, g.groupId, 'keep me');
    const x = await g.outsider();
    // Hold the deletion 400 ms after the members were told, so they read the group while it is still active.
    const undo = holdAfterTell(store(), 400);
    let states: (boolean | null)[];
    try {
      const seen = Promise.all([...g.all.slice(1), { id: g.owner.id, c: ownerOther }].map(async (w) => {
        await w.c.next((f) => f.type === 'group_deleted' && f.groupId === g.groupId);
        return isActive(g.groupId);
      }));
      const r = await ok(g.owner.c, { type: 'delete_group', groupId: g.groupId }, 'group_deleted');
      expect(r).toMatchObject({ groupId: g.groupId, deletedBy: g.owner.id, permanent: false });
      expect(typeof r.message).toBe('string');
      states = await seen;
    } finally {
      undo();
    }
    // Every member was told while the group was still active.
    expect(states).toEqual([true, true, true, true]);
    expect(await isActive(g.groupId)).toBe(false);
    for (const w of g.all.slice(1)) await w.c.none((f) => f.type === 'group_deleted', 50); // once each
    // A soft-deleted group accepts nothing but restore_group by its owner.
    for (const w of g.all) {
      await expectError(w.c, { type: 'send_group_message', groupId: g.groupId, content: 'hello?' }, 'NOT_FOUND');
      await expectError(w.c, { type: 'get_group_info', groupId: g.groupId }, 'NOT_FOUND');
      await expectError(w.c, { type: 'get_group_messages', groupId: g.groupId }, 'NOT_FOUND');
      await expectError(w.c, { type: 'get_group_members', groupId: g.groupId }, 'NOT_FOUND');
      await expectError(w.c, { type: 'get_pinned_messages', groupId: g.groupId }, 'NOT_FOUND');
      await expectError(w.c, { type: 'leave_group', groupId: g.groupId }, 'NOT_FOUND');
      await expectError(w.c, { type: 'add_group_reaction', messageId: m.id, reaction: '🙂' }, 'NOT_FOUND');
      await expectError(w.c, { type: 'mark_message_read', messageId: m.id }, 'NOT_FOUND');
      expect((await ok(w.c, { type: 'get_user_groups' }, 'user_groups')).groups).toEqual([]);
    }
    const o = g.owner.c;
    await expectError(o, { type: 'add_group_member', groupId: g.groupId, userId: x.id }, 'NOT_FOUND');
    await expectError(o, { type: 'send_announcement', groupId: g.groupId, content: 'x' }, 'NOT_FOUND');
    await expectError(o, { type: 'update_group_info', groupId: g.groupId, groupName: 'x' }, 'NOT_FOUND');
    await expectError(o, { type: 'promote_member', groupId: g.groupId, userId: g.members[0]!.id }, 'NOT_FOUND');
    await expectError(o, { type: 'remove_group_member', groupId: g.groupId, userId: g.members[0]!.id }, 'NOT_FOUND');
    await expectError(o, { type: 'transfer_ownership', groupId: g.groupId, userId: g.members[0]!.id }, 'NOT_FOUND');
    await expectError(o, { type: 'pin_message', groupId: g.groupId, messageId: m.id }, 'NOT_FOUND');
    await expectError(o, { type: 'delete_group', groupId: g.groupId }, 'NOT_FOUND');
    await expectError(o, { type: 'edit_group_message', messageId: m.id, newContent: 'x' }, 'NOT_FOUND');
    await expectError(o, { type: 'delete_group_message', messageId: m.id }, 'NOT_FOUND');
    await expectError(g.members[0]!.c, { type: 'edit_group_message', messageId: m.id, newContent: 'x' }, 'NOT_FOUND');
    await ok(g.members[1]!.c, { type: 'typing', groupId: g.groupId, isTyping: true }, 'typing_indicator_sent');
    await x.c.none('group_created', 50);
    for (const w of g.all) await w.c.none((f) => f.type === 'typing_indicator' || f.type === 'member_added', 50);
    expect(await count(s, 'private_messages', 'conversation_id = $1', [g.groupId])).toBe(1);
    // Restore by the owner: group_restored to every member; it works again, messages kept.
    const r = await ok(o, { type: 'restore_group', groupId: g.groupId }, 'group_restored');
    expect(r).toMatchObject({ groupId: g.groupId, restoredBy: g.owner.id });
    for (const f of await allGet([...g.all.slice(1), { id: g.owner.id, c: ownerOther }], 'group_restored')) expect(f).toMatchObject({ groupId: g.groupId, restoredBy: g.owner.id });
    expect(idsOf(await groupHistory(g.members[1]!, g.groupId))).toEqual([m.id]);
    const after = await say(g.members[1]!, g.groupId, 'back again');
    await allGet([g.owner, g.admins[0]!, g.members[0]!], 'new_group_message', (f) => f.message.id === after.id);
    await ok(o, { type: 'add_group_member', groupId: g.groupId, userId: x.id }, 'member_added');
    expect((await ok(g.members[0]!.c, { type: 'get_user_groups' }, 'user_groups')).groups.map((x: Frame) => x.groupId)).toEqual([g.groupId]);
    await expectError(o, { type: 'restore_group', groupId: g.groupId }, 'BAD_REQUEST');
  });


  it('two deletions at once (soft and soft, soft and permanent): members are told once, the later one gets NOT_FOUND', async () => {
    for (const second of [false, true]) {
      const g = await makeGroup(s, { members: 1 });
      const ownerOther = await s.login(g.owner.id);
      const member = g.members[0]!;
      const undo = holdAfterTell(store(), 200);
      let replies: Frame[];
      try {
        replies = await Promise.all([
          g.owner.c.request({ type: 'delete_group', groupId: g.groupId }),
          sleep(50).then(() => ownerOther.request({ type: 'delete_group', groupId: g.groupId, permanent: second })),
        ]);
      } finally {
        undo();
      }
      expect(replies.map((r) => r.type === 'error' ? r.code : r.type)).toEqual(['group_deleted', 'NOT_FOUND']);
      await member.c.next((f) => f.type === 'group_deleted' && f.groupId === g.groupId);
      await member.c.none((f) => f.type === 'group_deleted', 300);
    }
  });
  it('hard delete (permanent:true): members are told once it is deleted for good, before its rows are removed; then the group and its messages are gone', async () => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    await say(g.members[0]!, g.groupId, 'doomed');
    const undo = delay(store(), 'purge', 400);
    let states: (boolean | null)[];
    try {
      const seen = Promise.all(g.all.slice(1).map(async (w) => {
        const f = await w.c.next((f) => f.type === 'group_deleted' && f.groupId === g.groupId);
        expect(f).toMatchObject({ permanent: true, deletedBy: g.owner.id });
        return isActive(g.groupId);
      }));
      const r = await ok(g.owner.c, { type: 'delete_group', groupId: g.groupId, permanent: true }, 'group_deleted');
      expect(r).toMatchObject({ groupId: g.groupId, permanent: true, deletedBy: g.owner.id });
      states = await seen;
    } finally {
      undo();
    }
    // Told after the deletion committed (the group inactive, never live again), before the rows went.
    expect(states).toEqual([false, false]);
    expect(await isActive(g.groupId)).toBe(null);
    expect(await count(s, 'group_members', 'group_id = $1', [g.groupId])).toBe(0);
    expect(await count(s, 'private_messages', 'conversation_id = $1', [g.groupId])).toBe(0);
    for (const w of g.all) {
      await expectError(w.c, { type: 'get_group_info', groupId: g.groupId }, 'NOT_FOUND');
      await expectError(w.c, { type: 'restore_group', groupId: g.groupId }, 'NOT_FOUND');
    }
  });

  it('purge (GROUP_PURGE_DAYS=0): a soft-deleted group is removed for good; active groups stay', async () => {
    const g = await makeGroup(s, { members: 1 });
    const keep = await makeGroup(s, { members: 1 });
    await say(g.owner, g.groupId, 'will be purged');
    await say(keep.owner, keep.groupId, 'stays');
    await ok(g.owner.c, { type: 'delete_group', groupId: g.groupId }, 'group_deleted');
    await sleep(5);
    const purged = await s.app.chat.groups.purge();
    expect(purged).toContain(g.groupId);
    expect(purged).not.toContain(keep.groupId);
    await expectError(g.owner.c, { type: 'restore_group', groupId: g.groupId }, 'NOT_FOUND');
    expect(await isActive(g.groupId)).toBe(null);
    expect(await count(s, 'private_messages', 'conversation_id = $1', [g.groupId])).toBe(0);
    expect((await ok(keep.members[0]!.c, { type: 'get_group_info', groupId: keep.groupId }, 'group_info')).isActive).toBe(true);
    expect(await count(s, 'private_messages', 'conversation_id = $1', [keep.groupId])).toBe(1);
  });
});

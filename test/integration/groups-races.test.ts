/**
 * PROTOCOL §7 under concurrency: membership and ownership commands about one group sent at
 * the same moment must end as in SOME serial order — on the wire (replies and events) and
 * in the database (a group with members has exactly one owner, who is a member and is
 * `owner_id`; a group with no members does not exist; nobody told `left_group` or
 * `member_removed` is still a member). Each race is repeated a bounded number of times.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addBlock } from '../../src/store/devData.ts';
import type { Frame, TestClient } from '../helpers/client.ts';
import { count, freshUsers, makeGroup, type Who } from '../helpers/groupkit.ts';
import { sleep, startServer, type TestServer } from '../helpers/server.ts';

const ROUNDS = 10;
let s: TestServer;
beforeAll(async () => {
  s = await startServer({ CONNECTION_RATE_PER_IP: '10000', MAX_CONNECTIONS_PER_IP: '10000' });
});
afterAll(() => s?.close());

/** Every frame `c` receives from now on, in arrival order (the client's own list drops consumed ones). */
function timeline(c: TestClient): Frame[] {
  const seen: Frame[] = [];
  c.ws.on('message', (data) => seen.push(JSON.parse(data.toString()) as Frame));
  return seen;
}

/** The group's rows: whether it exists, its owner_id, and its members with roles. */
async function rows(groupId: string): Promise<{ exists: boolean; ownerId: string | null; members: Map<string, string> }> {
  const g = await s.app.db.query<{ owner_id: string }>('SELECT owner_id FROM group_chats WHERE group_id = $1', [groupId]);
  const m = await s.app.db.query<{ user_id: string; role: string }>('SELECT user_id, role FROM group_members WHERE group_id = $1', [groupId]);
  return { exists: g.rows.length > 0, ownerId: g.rows[0]?.owner_id ?? null, members: new Map(m.rows.map((r) => [r.user_id, r.role])) };
}

/** The database invariants of PROTOCOL §7; resolves the rows for further checks. */
async function expectConsistent(groupId: string, label: string): ReturnType<typeof rows> {
  const r = await rows(groupId);
  const dump = `${label}: ${JSON.stringify({ ...r, members: [...r.members] })}`;
  if (!r.exists) {
    expect(r.members.size, dump).toBe(0);
    expect(await count(s, 'conversations', 'conversation_id = $1', [groupId]), dump).toBe(0);
    return r;
  }
  expect(r.members.size, `a group with no members must be deleted; ${dump}`).toBeGreaterThan(0);
  const owners = [...r.members].filter(([, role]) => role === 'owner').map(([id]) => id);
  expect(owners, `exactly one owner, who is owner_id; ${dump}`).toEqual([r.ownerId]);
  return r;
}

/** Send both frames at once (no await in between); resolves both replies. */
const race = (a: [Who, Record<string, unknown>], b: [Who, Record<string, unknown>]): Promise<[Frame, Frame]> =>
  Promise.all([a[0].c.request(a[1]), b[0].c.request(b[1])]);

describe('leave_group racing other membership changes', () => {
  it('owner and the last other member leave at once: both left_group, group deleted, ownership only announced before the new owner left', async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const g = await makeGroup(s, { members: 1 });
      const m = g.members[0]!;
      const seen = timeline(m.c);
      const [ro, rm] = await race([g.owner, { type: 'leave_group', groupId: g.groupId }], [m, { type: 'leave_group', groupId: g.groupId }]);
      const label = `round ${i}: owner ${JSON.stringify(ro)} member ${JSON.stringify(rm)}`;
      expect([ro.type, rm.type], label).toEqual(['left_group', 'left_group']);
      const r = await expectConsistent(g.groupId, label);
      expect(r.exists, label).toBe(false);
      await sleep(30);
      // In the serial order "owner first", M became owner and then left: it may hear of its
      // ownership, but only before its own left_group, never after.
      const types = seen.map((f) => f.type);
      const transferred = types.indexOf('ownership_transferred');
      if (transferred >= 0) expect(transferred, `${label}; M saw ${types}`).toBeLessThan(types.indexOf('left_group'));
      expect(types.filter((t) => t === 'ownership_transferred').length, label).toBeLessThanOrEqual(1);
      // Neither can still see the group.
      for (const w of g.all) expect((await w.c.request({ type: 'get_group_info', groupId: g.groupId })).code, label).toBe('NOT_FOUND');
    }
  });

  it('transfer_ownership to M while M leaves: M ends outside, the previous owner ends owner (either order)', async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const g = await makeGroup(s, { members: 2 });
      const [m, n] = g.members as [Who, Who];
      const ownerSeen = timeline(g.owner.c);
      const [rt, rl] = await race([g.owner, { type: 'transfer_ownership', groupId: g.groupId, userId: m.id }], [m, { type: 'leave_group', groupId: g.groupId }]);
      const label = `round ${i}: transfer ${JSON.stringify(rt)} leave ${JSON.stringify(rl)}`;
      expect(rl.type, label).toBe('left_group');
      // Leave first → M is no member to transfer to; transfer first → M leaves as owner.
      if (rt.type === 'error') expect(rt, label).toMatchObject({ code: 'NOT_FOUND', field: 'userId' });
      else expect(rt, label).toMatchObject({ type: 'ownership_transferred', newOwnerId: m.id, previousOwnerId: g.owner.id });
      const r = await expectConsistent(g.groupId, label);
      expect(r.members.has(m.id), `M got left_group so must not be a member; ${label}`).toBe(false);
      // Either way the old owner owns it now: never transferred, or handed back as the only admin.
      expect(r.ownerId, label).toBe(g.owner.id);
      expect(r.members.get(n.id), label).toBe('member');
      if (rt.type === 'ownership_transferred') {
        const back = await g.owner.c.next((f) => f.type === 'ownership_transferred' && f.previousOwnerId === m.id);
        expect(back.newOwnerId, label).toBe(g.owner.id);
      } else {
        await sleep(30);
        expect(ownerSeen.filter((f) => f.type === 'ownership_transferred'), label).toEqual([]);
      }
    }
  });

  it('owner removes M while M leaves: exactly one of member_removed / left_group succeeds, the other is NOT_FOUND', async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const g = await makeGroup(s, { members: 2 });
      const m = g.members[0]!;
      const [rr, rl] = await race([g.owner, { type: 'remove_group_member', groupId: g.groupId, userId: m.id }], [m, { type: 'leave_group', groupId: g.groupId }]);
      const label = `round ${i}: remove ${JSON.stringify(rr)} leave ${JSON.stringify(rl)}`;
      const outcomes = [rr.type, rl.type].sort();
      expect(outcomes, label).toEqual(rr.type === 'member_removed' ? ['error', 'member_removed'] : ['error', 'left_group']);
      expect((rr.type === 'error' ? rr : rl).code, label).toBe('NOT_FOUND');
      const r = await expectConsistent(g.groupId, label);
      expect(r.members.has(m.id), label).toBe(false);
      expect(r.members.size, label).toBe(2);
    }
  });

  it('everyone leaves at once (owner, admin, member): all get left_group and the group is deleted', async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const g = await makeGroup(s, { admins: 1, members: 1 });
      const replies = await Promise.all(g.all.map((w) => w.c.request({ type: 'leave_group', groupId: g.groupId })));
      const label = `round ${i}: ${JSON.stringify(replies)}`;
      expect(replies.map((r) => r.type), label).toEqual(['left_group', 'left_group', 'left_group']);
      expect((await expectConsistent(g.groupId, label)).exists, label).toBe(false);
    }
  });
});

describe('other membership changes are decided under the group lock', () => {
  it('two admins add two users who block each other at once: at most one of them gets in', async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const g = await makeGroup(s, { admins: 1 });
      const [x, y] = (await freshUsers(s, 2)) as [string, string];
      await s.follow([g.owner.id, x], [g.admins[0]!.id, y]);
      await addBlock(s.app.db, x, y);
      const [a, b] = await race([g.owner, { type: 'add_group_member', groupId: g.groupId, userId: x }], [g.admins[0]!, { type: 'add_group_member', groupId: g.groupId, userId: y }]);
      const label = `round ${i}: ${JSON.stringify([a, b])}`;
      expect([a.type, b.type].filter((t) => t === 'member_added').length, label).toBe(1);
      expect([a, b].find((f) => f.type === 'error')?.code, label).toBe('USER_BLOCKED');
      const r = await expectConsistent(g.groupId, label);
      expect(r.members.has(x) && r.members.has(y), label).toBe(false);
    }
  });

  it('the owner demotes admin A while A removes a member: A’s removal never lands after A lost the admin role', async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const g = await makeGroup(s, { admins: 1, members: 2 });
      const [a, m] = [g.admins[0]!, g.members[0]!];
      const [rd, rr] = await race([g.owner, { type: 'demote_member', groupId: g.groupId, userId: a.id }], [a, { type: 'remove_group_member', groupId: g.groupId, userId: m.id }]);
      const label = `round ${i}: demote ${JSON.stringify(rd)} remove ${JSON.stringify(rr)}`;
      expect(rd.type, label).toBe('member_demoted');
      const r = await expectConsistent(g.groupId, label);
      expect(r.members.get(a.id), label).toBe('member');
      if (rr.type === 'error') {
        expect(rr.code, label).toBe('INSUFFICIENT_PERMISSIONS');
        expect(r.members.has(m.id), label).toBe(true);
      } else {
        // Both succeeded: only right in the order "remove, then demote" (group_changes ids follow commit order under the lock).
        const { rows } = await s.app.db.query<{ kind: string }>(
          `SELECT kind FROM group_changes WHERE group_id = $1 AND ((kind = 'member_removed' AND user_id = $3) OR (kind = 'role_changed' AND user_id = $2 AND role = 'member')) ORDER BY id`,
          [g.groupId, a.id, m.id],
        );
        expect(rows.map((x) => x.kind), label).toEqual(['member_removed', 'role_changed']);
        expect(r.members.has(m.id), label).toBe(false);
      }
    }
  });
});

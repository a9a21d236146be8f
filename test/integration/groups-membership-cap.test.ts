/**
 * Groups per user (audit 7, F3; docs/PROTOCOL-NOTES.md "Groups per user"): a user is in at
 * most MAX_GROUPS_PER_USER groups (soft-deleted ones count until purged). `create_group`
 * by a creator at the cap → GROUP_FULL (no field), nothing created; an initial member at
 * the cap is listed in `rejectedMembers` with code GROUP_FULL; `add_group_member` of a user
 * at the cap → GROUP_FULL with `field: "userId"`. Concurrent additions of one user to
 * several groups never pass the cap (a per-user lock). Memberships already past the cap
 * are kept, and leaving always works. Most tests run at MAX_GROUPS_PER_USER=5 and seed
 * memberships with SQL; one runs at the default (500) and measures `get_user_groups` there.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { lockMembershipsAtCap } from '../../src/store/userGroups.ts';
import type { Frame } from '../helpers/client.ts';
import { expectError, freshUsers, makeGroup, ok, say, type Who } from '../helpers/groupkit.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

const CAP = 5;
const DEFAULT_CAP = 500; // MAX_GROUPS_PER_USER's default (src/config.ts), spelled out: the old code has none.

let s: TestServer;
let big: TestServer;
beforeAll(async () => {
  [s, big] = await Promise.all([
    startServer({ MAX_GROUPS_PER_USER: String(CAP), DB_POOL_SIZE: '10' }),
    startServer({ DB_POOL_SIZE: '4' }),
  ]);
});
afterAll(async () => {
  await Promise.all([s?.close(), big?.close()]);
});

/**
 * Seed `n` groups owned by `userId` (its only member) straight into the tables, as a
 * user's memberships from before the cap (or a quick fill up to it). `state`: active,
 * soft-deleted, or being purged. Resolves their ids.
 */
async function seedGroups(
  srv: TestServer,
  userId: string,
  n: number,
  opts: { name?: string; description?: string; state?: 'active' | 'deleted' | 'purging' } = {},
): Promise<string[]> {
  const state = opts.state ?? 'active';
  const { rows } = await srv.app.db.query<{ group_id: string }>(
    `WITH g AS (
       INSERT INTO group_chats (group_id, group_name, group_description, created_by_user_id, owner_id, max_members, is_active, purging, deleted_at, deleted_by)
       SELECT 'group_' || gen_random_uuid(), $2, $3, $1, $1, 50, $4, $5, CASE WHEN $4 THEN NULL ELSE now() END, CASE WHEN $4 THEN NULL ELSE $1 END
       FROM generate_series(1, $6::int)
       RETURNING group_id)
     , c AS (INSERT INTO conversations (conversation_id, kind) SELECT group_id, 'group' FROM g)
     INSERT INTO group_members (group_id, user_id, role, added_by_user_id) SELECT group_id, $1, 'owner', $1 FROM g RETURNING group_id`,
    [userId, opts.name ?? 'Seeded', opts.description ?? '', state === 'active', state === 'purging', n],
  );
  return rows.map((r) => r.group_id);
}

/** Membership rows of `userId` (every group, whatever its state). */
async function memberships(srv: TestServer, userId: string): Promise<number> {
  const { rows } = await srv.app.db.query<{ n: number }>('SELECT count(*)::int AS n FROM group_members WHERE user_id = $1', [userId]);
  return rows[0]!.n;
}

/** A fresh, logged-in user. */
async function fresh(srv: TestServer): Promise<Who> {
  const [id] = await freshUsers(srv, 1);
  return { id: id!, c: await srv.login(id!) };
}

/** The ids listed by `get_user_groups` for `w`. */
async function listed(w: Who): Promise<string[]> {
  const r = await ok(w.c, { type: 'get_user_groups' }, 'user_groups');
  return (r.groups as Frame[]).map((g) => g.groupId as string);
}

describe('MAX_GROUPS_PER_USER', () => {
  it('defaults to 500 and is validated like the other integers (1..100000)', () => {
    expect((loadConfig({}) as Record<string, unknown>).maxGroupsPerUser).toBe(DEFAULT_CAP);
    expect((loadConfig({ MAX_GROUPS_PER_USER: '7' }) as Record<string, unknown>).maxGroupsPerUser).toBe(7);
    for (const bad of ['0', '-1', '100001', '2.5', 'many']) expect(() => loadConfig({ MAX_GROUPS_PER_USER: bad })).toThrow(ConfigError);
  });
});

describe('groups per user (F3)', () => {
  it('create_group: a creator already in MAX_GROUPS_PER_USER groups → GROUP_FULL (no field), nothing created; below it the group is created', async () => {
    const creator = await fresh(s);
    await seedGroups(s, creator.id, CAP - 1);
    const first = await ok(creator.c, { type: 'create_group', groupName: 'fifth' }, 'group_created');
    expect(first.rejectedMembers).toEqual([]);
    expect(await memberships(s, creator.id)).toBe(CAP);
    const e = await expectError(creator.c, { type: 'create_group', groupName: 'sixth' }, 'GROUP_FULL');
    expect(e.field).toBeUndefined();
    expect(e.message).toContain(`${CAP} groups`);
    expect(await memberships(s, creator.id)).toBe(CAP);
    const { rows } = await s.app.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM group_chats WHERE created_by_user_id = $1 AND group_name = 'sixth'`, [creator.id]);
    expect(rows[0]!.n).toBe(0);
    expect(await listed(creator)).toHaveLength(CAP);
  });

  it('create_group: initial members at the cap are listed in rejectedMembers with GROUP_FULL, left out of the group and not told; the others join', async () => {
    const [creatorId, fullId, nearId, freeId] = await freshUsers(s, 4);
    await s.follow([creatorId!, fullId!], [creatorId!, nearId!], [creatorId!, freeId!]);
    await seedGroups(s, fullId!, CAP);
    await seedGroups(s, nearId!, CAP - 1);
    const [creator, full, near] = await Promise.all([s.login(creatorId!), s.login(fullId!), s.login(nearId!)]);
    const r = await ok(creator, { type: 'create_group', groupName: 'Mixed', initialMembers: [fullId, nearId, freeId] }, 'group_created');
    expect(r.rejectedMembers).toEqual([{ userId: fullId, code: 'GROUP_FULL' }]);
    expect((r.members as Frame[]).map((m) => m.userId).sort()).toEqual([creatorId, nearId, freeId].sort());
    expect(await near.next((f) => f.type === 'group_created' && f.groupId === r.groupId)).toBeTruthy();
    expect(await full.none((f) => f.type === 'group_created' && f.groupId === r.groupId)).toBe(true);
    expect(await memberships(s, fullId!)).toBe(CAP);
    expect(await memberships(s, nearId!)).toBe(CAP);
    // `near` is now at the cap too: the next group leaves them out.
    const again = await ok(creator, { type: 'create_group', groupName: 'Again', initialMembers: [nearId, freeId] }, 'group_created');
    expect(again.rejectedMembers).toEqual([{ userId: nearId, code: 'GROUP_FULL' }]);
  });

  it('add_group_member of a user at the cap → GROUP_FULL with field userId, nothing changes; after they leave a group they can be added', async () => {
    const g = await makeGroup(s);
    const target = await g.outsider();
    const seeded = await seedGroups(s, target.id, CAP);
    const e = await expectError(g.owner.c, { type: 'add_group_member', groupId: g.groupId, userId: target.id }, 'GROUP_FULL', 'userId');
    expect(e.message).toContain(`${CAP} groups`);
    expect(await memberships(s, target.id)).toBe(CAP);
    expect(await target.c.none((f) => f.groupId === g.groupId)).toBe(true);
    // Leaving works at the cap, and frees a place.
    await ok(target.c, { type: 'leave_group', groupId: seeded[0] }, 'left_group');
    const added = await ok(g.owner.c, { type: 'add_group_member', groupId: g.groupId, userId: target.id }, 'member_added');
    expect(added.userId).toBe(target.id);
    expect(await memberships(s, target.id)).toBe(CAP);
    expect(await listed(target)).toContain(g.groupId);
    // A group at its maxMembers is still GROUP_FULL without a field.
    const small = await makeGroup(s, { members: 1, maxMembers: 2 });
    const other = await small.outsider();
    const e2 = await expectError(small.owner.c, { type: 'add_group_member', groupId: small.groupId, userId: other.id }, 'GROUP_FULL');
    expect(e2.field).toBeUndefined();
  });

  it('concurrent adds of one user to several groups (add_group_member and create_group at once) store exactly the cap', async () => {
    const target = await fresh(s);
    await seedGroups(s, target.id, 1);
    const ADDS = 6;
    const CREATES = 4;
    const groups = await Promise.all(Array.from({ length: ADDS }, () => makeGroup(s)));
    const creators = await Promise.all(Array.from({ length: CREATES }, () => fresh(s)));
    await s.follow(...groups.map((g) => [g.owner.id, target.id] as [string, string]), ...creators.map((c) => [c.id, target.id] as [string, string]));
    const results = await Promise.all([
      ...groups.map((g) => g.owner.c.request({ type: 'add_group_member', groupId: g.groupId, userId: target.id })),
      ...creators.map((c) => c.c.request({ type: 'create_group', groupName: 'Race', initialMembers: [target.id] })),
    ]);
    const addsOk = results.slice(0, ADDS).filter((r) => r.type === 'member_added').length;
    const addsFull = results.slice(0, ADDS).filter((r) => r.type === 'error' && r.code === 'GROUP_FULL' && r.field === 'userId').length;
    const creates = results.slice(ADDS);
    expect(creates.every((r) => r.type === 'group_created'), JSON.stringify(creates)).toBe(true);
    const createsIn = creates.filter((r) => (r.rejectedMembers as Frame[]).length === 0).length;
    const createsOut = creates.filter((r) => JSON.stringify(r.rejectedMembers) === JSON.stringify([{ userId: target.id, code: 'GROUP_FULL' }])).length;
    expect(addsOk + addsFull).toBe(ADDS);
    expect(createsIn + createsOut).toBe(CREATES);
    expect(addsOk + createsIn).toBe(CAP - 1);
    expect(await memberships(s, target.id)).toBe(CAP);
    expect(await listed(target)).toHaveLength(CAP);
  });

  it('memberships already past the cap are kept (listed, usable); new ones are refused until the user is below it; leaving always works', async () => {
    const g = await makeGroup(s);
    const user = await g.outsider();
    const seeded = await seedGroups(s, user.id, CAP + 3);
    expect(await listed(user)).toHaveLength(CAP + 3);
    await say(user, seeded[CAP + 2]!, 'still here');
    await expectError(g.owner.c, { type: 'add_group_member', groupId: g.groupId, userId: user.id }, 'GROUP_FULL', 'userId');
    await expectError(user.c, { type: 'create_group', groupName: 'more' }, 'GROUP_FULL');
    for (const id of seeded.slice(0, 3)) await ok(user.c, { type: 'leave_group', groupId: id }, 'left_group');
    // At the cap (5): still refused.
    await expectError(g.owner.c, { type: 'add_group_member', groupId: g.groupId, userId: user.id }, 'GROUP_FULL', 'userId');
    await ok(user.c, { type: 'leave_group', groupId: seeded[3] }, 'left_group');
    await ok(g.owner.c, { type: 'add_group_member', groupId: g.groupId, userId: user.id }, 'member_added');
    expect(await memberships(s, user.id)).toBe(CAP);
  });

  it('a soft-deleted group still holds its members’ places (restore_group brings them back within the cap); a permanently deleted one until its purge', async () => {
    const [ownerId, userId] = await freshUsers(s, 2);
    await s.follow([ownerId!, userId!]);
    const [owner, userC] = await Promise.all([s.login(ownerId!), s.login(userId!)]);
    const user: Who = { id: userId!, c: userC };
    const created = await ok(owner, { type: 'create_group', groupName: 'Soft', initialMembers: [userId] }, 'group_created');
    expect(created.rejectedMembers).toEqual([]);
    await seedGroups(s, userId!, CAP - 1);
    await ok(owner, { type: 'delete_group', groupId: created.groupId }, 'group_deleted');
    expect(await listed(user)).toHaveLength(CAP - 1);
    // The soft-deleted group still counts: no new membership.
    await expectError(user.c, { type: 'create_group', groupName: 'new' }, 'GROUP_FULL');
    await ok(owner, { type: 'restore_group', groupId: created.groupId }, 'group_restored');
    expect(await listed(user)).toHaveLength(CAP);
    // A group whose purge was cut short holds its members' places until the sweep removes it.
    await seedGroups(s, userId!, 1, { state: 'purging' });
    await ok(user.c, { type: 'leave_group', groupId: created.groupId }, 'left_group');
    expect(await memberships(s, userId!)).toBe(CAP); // CAP - 1 seeded + the purging one
    await expectError(user.c, { type: 'create_group', groupName: 'not yet' }, 'GROUP_FULL');
    await s.app.chat.groups.purge();
    expect(await memberships(s, userId!)).toBe(CAP - 1);
    await ok(user.c, { type: 'create_group', groupName: 'fits' }, 'group_created');
  });

  it(`at the default cap (${DEFAULT_CAP}): the ${DEFAULT_CAP}th group is created, the next refused; get_user_groups at the cap stays one bounded reply`, async () => {
    const user = await fresh(big);
    await seedGroups(big, user.id, DEFAULT_CAP - 1);
    await ok(user.c, { type: 'create_group', groupName: 'last one' }, 'group_created');
    await expectError(user.c, { type: 'create_group', groupName: 'one too many' }, 'GROUP_FULL');
    expect(await memberships(big, user.id)).toBe(DEFAULT_CAP);
    const bytes = async (w: Who): Promise<number> => Buffer.byteLength(JSON.stringify(await ok(w.c, { type: 'get_user_groups' }, 'user_groups')));
    const typical = await bytes(user);
    // The largest names and descriptions (100 and 1,000 code points) of the characters JSON
    // escapes to 6 bytes each (control characters, allowed by §2): the largest reply at the cap.
    const worstUser = await fresh(big);
    await seedGroups(big, worstUser.id, DEFAULT_CAP, { name: '\u0001'.repeat(100), description: '\u0001'.repeat(1000) });
    const worst = await bytes(worstUser);
    if (process.env.SHOW_SIZES) {
      const asciiUser = await fresh(big);
      await seedGroups(big, asciiUser.id, DEFAULT_CAP, { name: 'n'.repeat(100), description: 'd'.repeat(1000) });
      console.log('get_user_groups at the cap, bytes:', { typical, longestAscii: await bytes(asciiUser), worst });
    }
    expect(typical).toBeLessThan(DEFAULT_CAP * 400);
    expect(worst).toBeLessThan(DEFAULT_CAP * 7_000);
  });
});

describe.skipIf(process.env.TEST_DATABASE_URL === undefined)('membership locks (PostgreSQL)', () => {
  it('a create_group with 999 initial members holds at most 128 advisory locks (one per bucket), not one per user: a dozen at once had filled the shared lock table', async () => {
    const ids = Array.from({ length: 999 }, (_, i) => String(8_000_000 + i));
    const held = await s.app.db.transaction(async (tx) => {
      await lockMembershipsAtCap(tx, ids, CAP);
      const { rows } = await tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()`);
      return Number(rows[0]!.n);
    });
    expect(held).toBeGreaterThan(100); // 999 users spread over the buckets
    expect(held).toBeLessThanOrEqual(128);
  });
});

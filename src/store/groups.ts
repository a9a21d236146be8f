/**
 * Groups and membership (PROTOCOL §7): `group_chats`, `group_members`, `group_changes`.
 * Every membership, role and ownership change runs in one transaction holding the group
 * row lock and decides on rows read under it (the caller's checks run there as a
 * {@link Guard}), so changes to one group are serialised: concurrent adds never pass
 * `max_members`, a live group always has exactly one owner who is a member, and a group
 * with no members is being purged (store/groupPurge.ts). A user's memberships are capped
 * (MAX_GROUPS_PER_USER) under a per-user lock taken by every path that adds one
 * (store/userGroups.ts `lockMembershipsAtCap`).
 */
import type { Db, Queryable } from './db.ts';
import { purgeDeletedGroups, purgeGroupRows, startPurge } from './groupPurge.ts';
import { MEMBER_SQL, membersOn, toGroup, toMember, type AddResult, type AudienceMember, type Changed, type CreateResult, type GroupRow, type Guard, type LeaveResult, type LockedGroup, type MemberRow, type Role } from './groupRows.ts';
import { lockMembershipsAtCap, userGroupRows } from './userGroups.ts';

export type { AddResult, AudienceMember, Changed, CreateResult, GroupRow, Guard, LeaveResult, LockedGroup, MemberRow, Role } from './groupRows.ts';

/** Group repository. */
export class GroupStore {
  constructor(private readonly db: Db) {}

  /**
   * Create a group, its conversation row (seq counter) and members (owner first), in one
   * transaction. There each user's memberships are counted against `maxGroupsPerUser` under
   * their membership locks (store/userGroups.ts `lockMembershipsAtCap`), so concurrent
   * creates and adds never seat a user in more groups than that: a creator at the cap
   * gets 'creator_full' and nothing is written; initial members at the cap are left out
   * and listed in `full`.
   * @param maxGroupsPerUser MAX_GROUPS_PER_USER (≥ 1)
   * @returns see {@link CreateResult}
   * @throws driver errors (nothing written)
   */
  async create(
    g: { groupId: string; name: string; description: string; createdBy: string; maxMembers: number; memberIds: readonly string[] },
    maxGroupsPerUser: number,
  ): Promise<CreateResult> {
    return this.db.transaction(async (tx): Promise<CreateResult> => {
      const atCap = await lockMembershipsAtCap(tx, [g.createdBy, ...g.memberIds], maxGroupsPerUser);
      if (atCap.has(g.createdBy)) return { status: 'creator_full' };
      await tx.query(
        `INSERT INTO group_chats (group_id, group_name, group_description, created_by_user_id, owner_id, max_members) VALUES ($1, $2, $3, $4, $4, $5)`,
        [g.groupId, g.name, g.description, g.createdBy, g.maxMembers],
      );
      await tx.query(`INSERT INTO conversations (conversation_id, kind) VALUES ($1, 'group')`, [g.groupId]);
      await tx.query(`INSERT INTO group_members (group_id, user_id, role, added_by_user_id) VALUES ($1, $2, 'owner', $2)`, [g.groupId, g.createdBy]);
      for (const id of g.memberIds) {
        if (atCap.has(id)) continue;
        await tx.query(`INSERT INTO group_members (group_id, user_id, role, added_by_user_id) VALUES ($1, $2, 'member', $3)`, [g.groupId, id, g.createdBy]);
      }
      await change(tx, g.groupId, null, 'group_created', g.createdBy);
      return { status: 'created', full: g.memberIds.filter((id) => atCap.has(id)) };
    });
  }

  /** A group by id (active or soft-deleted), or null. */
  async get(groupId: string): Promise<GroupRow | null> {
    const { rows } = await this.db.query('SELECT * FROM group_chats WHERE group_id = $1', [groupId]);
    return rows[0] ? toGroup(rows[0]) : null;
  }

  /** The group and the role of `userId` in it (null role: not a member), in one query; null when no such group. */
  async withRole(groupId: string, userId: string): Promise<{ group: GroupRow; role: Role | null; memberCount: number } | null> {
    const { rows } = await this.db.query(
      `SELECT g.*, (SELECT role FROM group_members WHERE group_id = g.group_id AND user_id = $2) AS my_role,
         (SELECT count(*)::int FROM group_members WHERE group_id = g.group_id) AS member_count
       FROM group_chats g WHERE g.group_id = $1`,
      [groupId, userId],
    );
    const r = rows[0];
    return r ? { group: toGroup(r), role: (r.my_role as Role | null) ?? null, memberCount: Number(r.member_count) } : null;
  }

  /** Members, oldest first. */
  members(groupId: string): Promise<MemberRow[]> {
    return membersOn(this.db, groupId);
  }

  /**
   * The send path's one query: whether the group is active, every member with role,
   * whether they have a block (either way) with `actorId` (one join against the actor's
   * block list), and, with `withUsernames` (mentions), their username.
   */
  async audience(groupId: string, actorId: string, withUsernames = true): Promise<{ active: boolean; members: AudienceMember[] } | null> {
    const { rows } = await this.db.query(
      `WITH b AS (SELECT blocked_id AS id FROM blocked_relationships WHERE blocker_id = $2::bigint
                  UNION SELECT blocker_id FROM blocked_relationships WHERE blocked_id = $2::bigint)
       SELECT g.is_active, gm.user_id, gm.role, ${withUsernames ? 'ua.username' : 'NULL AS username'}, (b.id IS NOT NULL) AS blocked
       FROM group_chats g JOIN group_members gm ON gm.group_id = g.group_id
       ${withUsernames ? 'LEFT JOIN users_auth ua ON ua.user_id = gm.user_id::bigint' : ''}
       LEFT JOIN b ON b.id = gm.user_id::bigint
       WHERE g.group_id = $1`,
      [groupId, actorId],
    );
    if (rows.length === 0) return null;
    return {
      active: rows[0]!.is_active === true,
      members: rows.map((r) => ({ userId: r.user_id as string, username: (r.username as string | null) ?? null, role: r.role as Role, blockedWithActor: r.blocked === true })),
    };
  }

  /**
   * Run `fn` in one transaction holding the group row lock (`SELECT … FOR UPDATE`), after
   * `guard` accepted what was read there. Every membership and ownership change goes
   * through here, so they are serialised per group and each decides on current rows.
   * Resolves what `fn` resolves, or null when the group does not exist (and `guard` let it pass).
   */
  private locked<T>(groupId: string, guard: Guard, fn: (tx: Queryable, g: LockedGroup) => Promise<T>): Promise<T | null> {
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query('SELECT * FROM group_chats WHERE group_id = $1 FOR UPDATE', [groupId]);
      const g = rows[0] ? { group: toGroup(rows[0]), members: await membersOn(tx, groupId) } : null;
      guard(g);
      return g ? fn(tx, g) : null;
    });
  }

  /**
   * Add `userId` as a member, under the group row lock, after `guard` (the adder's role).
   * Capacity, presence and blocks with the current members are checked there too, so
   * concurrent adds never pass `max_members` nor seat two users with a block between them;
   * last, under the new member's membership lock (taken after the group row lock, the one
   * order used), their memberships are counted against `maxGroupsPerUser`, so concurrent
   * adds to several groups never seat them in more than that.
   * @param maxGroupsPerUser MAX_GROUPS_PER_USER (≥ 1)
   * @returns see {@link AddResult}
   * @throws whatever `guard` throws (nothing written); driver errors
   */
  async addMember(groupId: string, userId: string, addedBy: string, guard: Guard, maxGroupsPerUser: number): Promise<AddResult> {
    const r = await this.locked(groupId, guard, async (tx, g): Promise<AddResult> => {
      if (!g.group.isActive) return { status: 'gone' };
      if (g.members.some((m) => m.userId === userId)) return { status: 'exists' };
      if (g.members.length >= g.group.maxMembers) return { status: 'full' };
      const { rows } = await tx.query<{ blocked: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM blocked_relationships WHERE (blocker_id = $1::bigint AND blocked_id = ANY($2::bigint[]))
                                                         OR (blocked_id = $1::bigint AND blocker_id = ANY($2::bigint[]))) AS blocked`,
        [userId, g.members.map((m) => m.userId)],
      );
      if (rows[0]?.blocked) return { status: 'blocked' };
      if ((await lockMembershipsAtCap(tx, [userId], maxGroupsPerUser)).size > 0) return { status: 'user_full' };
      await tx.query(`INSERT INTO group_members (group_id, user_id, role, added_by_user_id) VALUES ($1, $2, 'member', $3)`, [groupId, userId, addedBy]);
      await change(tx, groupId, userId, 'member_added', addedBy, 'member');
      return { status: 'added', group: g.group, members: await membersOn(tx, groupId) };
    });
    return r ?? { status: 'gone' };
  }

  /**
   * Remove member `userId` (never the owner) by `actorId`, under the group row lock, after
   * `guard` (the remover's role against the target's).
   * @returns the members before and the removed one's row; null when `userId` was not a
   *   non-owner member (or no such group)
   * @throws whatever `guard` throws (nothing written)
   */
  async removeMember(groupId: string, userId: string, actorId: string, guard: Guard): Promise<(Changed & { removed: MemberRow }) | null> {
    return this.locked(groupId, guard, async (tx, g) => {
      const removed = g.members.find((m) => m.userId === userId);
      if (!removed || removed.role === 'owner') return null;
      await tx.query('DELETE FROM group_members WHERE group_id = $1 AND user_id = $2', [groupId, userId]);
      await change(tx, groupId, userId, 'member_removed', actorId);
      return { memberIds: g.members.map((m) => m.userId), removed };
    });
  }

  /**
   * `userId` leaves, in one transaction under the group row lock, after `guard`: their
   * role is read there; an owner's ownership passes to the longest-standing admin, else
   * the longest-standing member; the last member leaving deletes the group: it is marked
   * for purging here (store/groupPurge.ts `startPurge`), and its rows are removed by
   * {@link purge} after this commits.
   * @returns what happened; null when `userId` was not a member (or no such group)
   * @throws whatever `guard` throws (nothing written)
   */
  async leave(groupId: string, userId: string, guard: Guard): Promise<LeaveResult | null> {
    return this.locked(groupId, guard, async (tx, g) => {
      const me = g.members.find((m) => m.userId === userId);
      if (!me) return null;
      const others = g.members.filter((m) => m.userId !== userId);
      const memberIds = g.members.map((m) => m.userId);
      await tx.query('DELETE FROM group_members WHERE group_id = $1 AND user_id = $2', [groupId, userId]);
      await change(tx, groupId, userId, 'member_left', userId);
      if (others.length === 0) {
        await startPurge(tx, groupId, userId);
        return { memberIds, newOwnerId: null, deleted: true };
      }
      if (me.role !== 'owner') return { memberIds, newOwnerId: null, deleted: false };
      const next = (others.find((m) => m.role === 'admin') ?? others[0]!).userId;
      await tx.query(`UPDATE group_members SET role = 'owner' WHERE group_id = $1 AND user_id = $2`, [groupId, next]);
      await tx.query('UPDATE group_chats SET owner_id = $2, updated_at = now() WHERE group_id = $1', [groupId, next]);
      await change(tx, groupId, next, 'role_changed', userId, 'owner');
      return { memberIds, newOwnerId: next, deleted: false };
    });
  }

  /**
   * Set a non-owner member's role (promote/demote) under the group row lock, after `guard`.
   * @returns the members before; null when `userId` is not a non-owner member (or no such group)
   * @throws whatever `guard` throws (nothing written)
   */
  async setRole(groupId: string, userId: string, role: 'admin' | 'member', actorId: string, guard: Guard): Promise<Changed | null> {
    return this.locked(groupId, guard, async (tx, g) => {
      const target = g.members.find((m) => m.userId === userId);
      if (!target || target.role === 'owner') return null;
      await tx.query('UPDATE group_members SET role = $3 WHERE group_id = $1 AND user_id = $2', [groupId, userId, role]);
      await change(tx, groupId, userId, 'role_changed', actorId, role);
      return { memberIds: g.members.map((m) => m.userId) };
    });
  }

  /**
   * Transfer ownership from `from` to member `to` under the group row lock, after `guard`;
   * the previous owner becomes admin.
   * @returns the members; null when `from` is not the owner or `to` not another member
   * @throws whatever `guard` throws (nothing written)
   */
  async transferOwnership(groupId: string, from: string, to: string, guard: Guard): Promise<Changed | null> {
    return this.locked(groupId, guard, async (tx, g) => {
      const owner = g.members.find((m) => m.userId === from);
      if (!owner || owner.role !== 'owner' || from === to || !g.members.some((m) => m.userId === to)) return null;
      await tx.query(`UPDATE group_members SET role = 'owner' WHERE group_id = $1 AND user_id = $2`, [groupId, to]);
      await tx.query(`UPDATE group_members SET role = 'admin' WHERE group_id = $1 AND user_id = $2`, [groupId, from]);
      await tx.query('UPDATE group_chats SET owner_id = $2, updated_at = now() WHERE group_id = $1', [groupId, to]);
      await change(tx, groupId, to, 'role_changed', from, 'owner');
      await change(tx, groupId, from, 'role_changed', from, 'admin');
      return { memberIds: g.members.map((m) => m.userId) };
    });
  }
  /**
   * Update name / description / maxMembers. maxMembers below the current member count is
   * refused: resolves 'too_small' (checked under the row lock).
   */
  async updateInfo(groupId: string, u: { name?: string; description?: string; maxMembers?: number }, actorId: string): Promise<'ok' | 'too_small'> {
    return this.db.transaction(async (tx) => {
      await tx.query('SELECT 1 FROM group_chats WHERE group_id = $1 FOR UPDATE', [groupId]);
      if (u.maxMembers !== undefined) {
        const { rows } = await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM group_members WHERE group_id = $1', [groupId]);
        if (u.maxMembers < Number(rows[0]?.n ?? 0)) return 'too_small';
      }
      await tx.query(
        `UPDATE group_chats SET group_name = COALESCE($2, group_name), group_description = COALESCE($3, group_description),
           max_members = COALESCE($4, max_members), updated_at = now() WHERE group_id = $1`,
        [groupId, u.name ?? null, u.description ?? null, u.maxMembers ?? null],
      );
      await change(tx, groupId, null, 'group_updated', actorId);
      return 'ok';
    });
  }

  /**
   * Soft delete (restorable) or restore. A group being purged is never restored.
   * @returns false when nothing changed (no such group, or restoring a group being purged)
   */
  async setActive(groupId: string, active: boolean, actorId: string): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const { rowCount } = await tx.query(
        `UPDATE group_chats SET is_active = $2, deleted_at = CASE WHEN $2 THEN NULL ELSE now() END, deleted_by = CASE WHEN $2 THEN NULL ELSE $3 END, updated_at = now()
         WHERE group_id = $1 AND NOT purging`,
        [groupId, active, actorId],
      );
      if (rowCount > 0) await change(tx, groupId, null, active ? 'group_restored' : 'group_deleted', actorId);
      return rowCount > 0;
    });
  }

  /**
   * Delete a group for good, step 1 (store/groupPurge.ts `startPurge`), under the group row
   * lock after `guard` (the owner's role): it is deactivated and marked for purging, and
   * `group_deleted` recorded for each member and for the group, in one short transaction.
   * Its rows are removed by {@link purge} once this has committed.
   * @returns the members (ids, oldest first); null when there is no such group
   * @throws whatever `guard` throws (nothing written)
   */
  async deletePermanently(groupId: string, actorId: string, guard: Guard): Promise<Changed | null> {
    return this.locked(groupId, guard, async (tx, g) => {
      await startPurge(tx, groupId, actorId);
      return { memberIds: g.members.map((m) => m.userId) };
    });
  }

  /**
   * Delete a group softly (PROTOCOL §7 `delete_group`, restorable), under the group row
   * lock after `guard` (the owner's role, an active group): `tell(memberIds)` runs first,
   * while the group is still active (members are told before anything changes), then the
   * group is deactivated and `group_deleted` recorded. Concurrent deletions are serialised
   * by the lock: the later one finds the group inactive, `guard` refuses it, and nobody is
   * told twice (review 8).
   * @returns the members (ids, oldest first); null when there is no such group
   * @throws whatever `guard` throws (nothing told, nothing written); driver errors
   */
  async softDelete(groupId: string, actorId: string, guard: Guard, tell: (memberIds: string[]) => void | Promise<void>): Promise<Changed | null> {
    return this.locked(groupId, guard, async (tx, g) => {
      const memberIds = g.members.map((m) => m.userId);
      await tell(memberIds);
      await tx.query(
        `UPDATE group_chats SET is_active = false, deleted_at = now(), deleted_by = $2, updated_at = now() WHERE group_id = $1 AND is_active AND NOT purging`,
        [groupId, actorId],
      );
      await change(tx, groupId, null, 'group_deleted', actorId);
      return { memberIds };
    });
  }

  /**
   * Remove a group marked for purging (by {@link deletePermanently}, the last {@link leave},
   * or {@link purgeDeleted}): its messages in bounded batches, then its rows
   * (store/groupPurge.ts `purgeGroupRows`). Resolves false when it is not marked.
   * @throws driver errors; what was removed stays removed, and {@link purgeDeleted} finishes it
   */
  purge(groupId: string): Promise<boolean> {
    return purgeGroupRows(this.db, groupId);
  }

  /**
   * Purge groups soft-deleted more than `days` days ago and groups left marked by a purge
   * cut short, oldest deletion first, each on its own: one that fails goes to `onError`
   * and the others are still purged (store/groupPurge.ts `purgeDeletedGroups`).
   * @returns the ids purged
   */
  purgeDeleted(days: number, onError: (groupId: string, err: unknown) => void = () => {}): Promise<string[]> {
    return purgeDeletedGroups(this.db, days, onError);
  }

  /**
   * Ids of the groups `userId` belongs to, soft-deleted ones included (for sync: changes
   * made before a soft deletion still reach a member's devices that sync after it, audit
   * 4; a soft-deleted group takes no new messages or changes). A group being purged is
   * left out: its messages are being removed, and a device must not get part of them.
   */
  async groupIdsOf(userId: string): Promise<string[]> {
    const { rows } = await this.db.query<{ group_id: string }>(
      `SELECT gm.group_id FROM group_members gm JOIN group_chats g ON g.group_id = gm.group_id AND NOT g.purging WHERE gm.user_id = $1`,
      [userId],
    );
    return rows.map((r) => r.group_id);
  }

  /**
   * The user's groups with role, member count, `last_message_at` and `unread`, most recent
   * first (PROTOCOL §7 `get_user_groups`): see {@link userGroupRows}. Throws driver errors.
   */
  userGroups(userId: string): Promise<Record<string, unknown>[]> {
    return userGroupRows(this.db, userId);
  }

  /** Move a member's read position forward to `seq` (never back). */
  async markRead(groupId: string, userId: string, seq: number): Promise<boolean> {
    const { rowCount } = await this.db.query(
      'UPDATE group_members SET last_read_seq = $3 WHERE group_id = $1 AND user_id = $2 AND last_read_seq < $3',
      [groupId, userId, seq],
    );
    return rowCount > 0;
  }
}

async function change(tx: Queryable, groupId: string, userId: string | null, kind: string, actorId: string | null, role: string | null = null): Promise<void> {
  await tx.query('INSERT INTO group_changes (group_id, user_id, kind, actor_id, role) VALUES ($1, $2, $3, $4, $5)', [groupId, userId, kind, actorId, role]);
}

/**
 * Groups: creation, membership, roles, info, deletion (PROTOCOL §7, §5 for groups).
 * Messages, reactions, pins and receipts in groups are in `groupMessages.ts`.
 * A non-member gets NOT_FOUND for anything about a group (existence never leaked); a
 * soft-deleted group accepts nothing but `restore_group` by its owner.
 */
import { randomUUID } from 'node:crypto';
import { ChatError, badRequest, notFound } from '../protocol/errors.ts';
import { nowIso } from '../protocol/outbound.ts';
import type { GroupRow, Guard, LockedGroup, MemberRow, Role } from '../store/groups.ts';
import { afterReply, publish, rateLimit, type Actor, type ChatDeps, type Reply } from './context.ts';
import { creatorAtCap, userAtCap } from './groupCap.ts';

const RANK: Record<Role, number> = { member: 0, admin: 1, owner: 2 };

/** A group the actor belongs to, with their role. */
export interface Access {
  group: GroupRow;
  role: Role;
  memberCount: number;
}

/** Group object (PROTOCOL §7). */
export function groupObject(g: GroupRow, members: readonly MemberRow[]): Record<string, unknown> {
  return {
    groupId: g.groupId,
    groupName: g.groupName,
    groupDescription: g.groupDescription,
    createdBy: g.createdBy,
    ownerId: g.ownerId,
    maxMembers: g.maxMembers,
    memberCount: members.length,
    isActive: g.isActive,
    createdAt: g.createdAt.toISOString(),
    members: members.map(memberObject),
  };
}

/** A member entry (PROTOCOL §7 `members`). */
export function memberObject(m: MemberRow): Record<string, unknown> {
  return { userId: m.userId, username: m.username, displayName: m.displayName, role: m.role, joinedAt: m.joinedAt.toISOString() };
}

/**
 * The role of `userId` in `group` when it ranks at least `need`.
 * @throws ChatError NOT_FOUND (field `groupId`) when there is no group, `userId` is not a
 *   member (`role` null), the group is being purged, or it is soft-deleted (unless `allowInactive`);
 *   INSUFFICIENT_PERMISSIONS when the role ranks below `need` (PROTOCOL §7 table)
 */
function requireRole(group: GroupRow | undefined, role: Role | null | undefined, need: Role, allowInactive = false): Role {
  if (!group || !role || group.purging || (!group.isActive && !allowInactive)) throw notFound('Group', 'groupId');
  if (RANK[role] < RANK[need]) throw new ChatError('INSUFFICIENT_PERMISSIONS', `Only ${need === 'owner' ? 'the owner' : 'admins'} can do that`);
  return role;
}

/**
 * A store {@link Guard} (run under the group row lock) admitting `actor` when they are a
 * member of the active group with a role of at least `need`, then running `more` on the
 * locked rows with the actor's role (further checks; throw a ChatError to refuse).
 */
function guard(actor: Actor, need: Role, more?: (g: LockedGroup, role: Role) => void): Guard {
  return (g) => {
    const role = requireRole(g?.group, g?.members.find((m) => m.userId === actor.userId)?.role, need);
    more?.(g!, role);
  };
}

/** Group membership and administration service. */
export class Groups {
  constructor(private readonly deps: ChatDeps) {}

  /**
   * The actor's access to a group. NOT_FOUND when there is no such group, the actor is
   * not a member, or the group is soft-deleted (unless `allowInactive`). With `need`,
   * INSUFFICIENT_PERMISSIONS when the actor's role ranks below it.
   */
  async access(actor: Actor, groupId: string, need: Role = 'member', allowInactive = false): Promise<Access> {
    const r = await this.deps.stores.groups.withRole(groupId, actor.userId);
    const role = requireRole(r?.group, r?.role, need, allowInactive);
    return { group: r!.group, role, memberCount: r!.memberCount };
  }

  /** User ids of the group's members. */
  async memberIds(groupId: string): Promise<string[]> {
    return (await this.deps.stores.groups.members(groupId)).map((m) => m.userId);
  }

  /**
   * `create_group` → `group_created` with `rejectedMembers` (PROTOCOL §7, §5): each initial
   * member must exist (NOT_FOUND), have no block with the creator (USER_BLOCKED) and be
   * followed by the creator per FOLLOW_POLICY (NOT_FOLLOWING); refused ones are listed,
   * not silently dropped. More accepted members than maxMembers allows → TOO_MANY_MEMBERS.
   * Each user's memberships are checked against MAX_GROUPS_PER_USER as the group is stored
   * (./groupCap.ts): an initial member at the cap is listed with code GROUP_FULL; the
   * creator at the cap → GROUP_FULL (no field), nothing created.
   */
  async create(actor: Actor, cmd: { groupName: string; groupDescription?: string; initialMembers?: string[]; maxMembers?: number }): Promise<Reply> {
    const { deps } = this;
    await rateLimit(deps, 'action', actor.userId);
    const maxMembers = cmd.maxMembers ?? deps.settings.defaultGroupMaxMembers;
    const wanted = [...new Set(cmd.initialMembers ?? [])].filter((id) => id !== actor.userId);
    let rels;
    try {
      rels = await deps.stores.relations.pairsMany(actor.userId, wanted);
    } catch {
      throw new ChatError('SERVICE_UNAVAILABLE', 'Relationship check unavailable; nothing was changed');
    }
    const accepted: string[] = [];
    const rejectedMembers: { userId: string; code: string }[] = [];
    for (const id of wanted) {
      const rel = rels.get(id);
      if (!rel || !rel.bExists) rejectedMembers.push({ userId: id, code: 'NOT_FOUND' });
      else if (rel.blocked) rejectedMembers.push({ userId: id, code: 'USER_BLOCKED' });
      else if (!deps.relations.followOk(rel)) rejectedMembers.push({ userId: id, code: 'NOT_FOLLOWING' });
      else accepted.push(id);
    }
    if (accepted.length + 1 > maxMembers) throw new ChatError('TOO_MANY_MEMBERS', `A group of at most ${maxMembers} members cannot start with ${accepted.length + 1}`, { field: 'initialMembers' });
    const groupId = `group_${randomUUID()}`;
    const made = await deps.stores.groups.create({ groupId, name: cmd.groupName, description: cmd.groupDescription ?? '', createdBy: actor.userId, maxMembers, memberIds: accepted }, deps.settings.maxGroupsPerUser);
    if (made.status === 'creator_full') throw creatorAtCap(deps.settings.maxGroupsPerUser);
    for (const id of made.full) rejectedMembers.push({ userId: id, code: 'GROUP_FULL' });
    const full = new Set(made.full);
    const added = accepted.filter((id) => !full.has(id));
    const [group, members] = await Promise.all([deps.stores.groups.get(groupId), deps.stores.groups.members(groupId)]);
    const event = this.createdEvent(group!, members);
    publish(deps, added, event);
    publish(deps, [actor.userId], event, actor.connId);
    return { ...event, rejectedMembers };
  }

  private createdEvent(group: GroupRow, members: readonly MemberRow[]): Reply {
    const obj = groupObject(group, members);
    return {
      type: 'group_created',
      group: obj,
      groupId: group.groupId,
      groupName: group.groupName,
      groupDescription: group.groupDescription,
      createdBy: group.createdBy,
      members: obj.members,
      maxMembers: group.maxMembers,
      timestamp: nowIso(),
    };
  }

  /**
   * `add_group_member` (owner/admin) → `member_added` to every member, the new one
   * included, then `group_created` to the new member (PROTOCOL §7). USER_BLOCKED when the
   * adder or any current member has a block with the target; the adder must follow the
   * target; GROUP_FULL (no field: the group is at maxMembers; field `userId`: the target
   * is in MAX_GROUPS_PER_USER groups, ./groupCap.ts); ALREADY_MEMBER. The adder's role,
   * capacity, presence and blocks with the members are checked again under the group row
   * lock as the member is added, and the target's memberships under their own lock.
   */
  async addMember(actor: Actor, groupId: string, userId: string): Promise<Reply> {
    const { deps } = this;
    await rateLimit(deps, 'action', actor.userId);
    await this.access(actor, groupId, 'admin');
    const rel = await deps.relations.pair(actor.userId, userId);
    if (!rel.bExists) throw notFound('User', 'userId');
    const current = await deps.stores.groups.members(groupId);
    if (current.some((m) => m.userId === userId)) throw new ChatError('ALREADY_MEMBER', 'Already a member', { field: 'userId' });
    let blocked: Set<string>;
    try {
      blocked = await deps.stores.relations.blockedAmong(userId, current.map((m) => m.userId));
    } catch {
      throw new ChatError('SERVICE_UNAVAILABLE', 'Relationship check unavailable; nothing was changed');
    }
    if (rel.blocked || blocked.size > 0) throw new ChatError('USER_BLOCKED', 'This user cannot be added to this group');
    if (!deps.relations.followOk(rel)) throw new ChatError('NOT_FOLLOWING', 'You must follow this user to add them');
    const res = await deps.stores.groups.addMember(groupId, userId, actor.userId, guard(actor, 'admin'), deps.settings.maxGroupsPerUser);
    if (res.status !== 'added') {
      if (res.status === 'exists') throw new ChatError('ALREADY_MEMBER', 'Already a member', { field: 'userId' });
      if (res.status === 'full') throw new ChatError('GROUP_FULL', 'The group is full');
      if (res.status === 'blocked') throw new ChatError('USER_BLOCKED', 'This user cannot be added to this group');
      if (res.status === 'user_full') throw userAtCap(deps.settings.maxGroupsPerUser);
      throw notFound('Group', 'groupId');
    }
    const { group, members } = res;
    const added = members.find((m) => m.userId === userId);
    const event = { type: 'member_added', groupId, userId, username: added?.username ?? null, addedBy: actor.userId, role: 'member', timestamp: nowIso() };
    publish(deps, members.map((m) => m.userId), event, actor.connId);
    publish(deps, [userId], this.createdEvent(group, members));
    return event;
  }

  /**
   * `remove_group_member` → `member_removed` to the remaining members and to the removed
   * user (PROTOCOL §7). Admins remove members only; the owner removes anyone but
   * themselves; the owner is never removed. Roles are checked under the group row lock.
   */
  async removeMember(actor: Actor, groupId: string, userId: string): Promise<Reply> {
    const { deps } = this;
    await rateLimit(deps, 'action', actor.userId);
    const check = guard(actor, 'admin', (g, role) => {
      // The owner naming themselves falls through to OWNER_CANNOT_BE_REMOVED (PROTOCOL §7).
      if (userId === actor.userId && role !== 'owner') throw badRequest('Use leave_group to leave a group', 'userId');
      const target = g.members.find((m) => m.userId === userId);
      if (!target) throw notFound('Member', 'userId');
      if (target.role === 'owner') throw new ChatError('OWNER_CANNOT_BE_REMOVED', 'The owner cannot be removed');
      if (target.role === 'admin' && role !== 'owner') throw new ChatError('INSUFFICIENT_PERMISSIONS', 'Only the owner can remove an admin');
    });
    const r = await deps.stores.groups.removeMember(groupId, userId, actor.userId, check);
    if (!r) throw notFound('Member', 'userId');
    const event = { type: 'member_removed', groupId, userId, username: r.removed.username, removedBy: actor.userId, timestamp: nowIso() };
    publish(deps, r.memberIds, event, actor.connId);
    return event;
  }

  /**
   * `leave_group` → `left_group`; `member_left` to the remaining members and all of the
   * leaver's connections, the originating one right after `left_group` (PROTOCOL §7).
   * The owner leaving passes ownership (`ownership_transferred`); the last member leaving
   * deletes the group. The leaver's role is read, and all of this done, in one transaction
   * under the group row lock, so a leave is serialised with every other membership change;
   * events name only what was done, after it committed. A group left empty is marked for
   * purging in that transaction, and its messages removed afterwards ({@link purgeNow}).
   * @throws ChatError NOT_FOUND (field `groupId`) when the actor is not (or no longer) a
   *   member of the active group
   */
  async leave(actor: Actor, groupId: string): Promise<Reply> {
    const { deps } = this;
    const r = await deps.stores.groups.leave(groupId, actor.userId, guard(actor, 'member'));
    if (!r) throw notFound('Group', 'groupId');
    const { memberIds: before, newOwnerId } = r;
    const remaining = before.filter((id) => id !== actor.userId);
    const ts = nowIso();
    const left = { type: 'member_left', groupId, userId: actor.userId, username: actor.username, timestamp: ts };
    const reply: Reply = { type: 'left_group', groupId, timestamp: ts };
    publish(deps, before, left, actor.connId);
    if (newOwnerId) publish(deps, remaining, { type: 'ownership_transferred', groupId, newOwnerId, previousOwnerId: actor.userId, timestamp: ts });
    if (r.deleted) await this.purgeNow(groupId);
    return afterReply(reply, (sendOwn) => sendOwn(left));
  }

  /** `update_group_info` (owner/admin) → `group_updated`; members get `group_info_updated` (PROTOCOL §7). */
  async updateInfo(actor: Actor, cmd: { groupId: string; groupName?: string; groupDescription?: string; maxMembers?: number }): Promise<Reply> {
    const { deps } = this;
    await rateLimit(deps, 'action', actor.userId);
    await this.access(actor, cmd.groupId, 'admin');
    const updates: Record<string, unknown> = {};
    if (cmd.groupName !== undefined) updates.groupName = cmd.groupName;
    if (cmd.groupDescription !== undefined) updates.groupDescription = cmd.groupDescription;
    if (cmd.maxMembers !== undefined) updates.maxMembers = cmd.maxMembers;
    const res = await deps.stores.groups.updateInfo(cmd.groupId, { name: cmd.groupName, description: cmd.groupDescription, maxMembers: cmd.maxMembers }, actor.userId);
    if (res === 'too_small') throw new ChatError('TOO_MANY_MEMBERS', 'maxMembers cannot be below the current member count', { field: 'maxMembers' });
    const ts = nowIso();
    publish(deps, await this.memberIds(cmd.groupId), { type: 'group_info_updated', groupId: cmd.groupId, updates, updatedBy: actor.userId, updatedByUsername: actor.username, timestamp: ts }, actor.connId);
    return { type: 'group_updated', groupId: cmd.groupId, updates, timestamp: ts };
  }

  /**
   * `promote_member` / `demote_member` (owner only) → `member_promoted` / `member_demoted`
   * to all members (PROTOCOL §7); roles checked under the group row lock.
   * @throws ChatError NOT_FOUND, INSUFFICIENT_PERMISSIONS, CANNOT_DEMOTE_SELF, NOT_FOUND
   *   (field `userId`: not a member), ALREADY_ADMIN, NOT_ADMIN
   */
  async setRole(actor: Actor, groupId: string, userId: string, promote: boolean): Promise<Reply> {
    const { deps } = this;
    await rateLimit(deps, 'action', actor.userId);
    const check = guard(actor, 'owner', (g) => {
      if (!promote && userId === actor.userId) throw new ChatError('CANNOT_DEMOTE_SELF', 'The owner cannot demote themselves');
      const target = g.members.find((m) => m.userId === userId);
      if (!target) throw notFound('Member', 'userId');
      if (promote && target.role !== 'member') throw new ChatError('ALREADY_ADMIN', 'Already an admin');
      if (!promote && target.role !== 'admin') throw new ChatError('NOT_ADMIN', 'Not an admin');
    });
    const r = await deps.stores.groups.setRole(groupId, userId, promote ? 'admin' : 'member', actor.userId, check);
    if (!r) throw notFound('Member', 'userId');
    const event = promote
      ? { type: 'member_promoted', groupId, userId, newRole: 'admin', promotedBy: actor.userId, timestamp: nowIso() }
      : { type: 'member_demoted', groupId, userId, newRole: 'member', demotedBy: actor.userId, timestamp: nowIso() };
    publish(deps, r.memberIds, event, actor.connId);
    return event;
  }

  /**
   * `transfer_ownership` (owner only) → `ownership_transferred` to all members; the previous
   * owner becomes admin (PROTOCOL §7). Checked and done under the group row lock.
   * @throws ChatError NOT_FOUND, INSUFFICIENT_PERMISSIONS, BAD_REQUEST (self), NOT_FOUND
   *   (field `userId`: not a member)
   */
  async transferOwnership(actor: Actor, groupId: string, userId: string): Promise<Reply> {
    const { deps } = this;
    await rateLimit(deps, 'action', actor.userId);
    const check = guard(actor, 'owner', (g) => {
      if (userId === actor.userId) throw badRequest('You already own this group', 'userId');
      if (!g.members.some((m) => m.userId === userId)) throw notFound('Member', 'userId');
    });
    const r = await deps.stores.groups.transferOwnership(groupId, actor.userId, userId, check);
    if (!r) throw notFound('Member', 'userId');
    const event = { type: 'ownership_transferred', groupId, newOwnerId: userId, previousOwnerId: actor.userId, timestamp: nowIso() };
    publish(deps, r.memberIds, event, actor.connId);
    return event;
  }

  /**
   * `delete_group` (owner only) → `group_deleted` to all members, sent BEFORE anything is
   * removed (PROTOCOL §7). Soft by default (restorable for GROUP_PURGE_DAYS). `permanent`:
   * the group is first deactivated and marked for purging in one short transaction under
   * the group row lock (from then on it refuses everything, `restore_group` included),
   * members are told once that has committed, and then its messages and rows are removed
   * in bounded batches ({@link purgeNow}; the periodic purge finishes a purge cut short).
   */
  async deleteGroup(actor: Actor, groupId: string, permanent = false): Promise<Reply> {
    const { deps } = this;
    await this.access(actor, groupId, 'owner');
    const event = {
      type: 'group_deleted',
      groupId,
      deletedBy: actor.userId,
      permanent,
      message: permanent ? 'The group was deleted' : `The group was deleted; its owner can restore it within ${deps.settings.groupPurgeDays} days`,
      timestamp: nowIso(),
    };
    if (permanent) {
      const r = await deps.stores.groups.deletePermanently(groupId, actor.userId, guard(actor, 'owner'));
      if (!r) throw notFound('Group', 'groupId');
      publish(deps, r.memberIds, event, actor.connId);
      await this.purgeNow(groupId);
      return event;
    }
    // Members are told under the group lock, before anything changes; a concurrent delete then finds it inactive.
    const r = await deps.stores.groups.softDelete(groupId, actor.userId, guard(actor, 'owner'), (memberIds) => publish(deps, memberIds, event, actor.connId));
    if (!r) throw notFound('Group', 'groupId');
    return event;
  }

  /**
   * Remove the rows of a group just marked for purging (permanent `delete_group`, the last
   * member leaving). A failure (e.g. a statement timeout) is logged, not thrown: the group
   * is already deleted for its members, and the periodic purge finishes it.
   */
  private async purgeNow(groupId: string): Promise<void> {
    try {
      await this.deps.stores.groups.purge(groupId);
    } catch (err) {
      this.deps.logger.warn('group purge failed; the periodic purge will finish it', { groupId, err: (err as Error).message });
    }
  }

  /** `restore_group` (owner only, soft-deleted group) → `group_restored` to all members. */
  async restore(actor: Actor, groupId: string): Promise<Reply> {
    const { deps } = this;
    const a = await this.access(actor, groupId, 'owner', true);
    if (a.group.isActive) throw badRequest('The group is not deleted', 'groupId');
    if (!(await deps.stores.groups.setActive(groupId, true, actor.userId))) throw notFound('Group', 'groupId');
    const event = { type: 'group_restored', groupId, restoredBy: actor.userId, timestamp: nowIso() };
    publish(deps, await this.memberIds(groupId), event, actor.connId);
    return event;
  }

  /** `get_group_members` → `group_members {groupId, members}`. */
  async members(actor: Actor, groupId: string): Promise<Reply> {
    await this.access(actor, groupId);
    const members = await this.deps.stores.groups.members(groupId);
    return { type: 'group_members', groupId, members: members.map(memberObject), timestamp: nowIso() };
  }

  /** `get_group_info` → `group_info {group, …same fields flat}`. */
  async info(actor: Actor, groupId: string): Promise<Reply> {
    const a = await this.access(actor, groupId);
    const group = groupObject(a.group, await this.deps.stores.groups.members(groupId));
    return { type: 'group_info', group, ...group, timestamp: nowIso() };
  }

  /** `get_user_groups` → `user_groups {groups:[…]}` with myRole, memberCount, lastMessageAt, unreadCount. */
  async userGroups(actor: Actor): Promise<Reply> {
    const rows = await this.deps.stores.groups.userGroups(actor.userId);
    return {
      type: 'user_groups',
      groups: rows.map((r) => ({
        groupId: r.group_id,
        groupName: r.group_name,
        groupDescription: r.group_description,
        createdBy: r.created_by_user_id,
        myRole: r.role,
        role: r.role,
        joinedAt: (r.joined_at as Date).toISOString(),
        memberCount: Number(r.member_count),
        lastMessageAt: r.last_message_at ? (r.last_message_at as Date).toISOString() : null,
        unreadCount: Number(r.unread),
      })),
      timestamp: nowIso(),
    };
  }

  /**
   * Purge groups soft-deleted longer than GROUP_PURGE_DAYS, and groups whose permanent
   * deletion was cut short (periodic job), oldest deletion first. A group that fails is
   * logged and skipped; the sweep goes on. Resolves the purged ids.
   */
  purge(): Promise<string[]> {
    return this.deps.stores.groups.purgeDeleted(this.deps.settings.groupPurgeDays, (groupId, err) =>
      this.deps.logger.warn('group purge failed for one group; continuing', { groupId, err: (err as Error).message }),
    );
  }
}

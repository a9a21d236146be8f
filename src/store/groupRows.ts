/**
 * Group row shapes and their mapping from SQL (store/groups.ts): the group, its members,
 * and the types of the membership changes' results.
 */
import type { Queryable } from './db.ts';

/** Group roles. */
export type Role = 'owner' | 'admin' | 'member';

/** A group row. */
export interface GroupRow {
  groupId: string;
  groupName: string;
  groupDescription: string;
  createdBy: string;
  ownerId: string;
  maxMembers: number;
  isActive: boolean;
  /** Deleted for good and being purged (store/groupPurge.ts): never restored. */
  purging: boolean;
  deletedAt: Date | null;
  createdAt: Date;
}

/** A member with display fields. */
export interface MemberRow {
  userId: string;
  username: string | null;
  displayName: string | null;
  role: Role;
  joinedAt: Date;
}

/** A member as the send path needs it: role, username (mentions) and a block with the actor. */
export interface AudienceMember {
  userId: string;
  username: string | null;
  role: Role;
  blockedWithActor: boolean;
}

/** A group as read under its row lock: the row and every member with role, oldest first. */
export interface LockedGroup {
  group: GroupRow;
  members: MemberRow[];
}

/**
 * A caller's check, run under the group row lock before anything is written, on what was
 * read there (null: no such group). It refuses by throwing (the transaction rolls back; the
 * error reaches the caller unchanged). It must not query: on PGlite (one connection) a
 * query outside the transaction would wait for it forever.
 */
export type Guard = (g: LockedGroup | null) => void;

/**
 * Outcome of {@link GroupStore.addMember}: 'added' (with the group and its members after
 * the add), 'full' at capacity, 'exists' if already in, 'blocked' when a member has a
 * block (either way) with the new one, 'user_full' when the new one is already in
 * MAX_GROUPS_PER_USER groups (store/userGroups.ts `lockMembershipsAtCap`), 'gone' if the
 * group is missing or not active.
 */
export type AddResult = { status: 'added'; group: GroupRow; members: MemberRow[] } | { status: 'exists' | 'full' | 'blocked' | 'user_full' | 'gone' };

/**
 * Outcome of {@link GroupStore.create}: 'created', with `full` the initial members left out
 * because they were already in MAX_GROUPS_PER_USER groups (ids, in the order given); or
 * 'creator_full' when the creator was (nothing written).
 */
export type CreateResult = { status: 'created'; full: string[] } | { status: 'creator_full' };

/** Outcome of a membership change other than a leave: the members just before it (ids, oldest first). */
export interface Changed {
  memberIds: string[];
}

/**
 * Outcome of {@link GroupStore.leave}: the members before (the leaver included), who became
 * owner (the leaver was the owner and someone remains; else null), and whether the group
 * was deleted (the leaver was the last member).
 */
export interface LeaveResult extends Changed {
  newOwnerId: string | null;
  deleted: boolean;
}

/** A `group_chats` row as a {@link GroupRow}. */
export function toGroup(r: Record<string, unknown>): GroupRow {
  return {
    groupId: r.group_id as string,
    groupName: r.group_name as string,
    groupDescription: (r.group_description as string) ?? '',
    createdBy: r.created_by_user_id as string,
    ownerId: r.owner_id as string,
    maxMembers: Number(r.max_members),
    isActive: r.is_active === true,
    purging: r.purging === true,
    deletedAt: (r.deleted_at as Date | null) ?? null,
    createdAt: r.created_at as Date,
  };
}

/** Members with display fields (username, display name from the auth backend's profile); add a WHERE on `gm`. */
export const MEMBER_SQL = `SELECT gm.user_id, ua.username, gm.role, gm.joined_at,
    COALESCE(NULLIF(trim(concat_ws(' ', p.first_name, p.last_name)), ''), ua.username) AS display_name
  FROM group_members gm
  LEFT JOIN users_auth ua ON ua.user_id = gm.user_id::bigint
  LEFT JOIN user_profile_info p ON p.user_id = ua.user_id`;

/** A row of {@link MEMBER_SQL} as a {@link MemberRow}. */
export const toMember = (r: Record<string, unknown>): MemberRow => ({
  userId: r.user_id as string,
  username: (r.username as string | null) ?? null,
  displayName: (r.display_name as string | null) ?? null,
  role: r.role as Role,
  joinedAt: r.joined_at as Date,
});

/** Members of `groupId` through `q` (a pool or a transaction), oldest first. */
export async function membersOn(q: Queryable, groupId: string): Promise<MemberRow[]> {
  const { rows } = await q.query(`${MEMBER_SQL} WHERE gm.group_id = $1 ORDER BY gm.joined_at, gm.user_id`, [groupId]);
  return rows.map(toMember);
}

/**
 * The per-user group membership cap (MAX_GROUPS_PER_USER, `settings.maxGroupsPerUser`;
 * audit 7, F3; docs/PROTOCOL-NOTES.md "Groups per user"): the errors that refuse a
 * membership past it. The count is checked in the store, under a
 * per-user lock, by every path that adds a membership (store/userGroups.ts
 * `lockMembershipsAtCap`).
 */
import { ChatError } from '../protocol/errors.ts';

/**
 * `create_group` by a user already in `cap` groups: GROUP_FULL without `field` (no input
 * of the command is at fault, and none could be changed to succeed: only leaving a group can).
 * @param cap MAX_GROUPS_PER_USER
 * @returns the error to throw
 */
export function creatorAtCap(cap: number): ChatError {
  return new ChatError('GROUP_FULL', `You are already in ${cap} groups, the most one user may be in: leave a group first`);
}

/**
 * `add_group_member` of a user already in `cap` groups: GROUP_FULL with `field: "userId"`
 * (the user named there is at capacity; without a field GROUP_FULL means the group is at
 * its maxMembers).
 * @param cap MAX_GROUPS_PER_USER
 * @returns the error to throw
 */
export function userAtCap(cap: number): ChatError {
  return new ChatError('GROUP_FULL', `This user is already in ${cap} groups, the most one user may be in`, { field: 'userId' });
}

/**
 * Removing a group for good (PROTOCOL §7 `delete_group` permanent, the last member
 * leaving, the purge of soft-deleted groups after GROUP_PURGE_DAYS) in two steps, so no
 * statement grows with the group (audit 6, F1):
 * 1. {@link startPurge}, in one short transaction: the group is deactivated and marked
 *    `purging` (sql/006_bounded_deletes.sql), and `group_deleted` is recorded for its
 *    members. From then on it refuses every command, is never restored, is in no list,
 *    and its messages are out of its members' sync (store/groups.ts `groupIdsOf`); its
 *    members are told only after this has committed.
 * 2. {@link purgeGroupRows}: its messages are deleted in batches of {@link PURGE_BATCH}
 *    seqs, each batch its own statement (each message's reactions, deletions and pins go
 *    with it through their foreign keys, group_pins through group_pins_message), then the
 *    group row (members, pins) and its conversation row in one short transaction. A
 *    purge cut short (timeout, restart) leaves a `purging` group, which the next
 *    {@link purgeDeletedGroups} finishes.
 */
import type { Db, Queryable } from './db.ts';
import { recordGroupChangeForMembers } from './sync.ts';

/** Messages (seqs) deleted per statement by {@link purgeGroupRows}: about 70 ms each at 13 µs per message. */
export const PURGE_BATCH = 5_000;

/**
 * Step 1, in the caller's transaction `tx` (which should hold the group row lock): mark the
 * group deactivated and `purging`, keeping the time and author of an earlier soft
 * deletion, and record `group_deleted` by `actorId` for each current member by name (their
 * membership rows go with the group, and sync finds a member's changes through them:
 * PROTOCOL §9, store/sync.ts) and for the group. Does nothing to a group already purging.
 * @returns true when it marked the group (false: no such group, or already purging)
 * @throws driver errors
 */
export async function startPurge(tx: Queryable, groupId: string, actorId: string): Promise<boolean> {
  const { rowCount } = await tx.query(
    `UPDATE group_chats SET is_active = false, purging = true, deleted_at = CASE WHEN is_active THEN now() ELSE deleted_at END,
       deleted_by = CASE WHEN is_active THEN $2 ELSE deleted_by END, updated_at = now()
     WHERE group_id = $1 AND NOT purging`,
    [groupId, actorId],
  );
  if (rowCount === 0) return false;
  await recordGroupChangeForMembers(tx, groupId, 'group_deleted', actorId);
  await tx.query(`INSERT INTO group_changes (group_id, user_id, kind, actor_id) VALUES ($1, NULL, 'group_deleted', $2)`, [groupId, actorId]);
  return true;
}

/**
 * Step 2: remove a `purging` group's messages in batches of {@link PURGE_BATCH} seqs (up to
 * the conversation's last seq, read first), each its own statement, then the group and
 * conversation rows (anything left, e.g. a send that raced the deactivation, goes with the
 * conversation row). Safe to repeat or to run from two processes at once.
 * @returns true when the group was removed; false when it is not purging (active, soft-deleted
 *   and not yet due, or gone)
 * @throws driver errors (statement timeout, connection lost): what was deleted stays deleted
 */
export async function purgeGroupRows(db: Db, groupId: string, batch = PURGE_BATCH): Promise<boolean> {
  const { rows } = await db.query<{ last_seq: string | null }>(
    `SELECT c.last_seq::text AS last_seq FROM group_chats g LEFT JOIN conversations c ON c.conversation_id = g.group_id
     WHERE g.group_id = $1 AND g.purging`,
    [groupId],
  );
  if (!rows[0]) return false;
  const last = Number(rows[0].last_seq ?? 0);
  for (let lo = 0; lo < last; lo += batch) {
    await db.query('DELETE FROM private_messages WHERE conversation_id = $1 AND seq > $2 AND seq <= $3', [groupId, lo, lo + batch]);
  }
  return db.transaction(async (tx) => {
    const { rowCount } = await tx.query('DELETE FROM group_chats WHERE group_id = $1 AND purging', [groupId]);
    if (rowCount > 0) await tx.query('DELETE FROM conversations WHERE conversation_id = $1', [groupId]);
    return rowCount > 0;
  });
}

/**
 * The periodic purge: every group soft-deleted more than `days` days ago, and every group
 * left `purging` by a purge cut short, oldest deletion first. Each is marked (step 1, as
 * 'system', unless already purging) and purged on its own; a group that fails is passed
 * to `onError` and the sweep goes on with the next.
 * @returns the ids of the groups removed
 */
export async function purgeDeletedGroups(db: Db, days: number, onError: (groupId: string, err: unknown) => void): Promise<string[]> {
  const { rows } = await db.query<{ group_id: string }>(
    `SELECT group_id FROM group_chats WHERE purging OR (NOT is_active AND deleted_at < now() - make_interval(days => $1))
     ORDER BY deleted_at, group_id`,
    [days],
  );
  const done: string[] = [];
  for (const r of rows) {
    try {
      await db.transaction(async (tx) => {
        const { rows: g } = await tx.query<{ purging: boolean; due: boolean }>(
          `SELECT purging, (NOT is_active AND deleted_at < now() - make_interval(days => $2)) AS due FROM group_chats WHERE group_id = $1 FOR UPDATE`,
          [r.group_id, days],
        );
        if (g[0] && !g[0].purging && g[0].due) await startPurge(tx, r.group_id, 'system');
      });
      if (await purgeGroupRows(db, r.group_id)) done.push(r.group_id);
    } catch (err) {
      onError(r.group_id, err);
    }
  }
  return done;
}

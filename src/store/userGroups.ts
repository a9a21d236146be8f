/**
 * A member's list of their groups (PROTOCOL §7 `get_user_groups`), with what they are
 * shown of each group's messages (§5: nothing from a user with whom they have a block).
 */
import type { Queryable } from './db.ts';

/**
 * SQL condition: group message `m` is shown to the member whose id is `$1` (PROTOCOL §5,
 * §7): not deleted for everyone, not deleted by them for themselves, and its sender has
 * no block with them in either direction.
 */
export const SHOWN_TO_MEMBER = `NOT m.is_deleted
  AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = m.id AND d.user_id = $1)
  AND NOT EXISTS (SELECT 1 FROM blocked_relationships b WHERE (b.blocker_id = $1::bigint AND b.blocked_id = m.sender_id::bigint)
                                                      OR (b.blocked_id = $1::bigint AND b.blocker_id = m.sender_id::bigint))`;

/**
 * The active groups of `userId`, most recent first, one row each: `group_id`,
 * `group_name`, `group_description`, `created_by_user_id`, `role`, `joined_at`,
 * `member_count`, `last_message_at` and `unread`. Both message columns use the same test
 * of what the member is shown ({@link SHOWN_TO_MEMBER}): `unread` counts such messages
 * after their read position that are not their own; `last_message_at` is the newest such
 * message's `created_at` (Date), null when there is none, and the list then places the
 * group by its creation time.
 *
 * Cost: one query. Per group the newest shown message is found by a backward scan of the
 * (conversation_id, seq) index that stops at the first shown row: one row plus any hidden
 * ones above it, never the group's whole history (test/integration/groups-blocks-views.test.ts
 * measures a user in 200 groups).
 * @param db where to run it
 * @param userId the member
 * @returns the rows (column names as above)
 * @throws driver errors
 */
export async function userGroupRows(db: Queryable, userId: string): Promise<Record<string, unknown>[]> {
  const { rows } = await db.query(
    `SELECT g.group_id, g.group_name, g.group_description, g.created_by_user_id, gm.role, gm.joined_at,
       (SELECT count(*)::int FROM group_members x WHERE x.group_id = g.group_id) AS member_count,
       lm.created_at AS last_message_at,
       (SELECT count(*)::int FROM private_messages m WHERE m.conversation_id = g.group_id AND m.seq > gm.last_read_seq
          AND m.sender_id <> $1 AND ${SHOWN_TO_MEMBER}) AS unread
     FROM group_members gm JOIN group_chats g ON g.group_id = gm.group_id AND g.is_active
     LEFT JOIN LATERAL (
       SELECT m.created_at FROM private_messages m WHERE m.conversation_id = g.group_id AND ${SHOWN_TO_MEMBER}
       ORDER BY m.seq DESC LIMIT 1) lm ON true
     WHERE gm.user_id = $1 ORDER BY COALESCE(lm.created_at, g.created_at) DESC`,
    [userId],
  );
  return rows;
}

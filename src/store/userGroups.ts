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
 * SQL: the seqs after the read position (`gm.last_read_seq`) of group `g` that `unread`
 * does not count, once each: deleted for everyone (partial index on deleted messages),
 * the member's own (the group-sender index), from the users in `bl.ids` (a block either
 * way with `$1`; the same index, probed per user), deleted by the member for themselves (their deletions in
 * this conversation). With seqs gap-free, unread = (last_seq - last_read_seq) - this count.
 */
export const UNREAD_HIDDEN = `SELECT m.seq FROM private_messages m WHERE m.conversation_id = g.group_id AND m.is_deleted AND m.seq > gm.last_read_seq
  UNION SELECT m.seq FROM private_messages m WHERE m.conversation_id = g.group_id AND m.group_id IS NOT NULL AND m.sender_id = $1 AND m.seq > gm.last_read_seq
  UNION SELECT x.seq FROM unnest(bl.ids) AS bs(id), LATERAL (SELECT m.seq FROM private_messages m
          WHERE m.conversation_id = g.group_id AND m.group_id IS NOT NULL AND m.sender_id = bs.id AND m.seq > gm.last_read_seq OFFSET 0) x
  UNION SELECT m.seq FROM message_deletions d JOIN private_messages m ON m.id = d.message_id
          WHERE d.user_id = $1 AND d.conversation_id = g.group_id AND m.seq > gm.last_read_seq`;

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
 * measures a user in 200 groups). `unread` is counted from the gap-free seqs (1..last_seq,
 * as history's `total`, ./history.ts): the messages after the read position less those
 * of them not counted ({@link UNREAD_HIDDEN}: deleted for everyone, deleted by the member,
 * their own, from a user in a block with them), each read through its own index. So it
 * costs what the uncounted messages are, not what the unread ones are: a member of 200
 * groups with 1,000 unread messages each is answered without reading the 200,000.
 * @param db where to run it
 * @param userId the member
 * @returns the rows (column names as above)
 * @throws driver errors
 */
export async function userGroupRows(db: Queryable, userId: string): Promise<Record<string, unknown>[]> {
  const { rows } = await db.query(
    `WITH bl AS (SELECT COALESCE(array_agg(b.id), '{}') AS ids FROM (
         SELECT blocked_id::text AS id FROM blocked_relationships WHERE blocker_id = $1::text::bigint
         UNION SELECT blocker_id::text FROM blocked_relationships WHERE blocked_id = $1::text::bigint) b)
     SELECT g.group_id, g.group_name, g.group_description, g.created_by_user_id, gm.role, gm.joined_at,
       (SELECT count(*)::int FROM group_members x WHERE x.group_id = g.group_id) AS member_count,
       lm.created_at AS last_message_at,
       (GREATEST(COALESCE(c.last_seq, 0) - gm.last_read_seq, 0) - (SELECT count(*) FROM (${UNREAD_HIDDEN}) h))::int AS unread
     FROM group_members gm JOIN group_chats g ON g.group_id = gm.group_id AND g.is_active
     CROSS JOIN bl
     LEFT JOIN conversations c ON c.conversation_id = g.group_id
     LEFT JOIN LATERAL (
       SELECT m.created_at FROM private_messages m WHERE m.conversation_id = g.group_id AND ${SHOWN_TO_MEMBER}
       ORDER BY m.seq DESC LIMIT 1) lm ON true
     WHERE gm.user_id = $1 ORDER BY COALESCE(lm.created_at, g.created_at) DESC`,
    [userId],
  );
  return rows;
}

/** First key of the membership advisory locks ('grmb'): their own key space. */
const MEMBERSHIP_LOCK_SPACE = 0x67726d62;
/**
 * Users are locked by bucket, not one by one: a create_group with 999 initial members took
 * 999 advisory locks, and a dozen such transactions at once filled PostgreSQL's shared lock
 * table (53200 out of shared memory; review 9), which the auth backend shares. With 128
 * buckets a transaction holds at most 128; users in one bucket wait for each other's adds.
 */
const MEMBERSHIP_LOCK_BUCKETS = 128;

/**
 * For a transaction that is about to add memberships: take the membership lock of each of
 * `userIds` (transaction-scoped advisory locks, one per bucket of users, taken in ascending
 * bucket order in one statement, so transactions locking overlapping sets cannot deadlock), then
 * resolve which of them already hold at least `cap` memberships. Every path that adds a
 * membership (store/groups.ts `create`, `addMember`) calls this first in its transaction,
 * so concurrent additions of one user are serialised and each counts what the previous
 * one committed (READ COMMITTED: a statement sees what committed before it started): a
 * user never passes the cap. Every membership row counts: a soft-deleted group's too (a
 * `restore_group` brings its members back, so it adds no membership and needs no check),
 * and a permanently deleted group's until its purge removes its rows (store/groupPurge.ts:
 * right after the deletion; one cut short, by the hourly sweep). Memberships already past
 * the cap are kept.
 * Cost: per user at most `cap` entries of the `group_members_user` index (an index-only
 * count, no group row read). Measured on PostgreSQL (vacuumed): 999 users each in 499 or
 * 500 groups (a `create_group` with the most initial members) 40–70 ms; the same users in
 * no group 3–7 ms; one user in 499 groups (`add_group_member`) 1 ms.
 * @param tx the adding transaction (the locks are held until it ends)
 * @param userIds the users who would gain a membership (duplicates allowed)
 * @param cap the most memberships one user may hold (MAX_GROUPS_PER_USER), ≥ 1
 * @returns the ids (of `userIds`) with `cap` or more memberships
 * @throws driver errors
 */
export async function lockMembershipsAtCap(tx: Queryable, userIds: readonly string[], cap: number): Promise<Set<string>> {
  if (userIds.length === 0) return new Set();
  await tx.query(
    `SELECT pg_advisory_xact_lock(${MEMBERSHIP_LOCK_SPACE}, b) FROM (SELECT DISTINCT (hashtext(u) & ${MEMBERSHIP_LOCK_BUCKETS - 1}) AS b FROM unnest($1::text[]) AS u ORDER BY b) s`,
    [userIds],
  );
  const { rows } = await tx.query<{ user_id: string }>(
    `SELECT DISTINCT u AS user_id FROM unnest($1::text[]) AS u
     WHERE (SELECT count(*) FROM (SELECT 1 FROM group_members WHERE user_id = u LIMIT $2) a) >= $2`,
    [userIds, cap],
  );
  return new Set(rows.map((r) => r.user_id));
}

/**
 * The change stream behind `sync` (PROTOCOL §9). Two ordered sources, both read below
 * one snapshot xmin: every transaction below xmin has ended, so a commit still in flight
 * is never skipped; it is returned by a later sync once it sits below xmin
 * (SYSTEM_DESIGN.md "Sync and the cursor").
 * - Message changes, ordered by (change_xid, message id): rows of the viewer's DMs and
 *   groups whose `change_xid` is after the position, plus the viewer's own deletions
 *   "for me" (`message_deletions`, and every message a `conversation_deletions` row of
 *   theirs hides), each at the deletion's `change_xid` (sql/003_sync_deletions.sql).
 * - Group changes (`group_changes`), ordered by (change_xid, id), of the groups the viewer
 *   is a member of (active or soft-deleted) or about the viewer.
 * The chat layer (chat/sync.ts) merges them: within one transaction, messages first.
 */
import type { Queryable } from './db.ts';
import { MESSAGE_COLUMNS, notHiddenFor, SENDER_JOIN, toMessageRecord, type MessageRecord } from './types.ts';

/** A changed message with whether the viewer may see it (false: deleted for them or for everyone). */
export interface ChangedMessage {
  record: MessageRecord;
  visible: boolean;
  /** The change's transaction (xid8 decimal text): its position in the stream with `record.id`. */
  changeXid: string;
}

/** One `group_changes` row (PROTOCOL §9 `sync_result.changes`). */
export interface GroupChange {
  /** `group_changes.id` (BIGINT as decimal text): the order within one transaction. */
  id: string;
  groupId: string;
  /** The member concerned; null for a change of the whole group. */
  userId: string | null;
  /** `group_created`, `member_added`, `member_removed`, `member_left`, `role_changed`, `group_updated`, `group_deleted`, `group_restored`. */
  kind: string;
  actorId: string | null;
  role: string | null;
  createdAt: Date;
  /** The writing transaction (xid8 decimal text). */
  changeXid: string;
}

/** Kinds that concern the whole group rather than one member. */
export const GROUP_LEVEL_KINDS: readonly string[] = ['group_created', 'group_updated', 'group_deleted', 'group_restored'];

/** The zero UUID: before every message id. */
const MIN_UUID = '00000000-0000-0000-0000-000000000000';

// The position test for the messages `m` hidden by a conversation deletion at xid `x`
// (the outer conversation_deletions row's), as a bound on `m.id`: with `x >= $3` and
// `x < s.xmin` tested on the deletion row, the hidden messages are read in id order
// through private_messages_conv_id (006 migration) from the position on, a page's worth
// per deletion, instead of every hidden message of the deletion read and sorted on every
// page (audit 6, F8: 50,000 rows for each page after deleting a 50,000-message DM).
const hiddenFrom = (x: string): string =>
  `m.id >= CASE WHEN ${x} = $3::xid8 THEN $4::uuid ELSE '${MIN_UUID}'::uuid END AND (${x} > $3::xid8 OR m.id > $4::uuid)`;

// The message-change position test for source `x` (xid column) and `id` (uuid column).
// `x >= $3` first: the OR alone is no index condition, so each source's (owner,
// change_xid) index was read from its start, every message of the viewer's conversations
// on every sync (audit 6: 540,003 rows for an empty sync of a user with 270,000, 62 ms;
// with the bound 2 rows, 1.4 ms).
const after = (x: string, id: string): string => `${x} >= $3::xid8 AND (${x} > $3::xid8 OR (${x} = $3::xid8 AND ${id} > $4::uuid)) AND ${x} < s.xmin`;

/**
 * Record a whole-group change for each current member by name (`group_changes.user_id` =
 * member), in the caller's transaction `tx`. For the write side of group deletion and
 * restore (store/groupPurge.ts startPurge, GroupStore.setActive): call it before the group's rows are
 * deleted, so members whose membership rows go with the group still find the change in
 * their sync ({@link SyncStore.groupChanges} returns it once, beside or instead of the
 * `user_id` NULL row). Must not be used for member-level kinds.
 * @param tx the transaction that changes the group
 * @param groupId the group
 * @param kind one of {@link GROUP_LEVEL_KINDS}, e.g. 'group_deleted'
 * @param actorId who did it ('system' for the purge)
 * @returns the number of members recorded
 * @throws Error for a member-level kind; driver errors
 */
export async function recordGroupChangeForMembers(tx: Queryable, groupId: string, kind: string, actorId: string | null): Promise<number> {
  if (!GROUP_LEVEL_KINDS.includes(kind)) throw new Error(`recordGroupChangeForMembers: ${kind} is not a whole-group change`);
  const { rowCount } = await tx.query(
    'INSERT INTO group_changes (group_id, user_id, kind, actor_id) SELECT group_id, user_id, $2, $3 FROM group_members WHERE group_id = $1',
    [groupId, kind, actorId],
  );
  return rowCount;
}

/** Sync queries. */
export class SyncStore {
  constructor(private readonly db: Queryable) {}

  /**
   * Up to `limit` message changes of `viewerId` after the position (`afterXid`,
   * `afterId`), in stream order (change_xid, message id), and the snapshot xmin of the
   * query. Sources (each returns a message at most once, so their LIMITs merge without
   * loss): messages of the viewer's DMs and of `groupIds` changed after the position, of
   * the groups the viewer is a member of in this statement's snapshot (a removal that
   * commits after `groupIds` was read is seen); messages of a group the viewer was
   * removed from or left after the position, changed before the last such removal (audit
   * 4: what changed while they were a member reaches the devices that sync only after it,
   * and nothing later); the viewer's deletions for themselves (one entry per message, at the
   * deletion's xid); the viewer's conversation deletions (one entry per hidden message):
   * the messages up to the previous deletion's `prev_up_to_seq` at its xid
   * (`prev_change_xid`), the rest up to `up_to_seq` at the latest deletion's xid. An entry
   * never moves back in the stream (a later deletion only moves older entries forward, to
   * its predecessor's xid), so a device past the previous deletion gets only the new
   * tombstones, and one before it gets all of them, on any page boundaries (audit 4: the
   * earlier test of the position against `prev_change_xid` lost tombstones when a page
   * boundary fell between the two deletions). An entry of the same message
   * at the same xid from two sources is returned once. Visibility is the current one (a deleted message is a tombstone).
   * @param viewerId the syncing user
   * @param groupIds the viewer's groups, soft-deleted ones included (their messages are in the stream)
   * @param afterXid xid8 decimal text (validated by chat/cursor.ts)
   * @param afterId a message id, or '' for before every id of `afterXid`
   * @param limit 1..500
   * @returns `rows` (≤ limit; limit rows means more may follow) and `xmin` (xid8 text):
   *   every change below it has committed; the page's end position when not full
   * @throws driver errors
   */
  async changes(viewerId: string, groupIds: readonly string[], afterXid: string, afterId: string, limit: number): Promise<{ rows: ChangedMessage[]; xmin: string }> {
    const { rows } = await this.db.query(
      `WITH s AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin),
       ch AS (
         (SELECT m.id, m.change_xid FROM private_messages m, s
          WHERE (m.recipient_id = $1 OR (m.sender_id = $1 AND m.group_id IS NULL)
                 OR (m.group_id = ANY($2::text[]) AND EXISTS (SELECT 1 FROM group_members gm WHERE gm.group_id = m.group_id AND gm.user_id = $1)))
            AND ${after('m.change_xid', 'm.id')}
          ORDER BY m.change_xid, m.id LIMIT $5)
         UNION ALL
         (SELECT d.message_id, d.change_xid FROM message_deletions d, s
          WHERE d.user_id = $1 AND ${after('d.change_xid', 'd.message_id')}
          ORDER BY d.change_xid, d.message_id LIMIT $5)
         UNION ALL
         (SELECT x.id, cd.change_xid FROM conversation_deletions cd, s, LATERAL (
            SELECT m.id FROM private_messages m
            WHERE m.conversation_id = cd.conversation_id AND ${hiddenFrom('cd.change_xid')}
              AND m.seq <= cd.up_to_seq AND (cd.prev_change_xid IS NULL OR m.seq > cd.prev_up_to_seq)
            ORDER BY m.id LIMIT $5) x
          WHERE cd.user_id = $1 AND cd.change_xid >= $3::xid8 AND cd.change_xid < s.xmin
          ORDER BY cd.change_xid, x.id LIMIT $5)
         UNION ALL
         (SELECT m.id, m.change_xid FROM (SELECT gc.group_id, max(gc.change_xid) AS until FROM group_changes gc
              WHERE gc.user_id = $1 AND gc.kind IN ('member_removed', 'member_left') AND gc.change_xid > $3::xid8 GROUP BY gc.group_id) r
            JOIN private_messages m ON m.group_id = r.group_id AND m.change_xid < r.until, s
          WHERE ${after('m.change_xid', 'm.id')}
          ORDER BY m.change_xid, m.id LIMIT $5)
         UNION ALL
         (SELECT x.id, cd.prev_change_xid FROM conversation_deletions cd, s, LATERAL (
            SELECT m.id FROM private_messages m
            WHERE m.conversation_id = cd.conversation_id AND ${hiddenFrom('cd.prev_change_xid')} AND m.seq <= cd.prev_up_to_seq
            ORDER BY m.id LIMIT $5) x
          WHERE cd.user_id = $1 AND cd.prev_change_xid IS NOT NULL AND cd.prev_change_xid >= $3::xid8 AND cd.prev_change_xid < s.xmin
          ORDER BY cd.prev_change_xid, x.id LIMIT $5)),
       top AS (SELECT DISTINCT ON (change_xid, id) id, change_xid FROM ch ORDER BY change_xid, id LIMIT $5)
       SELECT s.xmin::text AS snapshot_xmin, c.* FROM s LEFT JOIN LATERAL (
         SELECT ${MESSAGE_COLUMNS}, t.change_xid::text AS change_xid,
           (NOT m.is_deleted AND ${notHiddenFor('$1')}) AS visible,
           (m.group_id IS NOT NULL AND EXISTS (SELECT 1 FROM group_pins p WHERE p.group_id = m.group_id AND p.message_id = m.id)) AS is_pinned
         FROM top t JOIN private_messages m ON m.id = t.id ${SENDER_JOIN}
         ORDER BY t.change_xid, t.id) c ON true`,
      [viewerId, groupIds, afterXid, afterId || MIN_UUID, limit],
    );
    const xmin = String(rows[0]?.snapshot_xmin ?? afterXid);
    const out: ChangedMessage[] = [];
    for (const r of rows) if (r.id) out.push({ record: toMessageRecord(r), visible: r.visible === true, changeXid: String(r.change_xid) });
    return { rows: out, xmin };
  }

  /**
   * Up to `limit` group changes for `viewerId` after the position (`afterXid`, `afterId`)
   * and below `beforeXid`, in stream order (change_xid, id). Included: changes about the
   * viewer (`user_id` = viewer: their removal, their role, a per-member group deletion);
   * member changes of the groups the viewer is a member of, active or soft-deleted; and
   * whole-group changes (`user_id` NULL) of those groups, unless the same transaction
   * also recorded that change for the viewer by name (then it is returned once).
   * @param viewerId the syncing user
   * @param afterXid xid8 decimal text
   * @param afterId last `group_changes.id` seen in `afterXid` ('0': none)
   * @param beforeXid xid8 decimal text: the snapshot xmin of {@link changes} for this page
   * @param limit 1..500
   * @returns the changes (≤ limit; limit rows means more may follow)
   * @throws driver errors
   */
  async groupChanges(viewerId: string, afterXid: string, afterId: string, beforeXid: string, limit: number): Promise<GroupChange[]> {
    const win = `(c.change_xid > $2::xid8 OR (c.change_xid = $2::xid8 AND c.id > $3::bigint)) AND c.change_xid < $4::xid8`;
    const { rows } = await this.db.query(
      `SELECT u.id::text AS id, u.group_id, u.user_id, u.kind, u.actor_id, u.role, u.created_at, u.change_xid::text AS change_xid FROM (
         (SELECT c.* FROM group_changes c WHERE c.user_id = $1 AND ${win} ORDER BY c.change_xid, c.id LIMIT $5)
         UNION ALL
         (SELECT c.* FROM group_changes c
          WHERE c.group_id IN (SELECT gm.group_id FROM group_members gm WHERE gm.user_id = $1)
            AND c.user_id IS DISTINCT FROM $1 AND ${win}
            AND (NOT (c.kind = ANY($6::text[]))
                 OR (c.user_id IS NULL AND NOT EXISTS (SELECT 1 FROM group_changes x
                       WHERE x.group_id = c.group_id AND x.change_xid = c.change_xid AND x.kind = c.kind AND x.user_id = $1)))
          ORDER BY c.change_xid, c.id LIMIT $5)) u
       ORDER BY u.change_xid, u.id LIMIT $5`,
      [viewerId, afterXid, afterId, beforeXid, limit, GROUP_LEVEL_KINDS],
    );
    return rows.map((r) => ({
      id: String(r.id),
      groupId: r.group_id as string,
      userId: (r.user_id as string | null) ?? null,
      kind: r.kind as string,
      actorId: (r.actor_id as string | null) ?? null,
      role: (r.role as string | null) ?? null,
      createdAt: r.created_at as Date,
      changeXid: String(r.change_xid),
    }));
  }
}

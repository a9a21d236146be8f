/**
 * The change stream behind `sync` (PROTOCOL §9): rows of the viewer's conversations whose
 * `change_xid` is after the cursor and below the current snapshot's xmin. Every
 * transaction below xmin has ended, so a commit still in flight is never skipped: it
 * is returned by a later sync, once it sits below xmin (SYSTEM_DESIGN.md).
 */
import type { Queryable } from './db.ts';
import { MESSAGE_COLUMNS, SENDER_JOIN, toMessageRecord, type MessageRecord } from './types.ts';

/** A changed message with whether the viewer may see it (false: deleted for them or for everyone). */
export interface ChangedMessage {
  record: MessageRecord;
  visible: boolean;
  changeXid: string;
}

/** Sync queries. */
export class SyncStore {
  constructor(private readonly db: Queryable) {}

  /**
   * Up to `limit` changed messages of `viewerId`'s DMs and groups (`groupIds`) after
   * (`afterXid`, `afterId`), in stream order, and the snapshot xmin of the query.
   */
  async changes(viewerId: string, groupIds: readonly string[], afterXid: string, afterId: string, limit: number): Promise<{ rows: ChangedMessage[]; xmin: string }> {
    const { rows } = await this.db.query(
      `WITH s AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
       SELECT s.xmin::text AS snapshot_xmin, c.* FROM s LEFT JOIN LATERAL (
         SELECT ${MESSAGE_COLUMNS}, m.change_xid::text AS change_xid,
           (NOT m.is_deleted
             AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = m.id AND d.user_id = $1)
             AND m.seq > COALESCE((SELECT up_to_seq FROM conversation_deletions cd WHERE cd.conversation_id = m.conversation_id AND cd.user_id = $1), 0)
           ) AS visible,
           (m.group_id IS NOT NULL AND EXISTS (SELECT 1 FROM group_pins p WHERE p.group_id = m.group_id AND p.message_id = m.id)) AS is_pinned
         FROM private_messages m ${SENDER_JOIN}
         WHERE (m.recipient_id = $1 OR (m.sender_id = $1 AND m.group_id IS NULL) OR m.group_id = ANY($2::text[]))
           AND (m.change_xid > $3::xid8 OR (m.change_xid = $3::xid8 AND m.id > $4::uuid))
           AND m.change_xid < s.xmin
         ORDER BY m.change_xid, m.id LIMIT $5) c ON true`,
      [viewerId, groupIds, afterXid, afterId || '00000000-0000-0000-0000-000000000000', limit],
    );
    const xmin = String(rows[0]?.snapshot_xmin ?? afterXid);
    const out: ChangedMessage[] = [];
    for (const r of rows) if (r.id) out.push({ record: toMessageRecord(r), visible: r.visible === true, changeXid: String(r.change_xid) });
    return { rows: out, xmin };
  }
}

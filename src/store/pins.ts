/** Pinned group messages (PROTOCOL §7 pins and announcements). Pinning touches the message for `sync`. */
import type { Queryable } from './db.ts';
import { MESSAGE_COLUMNS, notHiddenFor, SENDER_JOIN, toMessageRecord, type MessageRecord } from './types.ts';

/** A pin with its message (body sealed). */
export interface PinRow {
  record: MessageRecord;
  pinnedAt: Date;
  pinnedBy: string;
}

/** Pins repository. */
export class PinStore {
  constructor(private readonly db: Queryable) {}

  /** Pin; resolves false when already pinned. */
  async pin(groupId: string, messageId: string, by: string): Promise<boolean> {
    const { rows } = await this.db.query(
      `WITH i AS (INSERT INTO group_pins (group_id, message_id, pinned_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1)
       , t AS (UPDATE private_messages SET change_xid = pg_current_xact_id() WHERE id = $2 AND EXISTS (SELECT 1 FROM i))
       SELECT 1 FROM i`,
      [groupId, messageId, by],
    );
    return rows.length > 0;
  }

  /** Unpin; resolves false when it was not pinned. */
  async unpin(groupId: string, messageId: string): Promise<boolean> {
    const { rows } = await this.db.query(
      `WITH d AS (DELETE FROM group_pins WHERE group_id = $1 AND message_id = $2 RETURNING 1)
       , t AS (UPDATE private_messages SET change_xid = pg_current_xact_id() WHERE id = $2 AND EXISTS (SELECT 1 FROM d))
       SELECT 1 FROM d`,
      [groupId, messageId],
    );
    return rows.length > 0;
  }

  /**
   * Pins of a group whose messages `viewerId` can see (not deleted for everyone, nor for
   * the viewer alone, nor hidden by the viewer's conversation deletion), newest pin first.
   */
  async list(groupId: string, viewerId: string): Promise<PinRow[]> {
    const { rows } = await this.db.query(
      `SELECT ${MESSAGE_COLUMNS}, p.pinned_at, p.pinned_by FROM group_pins p JOIN private_messages m ON m.id = p.message_id ${SENDER_JOIN}
       WHERE p.group_id = $1 AND NOT m.is_deleted
         AND ${notHiddenFor('$2')}
       ORDER BY p.pinned_at DESC, p.message_id DESC`,
      [groupId, viewerId],
    );
    return rows.map((r) => ({ record: { ...toMessageRecord(r), isPinned: true }, pinnedAt: r.pinned_at as Date, pinnedBy: r.pinned_by as string }));
  }

  /** Of `ids`, those pinned in the group. */
  async pinnedAmong(groupId: string, ids: readonly string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const { rows } = await this.db.query<{ id: string }>(
      'SELECT message_id::text AS id FROM group_pins WHERE group_id = $1 AND message_id = ANY($2::uuid[])',
      [groupId, ids],
    );
    return new Set(rows.map((r) => r.id));
  }
}

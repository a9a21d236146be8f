/** Pinned group messages (PROTOCOL §7 pins and announcements). Pinning touches the message for `sync`. */
import type { Db } from './db.ts';
import { MESSAGE_COLUMNS, SENDER_JOIN, toMessageRecord, type MessageRecord } from './types.ts';

/**
 * Most pins a group holds (docs/PROTOCOL-NOTES.md "Pins per group"): an explicit pin past
 * it is refused, an announcement's pin past it drops the oldest pinned announcement (else
 * the oldest pin). It also bounds `get_pinned_messages` (audit 6, F3).
 */
export const MAX_PINS_PER_GROUP = 50;

/** A pin with its message (body sealed). */
export interface PinRow {
  record: MessageRecord;
  pinnedAt: Date;
  pinnedBy: string;
}

/**
 * Outcome of {@link PinStore.pin}: `pinned` (new pin), `already` (was pinned: nothing
 * changed), `full` (at the cap and no eviction asked: nothing changed). `evicted`: the pin
 * dropped to make room (its message id and sender), else null.
 */
export interface PinOutcome {
  status: 'pinned' | 'already' | 'full';
  evicted: { messageId: string; senderId: string } | null;
}

// Pin / unpin one message, touching it (change_xid) so `sync` shows its new pin state.
const INSERT_PIN = `WITH i AS (INSERT INTO group_pins (group_id, message_id, pinned_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1)
  , t AS (UPDATE private_messages SET change_xid = pg_current_xact_id() WHERE id = $2 AND EXISTS (SELECT 1 FROM i))
  SELECT 1 FROM i`;
const DELETE_PIN = `WITH d AS (DELETE FROM group_pins WHERE group_id = $1 AND message_id = $2 RETURNING 1)
  , t AS (UPDATE private_messages SET change_xid = pg_current_xact_id() WHERE id = $2 AND EXISTS (SELECT 1 FROM d))
  SELECT 1 FROM d`;

/** Pins repository. */
export class PinStore {
  constructor(private readonly db: Db) {}

  /**
   * Pin `messageId` in the group, keeping at most {@link MAX_PINS_PER_GROUP} pins: one
   * transaction, serialized per group by an advisory lock so concurrent pins cannot pass
   * the cap. Pins of messages deleted for everyone (never listed) are dropped first, so they
   * never hold a place. At the cap, with `evictAtCap` (an announcement's automatic pin) the
   * oldest pinned announcement, else the oldest pin, is unpinned (touched for `sync`) to make
   * room; without it nothing changes and the outcome is `full`. Only one pin is evicted: a
   * group pinned past the cap before it existed stays over it, `list` showing the newest.
   * Throws driver errors.
   */
  async pin(groupId: string, messageId: string, by: string, evictAtCap = false): Promise<PinOutcome> {
    return this.db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended('group_pins:' || $1, 0))`, [groupId]);
      const { rows } = await tx.query<{ already: boolean; n: number }>(
        `WITH gone AS (DELETE FROM group_pins p USING private_messages m WHERE p.group_id = $1 AND m.id = p.message_id AND m.is_deleted RETURNING p.message_id)
         SELECT EXISTS (SELECT 1 FROM group_pins WHERE group_id = $1 AND message_id = $2) AS already,
           ((SELECT count(*) FROM group_pins WHERE group_id = $1) - (SELECT count(*) FROM gone))::int AS n`,
        [groupId, messageId],
      );
      const state = rows[0]!;
      if (state.already) return { status: 'already', evicted: null };
      let evicted: PinOutcome['evicted'] = null;
      if (state.n >= MAX_PINS_PER_GROUP) {
        if (!evictAtCap) return { status: 'full', evicted: null };
        const { rows: v } = await tx.query<{ message_id: string; sender_id: string }>(
          `SELECT p.message_id::text AS message_id, m.sender_id FROM group_pins p JOIN private_messages m ON m.id = p.message_id
           WHERE p.group_id = $1 ORDER BY m.is_announcement DESC, p.pinned_at, p.message_id LIMIT 1`,
          [groupId],
        );
        const victim = v[0];
        if (victim) {
          await tx.query(DELETE_PIN, [groupId, victim.message_id]);
          evicted = { messageId: victim.message_id, senderId: victim.sender_id };
        }
      }
      const { rows: ins } = await tx.query(INSERT_PIN, [groupId, messageId, by]);
      return { status: ins.length > 0 ? 'pinned' : 'already', evicted };
    });
  }

  /** Unpin; resolves false when it was not pinned. */
  async unpin(groupId: string, messageId: string): Promise<boolean> {
    const { rows } = await this.db.query(DELETE_PIN, [groupId, messageId]);
    return rows.length > 0;
  }

  /**
   * The newest {@link MAX_PINS_PER_GROUP} pins of a group whose messages `viewerId` can see
   * (not deleted for everyone, nor for the viewer alone, nor hidden by the viewer's
   * deletion of the group's conversation, nor sent by one of `hiddenSenders`), newest pin
   * first.
   *
   * Cost (audit 6, F3): driven from group_pins: the group's pins (its primary-key prefix,
   * at most the cap plus pins of messages deleted since the last pin) sorted by pin time,
   * then each message by primary key until the cap is reached; the viewer's
   * conversation-deletion floor is read once (the group's conversation is the group id),
   * not per message. No read grows with the group's message count.
   */
  async list(groupId: string, viewerId: string, hiddenSenders: readonly string[] = []): Promise<PinRow[]> {
    const { rows } = await this.db.query(
      `SELECT ${MESSAGE_COLUMNS}, p.pinned_at, p.pinned_by
       FROM (SELECT COALESCE((SELECT up_to_seq FROM conversation_deletions WHERE conversation_id = $1 AND user_id = $2), 0) AS floor) f
       CROSS JOIN (SELECT message_id, pinned_at, pinned_by FROM group_pins WHERE group_id = $1 ORDER BY pinned_at DESC, message_id DESC) p
       CROSS JOIN LATERAL (SELECT * FROM private_messages x WHERE x.id = p.message_id LIMIT 1) m
       ${SENDER_JOIN}
       WHERE NOT m.is_deleted AND m.seq > f.floor AND NOT (m.sender_id = ANY($3::text[]))
         AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = m.id AND d.user_id = $2)
       ORDER BY p.pinned_at DESC, p.message_id DESC LIMIT $4`,
      [groupId, viewerId, hiddenSenders, MAX_PINS_PER_GROUP],
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

/** Reactions repository (DM and group messages alike). Each change also marks the message for `sync`. */
import type { Queryable } from './db.ts';

/** Reaction writes. */
export class ReactionStore {
  constructor(private readonly db: Queryable) {}

  /** Add `reaction` by `userId`. Resolves the reaction time, or null if that user already has that reaction there. */
  async add(messageId: string, userId: string, reaction: string): Promise<Date | null> {
    const { rows } = await this.db.query<{ created_at: Date }>(
      `WITH i AS (INSERT INTO message_reactions (message_id, user_id, reaction) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING created_at)
       , t AS (UPDATE private_messages SET change_xid = pg_current_xact_id() WHERE id = $1 AND EXISTS (SELECT 1 FROM i))
       SELECT created_at FROM i`,
      [messageId, userId, reaction],
    );
    return rows[0]?.created_at ?? null;
  }

  /** Remove `reaction` by `userId`. Resolves false when there was none. */
  async remove(messageId: string, userId: string, reaction: string): Promise<boolean> {
    const { rows } = await this.db.query(
      `WITH d AS (DELETE FROM message_reactions WHERE message_id = $1 AND user_id = $2 AND reaction = $3 RETURNING 1)
       , t AS (UPDATE private_messages SET change_xid = pg_current_xact_id() WHERE id = $1 AND EXISTS (SELECT 1 FROM d))
       SELECT 1 FROM d`,
      [messageId, userId, reaction],
    );
    return rows.length > 0;
  }
}

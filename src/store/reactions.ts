/** Reactions repository (DM and group messages alike). Each change also marks the message for `sync`. */
import type { Db } from './db.ts';

/**
 * Most distinct reactions one user holds on one message (docs/PROTOCOL-NOTES.md "Reactions
 * per message"). With {@link MAX_DISTINCT_REACTIONS} it bounds the `reactions` totals a history or sync page
 * carries per message (audit 6, F9: one account's 5,000 reactions made every page holding
 * that message 297 KB).
 */
export const MAX_REACTIONS_PER_USER = 20;

/** Most distinct reaction values on one message, all users together (same note). */
export const MAX_DISTINCT_REACTIONS = 50;

/**
 * Outcome of {@link ReactionStore.add}: `added` (stored at `at`), `exists` (the user already
 * has this reaction there), `user_limit` (the user already holds
 * {@link MAX_REACTIONS_PER_USER} reactions on the message), `message_limit` (a new reaction
 * value and the message already carries {@link MAX_DISTINCT_REACTIONS}). Only `added`
 * changed anything.
 */
export type ReactionAddOutcome = { status: 'added'; at: Date } | { status: 'exists' } | { status: 'user_limit' } | { status: 'message_limit' };

// Under the message's advisory lock, so the counts are those of committed rows and
// concurrent adds (several devices, several users) cannot pass either cap. The distinct
// count runs only for a reaction value new on the message (CASE evaluates lazily).
const ADD_REACTION = `WITH s AS (
    SELECT EXISTS (SELECT 1 FROM message_reactions WHERE message_id = $1 AND user_id = $2 AND reaction = $3) AS mine,
      (SELECT count(*) FROM message_reactions WHERE message_id = $1 AND user_id = $2)::int AS by_user,
      CASE WHEN EXISTS (SELECT 1 FROM message_reactions WHERE message_id = $1 AND reaction = $3) THEN 0
        ELSE (SELECT count(DISTINCT reaction) FROM message_reactions WHERE message_id = $1)::int END AS kinds)
  , i AS (INSERT INTO message_reactions (message_id, user_id, reaction)
      SELECT $1, $2, $3 FROM s WHERE NOT s.mine AND s.by_user < $4 AND s.kinds < $5
      ON CONFLICT DO NOTHING RETURNING created_at)
  , t AS (UPDATE private_messages SET change_xid = pg_current_xact_id() WHERE id = $1 AND EXISTS (SELECT 1 FROM i))
  SELECT s.mine, s.by_user, s.kinds, (SELECT created_at FROM i) AS created_at FROM s`;

/** Reaction writes. */
export class ReactionStore {
  constructor(private readonly db: Db) {}

  /**
   * Add `reaction` by `userId` to `messageId`, within {@link MAX_REACTIONS_PER_USER} and
   * {@link MAX_DISTINCT_REACTIONS}: one transaction serialized per message by an advisory
   * lock (reactions on one message were already serialized by the row lock of the `sync`
   * touch). Reactions stored before the caps existed are kept; only new ones are refused.
   * Throws driver errors ({@link DbUnavailableError} when unreachable).
   */
  async add(messageId: string, userId: string, reaction: string): Promise<ReactionAddOutcome> {
    return this.db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended('message_reactions:' || $1, 0))`, [messageId]);
      const { rows } = await tx.query<{ mine: boolean; by_user: number; kinds: number; created_at: Date | null }>(ADD_REACTION, [
        messageId,
        userId,
        reaction,
        MAX_REACTIONS_PER_USER,
        MAX_DISTINCT_REACTIONS,
      ]);
      const r = rows[0]!;
      if (r.created_at) return { status: 'added', at: r.created_at };
      if (r.mine) return { status: 'exists' };
      if (r.by_user >= MAX_REACTIONS_PER_USER) return { status: 'user_limit' };
      if (r.kinds >= MAX_DISTINCT_REACTIONS) return { status: 'message_limit' };
      return { status: 'exists' }; // a concurrent identical add won ON CONFLICT (not reachable under the lock)
    });
  }

  /** Remove `reaction` by `userId`. Resolves false when there was none. Throws driver errors. */
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

/**
 * History and conversation listings, as one viewer sees them: deleted-for-everyone
 * messages, messages the viewer deleted for themselves, and everything before the
 * viewer's conversation deletion are left out (PROTOCOL §6 rules).
 */
import type { Queryable } from './db.ts';
import { MESSAGE_COLUMNS, SENDER_JOIN, toMessageRecord, type MessageRecord, type ReactionSummary } from './types.ts';

/** Page request: `offset` pages from the newest (0 = newest page); `before` takes messages with seq < before. */
export interface PageRequest {
  limit: number;
  offset?: number;
  before?: number;
}

/** A page, oldest first; `total` visible messages in the conversation; `hasMore` older ones exist beyond the page. */
export interface Page {
  messages: MessageRecord[];
  total: number;
  hasMore: boolean;
}

/** One row of the viewer's conversation list. */
export interface ConversationRow {
  conversationId: string;
  otherUserId: string;
  updatedAt: Date;
  unreadCount: number;
  lastMessage: MessageRecord | null;
}

// Visibility of m for viewer $2 in conversation $1. `hidden` (extra SQL) adds e.g. group block filters.
const VISIBLE = `m.conversation_id = $1 AND NOT m.is_deleted
  AND m.seq > COALESCE((SELECT up_to_seq FROM conversation_deletions cd WHERE cd.conversation_id = $1 AND cd.user_id = $2), 0)
  AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = m.id AND d.user_id = $2)`;

/** History and listing queries. */
export class HistoryStore {
  constructor(private readonly db: Queryable) {}

  /**
   * A page of the conversation `conversationId` as `viewerId` sees it, with reactions.
   * `excludeSenders`: senders hidden from this viewer (group blocks, PROTOCOL §5).
   */
  async page(conversationId: string, viewerId: string, req: PageRequest, excludeSenders: readonly string[] = []): Promise<Page> {
    const params: unknown[] = [conversationId, viewerId, excludeSenders];
    const where = `${VISIBLE} AND NOT (m.sender_id = ANY($3::text[]))`;
    let pageSql: string;
    if (req.before !== undefined) {
      params.push(req.before, req.limit + 1);
      pageSql = `SELECT ${MESSAGE_COLUMNS} FROM private_messages m ${SENDER_JOIN} WHERE ${where} AND m.seq < $4 ORDER BY m.seq DESC LIMIT $5`;
    } else {
      params.push(req.limit + 1, req.offset ?? 0);
      pageSql = `SELECT ${MESSAGE_COLUMNS} FROM private_messages m ${SENDER_JOIN} WHERE ${where} ORDER BY m.seq DESC LIMIT $4 OFFSET $5`;
    }
    const [pageRes, countRes] = await Promise.all([
      this.db.query(pageSql, params),
      this.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM private_messages m WHERE ${where}`, params.slice(0, 3)),
    ]);
    const rows = pageRes.rows.map(toMessageRecord);
    const hasMore = rows.length > req.limit;
    if (hasMore) rows.length = req.limit;
    rows.reverse();
    await this.attachReactions(rows);
    return { messages: rows, total: Number(countRes.rows[0]?.n ?? 0), hasMore };
  }

  /** Fill `reactions` of each message (one query for all). */
  async attachReactions(messages: MessageRecord[]): Promise<void> {
    if (messages.length === 0) return;
    const byId = await this.reactionsFor(messages.map((m) => m.id));
    for (const m of messages) m.reactions = byId.get(m.id) ?? [];
  }

  /** Reaction summaries per message id, each reaction's users in the order they reacted. */
  async reactionsFor(ids: readonly string[]): Promise<Map<string, ReactionSummary[]>> {
    const out = new Map<string, ReactionSummary[]>();
    if (ids.length === 0) return out;
    const { rows } = await this.db.query<{ message_id: string; reaction: string; user_ids: string[] }>(
      `SELECT message_id::text AS message_id, reaction, array_agg(user_id ORDER BY created_at, user_id) AS user_ids
       FROM message_reactions WHERE message_id = ANY($1::uuid[]) GROUP BY message_id, reaction ORDER BY message_id, min(created_at)`,
      [ids],
    );
    for (const r of rows) {
      const list = out.get(r.message_id) ?? [];
      list.push({ reaction: r.reaction, count: r.user_ids.length, userIds: r.user_ids });
      out.set(r.message_id, list);
    }
    return out;
  }

  /**
   * The viewer's DM conversations that still hold a message the viewer can see (PROTOCOL
   * §6: each entry has its `lastMessage`), newest activity first, after the `(updatedAt,
   * conversationId)` position `before` when given. Resolves `limit` rows at most and
   * whether more follow.
   */
  async conversations(viewerId: string, limit: number, before?: { updatedAt: Date; conversationId: string }): Promise<{ rows: ConversationRow[]; hasMore: boolean }> {
    const { rows } = await this.db.query(
      `SELECT c.conversation_id AS cid, CASE WHEN c.user_a = $1 THEN c.user_b ELSE c.user_a END AS other_id, c.updated_at,
         (SELECT count(*)::int FROM private_messages u WHERE u.conversation_id = c.conversation_id AND u.recipient_id = $1
            AND NOT u.is_read AND NOT u.is_deleted AND u.seq > COALESCE(cd.up_to_seq, 0)
            AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = u.id AND d.user_id = $1)) AS unread,
         lm.*
       FROM conversations c
       LEFT JOIN conversation_deletions cd ON cd.conversation_id = c.conversation_id AND cd.user_id = $1
       JOIN LATERAL (
         SELECT ${MESSAGE_COLUMNS} FROM private_messages m ${SENDER_JOIN}
         WHERE m.conversation_id = c.conversation_id AND NOT m.is_deleted AND m.seq > COALESCE(cd.up_to_seq, 0)
           AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = m.id AND d.user_id = $1)
         ORDER BY m.seq DESC LIMIT 1) lm ON true
       WHERE c.kind = 'direct' AND (c.user_a = $1 OR c.user_b = $1) AND c.last_seq > COALESCE(cd.up_to_seq, 0)
         AND ($3::timestamptz IS NULL OR (date_trunc('milliseconds', c.updated_at), c.conversation_id) < ($3::timestamptz, $4::text))
       ORDER BY date_trunc('milliseconds', c.updated_at) DESC, c.conversation_id DESC LIMIT $2`,
      [viewerId, limit + 1, before?.updatedAt ?? null, before?.conversationId ?? ''],
    );
    const hasMore = rows.length > limit;
    const out: ConversationRow[] = rows.slice(0, limit).map((r) => ({
      conversationId: r.cid as string,
      otherUserId: r.other_id as string,
      updatedAt: r.updated_at as Date,
      unreadCount: Number(r.unread),
      lastMessage: r.id ? toMessageRecord(r) : null,
    }));
    await this.attachReactions(out.flatMap((c) => (c.lastMessage ? [c.lastMessage] : [])));
    return { rows: out, hasMore };
  }

  /**
   * Delete conversation `conversationId` for user `userId` only (PROTOCOL §6): hide
   * everything up to its current last seq, in one statement. `change_xid` (this
   * transaction) makes that user's sync return a tombstone for every hidden message, on
   * all their devices (PROTOCOL §9, store/sync.ts). A repeat keeps what the previous
   * deletion covered (`prev_up_to_seq`, `prev_change_xid`), so devices that synced past
   * it get tombstones only for the newly hidden messages; a repeat that hides nothing new
   * changes nothing. No-op for an unknown conversation. Throws driver errors.
   */
  async deleteConversationForUser(conversationId: string, userId: string): Promise<void> {
    await this.db.query(
      `INSERT INTO conversation_deletions AS cd (conversation_id, user_id, up_to_seq)
       SELECT conversation_id, $2, last_seq FROM conversations WHERE conversation_id = $1
       ON CONFLICT (conversation_id, user_id) DO UPDATE SET up_to_seq = EXCLUDED.up_to_seq, deleted_at = now(),
         prev_up_to_seq = cd.up_to_seq, prev_change_xid = cd.change_xid, change_xid = pg_current_xact_id()
       WHERE EXCLUDED.up_to_seq > cd.up_to_seq`,
      [conversationId, userId],
    );
  }

  /** Delete every message of a conversation for everyone (bodies wiped). Resolves the number deleted. */
  async deleteConversationForEveryone(conversationId: string, by: string): Promise<number> {
    const { rows } = await this.db.query<{ n: number }>(
      `WITH d AS (UPDATE private_messages SET is_deleted = true, deleted_at = now(), deleted_by = $2, nonce = '\\x', ciphertext = '\\x',
         change_xid = pg_current_xact_id() WHERE conversation_id = $1 AND NOT is_deleted RETURNING id)
       , r AS (DELETE FROM message_reactions WHERE message_id IN (SELECT id FROM d))
       SELECT count(*)::int AS n FROM d`,
      [conversationId, by],
    );
    return Number(rows[0]?.n ?? 0);
  }

  /** The conversation row: kind, DM participants, last seq; or null. */
  async conversation(conversationId: string): Promise<{ kind: 'direct' | 'group'; userA: string | null; userB: string | null; lastSeq: number } | null> {
    const { rows } = await this.db.query<{ kind: 'direct' | 'group'; user_a: string | null; user_b: string | null; last_seq: string }>(
      'SELECT kind, user_a, user_b, last_seq::text AS last_seq FROM conversations WHERE conversation_id = $1',
      [conversationId],
    );
    const r = rows[0];
    return r ? { kind: r.kind, userA: r.user_a, userB: r.user_b, lastSeq: Number(r.last_seq) } : null;
  }
}

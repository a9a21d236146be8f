/**
 * The viewer's DM conversation list (PROTOCOL §6 `get_conversations`), read page by page
 * from the `conversations_user_a` / `conversations_user_b` indexes (audit 6, F6): its cost
 * follows the page, not the number of conversations the viewer has.
 */
import type { Queryable } from './db.ts';
import { MESSAGE_COLUMNS, SENDER_JOIN, toMessageRecord, type MessageRecord } from './types.ts';

/** A listed conversation, before reactions are attached (see HistoryStore.conversations). */
export interface ListedConversation {
  conversationId: string;
  otherUserId: string;
  updatedAt: Date;
  unreadCount: number;
  lastMessage: MessageRecord;
}

/** Most candidate conversations one batch takes from each index before it grows no more. */
const MAX_BATCH = 1_000;

/**
 * One batch: the conversations whose `updated_at` lies in whole milliseconds [lo, $2), lo
 * being the millisecond of the `$3`-th newest conversation below `$2` (both indexes merged;
 * none when fewer remain: then lo is NULL and the batch takes all of them). Each index is
 * read in `updated_at DESC` order and stops after `$3` rows, then once more for [lo, $2);
 * the last message and unread count run only for those candidates. The list order
 * (millisecond of `updated_at` DESC, conversation id DESC) sorts within a batch; batches
 * cover disjoint millisecond ranges in descending order, so their concatenation is that
 * order too. `$4`/`$5`: the `before` position (same comparison as the cursor always had),
 * `$6`: rows wanted. Always one row more than the listed ones carries `lo_t` (cid NULL
 * when nothing in the batch is visible).
 */
const BATCH_SQL = `WITH e AS (
    SELECT x.updated_at FROM (
      (SELECT updated_at FROM conversations WHERE kind = 'direct' AND user_a = $1 AND updated_at < $2 ORDER BY updated_at DESC LIMIT $3)
      UNION ALL
      (SELECT updated_at FROM conversations WHERE kind = 'direct' AND user_b = $1 AND user_a <> $1 AND updated_at < $2 ORDER BY updated_at DESC LIMIT $3)
    ) x ORDER BY x.updated_at DESC OFFSET $3 - 1 LIMIT 1),
  c AS (
    SELECT conversation_id, user_b AS other_id, updated_at, last_seq FROM conversations
      WHERE kind = 'direct' AND user_a = $1 AND updated_at < $2
        AND updated_at >= COALESCE((SELECT date_trunc('milliseconds', updated_at) FROM e), '-infinity')
    UNION ALL
    SELECT conversation_id, user_a, updated_at, last_seq FROM conversations
      WHERE kind = 'direct' AND user_b = $1 AND user_a <> $1 AND updated_at < $2
        AND updated_at >= COALESCE((SELECT date_trunc('milliseconds', updated_at) FROM e), '-infinity'))
  SELECT b.lo_t, r.* FROM (SELECT (SELECT date_trunc('milliseconds', updated_at) FROM e) AS lo_t) b
  LEFT JOIN (
    SELECT c.conversation_id AS cid, c.other_id, c.updated_at,
      (SELECT count(*)::int FROM private_messages u WHERE u.conversation_id = c.conversation_id AND u.recipient_id = $1
         AND NOT u.is_read AND NOT u.is_deleted AND u.seq > COALESCE(cd.up_to_seq, 0)
         AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = u.id AND d.user_id = $1)) AS unread,
      lm.*
    FROM c
    LEFT JOIN conversation_deletions cd ON cd.conversation_id = c.conversation_id AND cd.user_id = $1
    JOIN LATERAL (
      SELECT ${MESSAGE_COLUMNS} FROM private_messages m ${SENDER_JOIN}
      WHERE m.conversation_id = c.conversation_id AND NOT m.is_deleted AND m.seq > COALESCE(cd.up_to_seq, 0)
        AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = m.id AND d.user_id = $1)
      ORDER BY m.seq DESC LIMIT 1) lm ON true
    WHERE c.last_seq > COALESCE(cd.up_to_seq, 0)
      AND ($4::timestamptz IS NULL OR (date_trunc('milliseconds', c.updated_at), c.conversation_id) < ($4::timestamptz, $5::text))
    ORDER BY date_trunc('milliseconds', c.updated_at) DESC, c.conversation_id DESC LIMIT $6) r ON true
  ORDER BY date_trunc('milliseconds', r.updated_at) DESC, r.cid DESC`;

/**
 * Up to `want` of the viewer's DM conversations that still hold a message the viewer can
 * see, newest activity first (millisecond of `updated_at` DESC, then conversation id DESC),
 * after the `before` position when given (same comparison as before: the cursor carries the
 * millisecond). Reads batch after batch ({@link BATCH_SQL}), each over whole milliseconds
 * below the previous one, the batch size doubling (to {@link MAX_BATCH}) while conversations
 * with nothing visible (deleted for the viewer) leave the page short. Rows read: about the
 * page's conversations (twice their number from the indexes, plus the conversations
 * sharing the boundary's millisecond), plus the skipped ones, never the whole list.
 * Throws driver errors.
 */
export async function listConversations(
  db: Queryable,
  viewerId: string,
  want: number,
  before?: { updatedAt: Date; conversationId: string },
): Promise<ListedConversation[]> {
  const out: ListedConversation[] = [];
  // Exclusive upper bound: every updated_at whose millisecond is <= the cursor's.
  let hi: Date | 'infinity' = before ? new Date(before.updatedAt.getTime() + 1) : 'infinity';
  let k = want;
  for (;;) {
    const { rows } = await db.query(BATCH_SQL, [viewerId, hi, k, before?.updatedAt ?? null, before?.conversationId ?? '', want - out.length]);
    for (const r of rows) {
      if (r.cid == null) continue;
      out.push({ conversationId: r.cid as string, otherUserId: r.other_id as string, updatedAt: r.updated_at as Date, unreadCount: Number(r.unread), lastMessage: toMessageRecord(r) });
    }
    const lo = rows[0]?.lo_t as Date | null | undefined;
    if (out.length >= want || !lo) return out;
    hi = lo;
    k = Math.min(k * 2, MAX_BATCH);
  }
}

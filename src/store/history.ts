/**
 * History and conversation listings, as one viewer sees them: deleted-for-everyone
 * messages, messages the viewer deleted for themselves, and everything before the
 * viewer's conversation deletion are left out (PROTOCOL §6 rules).
 */
import { listConversations } from './conversationList.ts';
import type { Queryable } from './db.ts';
import { MESSAGE_COLUMNS, SENDER_JOIN, toMessageRecord, type MessageRecord, type ReactionSummary } from './types.ts';

/**
 * Page request (PROTOCOL §6 `get_private_messages`, §7 `get_group_messages`): `limit`
 * messages (1..100); `offset` visible messages to skip from the newest (0 = newest page,
 * any size: its cost does not grow with it, see {@link HistoryStore.page}); `before` takes
 * messages with seq < before instead.
 */
export interface PageRequest {
  limit: number;
  offset?: number;
  before?: number;
}

/**
 * A page, oldest first; `hasMore`: older visible messages exist beyond the page.
 * `total`: the visible messages in the conversation, exact unless more than
 * {@link HIDDEN_SCAN_CAP} of its messages are hidden from this viewer, in which case it is
 * a lower bound (the visible messages above the hidden ones it examined); `totalExact`
 * says which.
 */
export interface Page {
  messages: MessageRecord[];
  total: number;
  totalExact: boolean;
  hasMore: boolean;
}

/**
 * Most hidden messages (deleted for everyone, deleted by the viewer, or from a sender
 * hidden from the viewer) one page examines to place the page and count `total` exactly.
 * Beyond it `total` is a lower bound and an offset past the examined range is applied by
 * SQL OFFSET below it (PROTOCOL-NOTES: history `total`).
 */
export const HIDDEN_SCAN_CAP = 10_000;

/** Messages (seqs) wiped per statement by {@link HistoryStore.deleteConversationForEveryone}: about 90 ms each. */
export const WIPE_BATCH = 5_000;

/** One row of the viewer's conversation list. */
export interface ConversationRow {
  conversationId: string;
  otherUserId: string;
  updatedAt: Date;
  unreadCount: number;
  lastMessage: MessageRecord | null;
}

// Visibility of m for viewer $2 in conversation $1 (the page query adds the group block filter).
// The deletion test is one probe of message_deletions_conv_seq per row read, on all its
// columns (007: a deletion row carries its message's conversation and seq); OFFSET 0 keeps
// the planner from making it an anti-join: as a join, with many deletions in the
// conversation, it hashed all of the viewer's deletions and read the whole conversation for
// a page (audit 6, F5: 20,000 deletions, 45,000 rows read for 51).
const VISIBLE = `m.conversation_id = $1 AND NOT m.is_deleted
  AND m.seq > COALESCE((SELECT up_to_seq FROM conversation_deletions cd WHERE cd.conversation_id = $1 AND cd.user_id = $2), 0)
  AND NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.user_id = $2 AND d.conversation_id = $1 AND d.seq = m.seq OFFSET 0)`;

/**
 * The conversation's range as the viewer sees it and the seqs hidden inside it, newest
 * first, at most `$4` of them (HIDDEN_SCAN_CAP + 1): `top` = last_seq, `floor` = the
 * viewer's conversation deletion (messages with seq <= floor are hidden). A conversation's
 * seqs are gap-free 1..last_seq (store/messages.ts and store/insertBatch.ts take the seq
 * and write the row in one statement; rows are never removed one by one), so every seq
 * in (floor, top] is a row, and the visible ones are those not listed here. Each branch
 * reads an index backwards in seq order from `top` and stops after `$4` rows, none sorts
 * more than that (audit 6 of 2026-12, F5): deleted-for-everyone through
 * private_messages_conv_deleted (004), the viewer's own deletions of this conversation
 * through message_deletions_conv_seq (007: the row carries the message's seq, so no
 * lookup of the message), hidden senders of a group through private_messages_group_sender
 * once per sender (a LATERAL over `unnest($3)`, as UNREAD_HIDDEN in ./userGroups.ts: each
 * sender's own ordered scan with its own limit; with `sender_id = ANY($3)` the index
 * returned every message of those senders unordered, then sorted them all). `$3` = hidden senders (text[]),
 * `$5` = include the sender branch.
 */
const HIDDEN_SQL = `WITH r AS (
    SELECT c.last_seq AS top,
      COALESCE((SELECT up_to_seq FROM conversation_deletions cd WHERE cd.conversation_id = $1 AND cd.user_id = $2), 0) AS floor
    FROM conversations c WHERE c.conversation_id = $1)
  SELECT r.top::text AS top, r.floor::text AS floor,
    (SELECT string_agg(h.seq::text, ',' ORDER BY h.seq DESC) FROM (
       SELECT u.seq FROM (
         (SELECT m.seq FROM private_messages m WHERE m.conversation_id = $1 AND m.is_deleted AND m.seq > r.floor AND m.seq <= r.top
           ORDER BY m.seq DESC LIMIT $4)
         UNION
         (SELECT d.seq FROM message_deletions d WHERE d.user_id = $2 AND d.conversation_id = $1
           AND d.seq > r.floor AND d.seq <= r.top ORDER BY d.seq DESC LIMIT $4)
         UNION
         (SELECT x.seq FROM unnest($3::text[]) AS bs(id), LATERAL (SELECT m.seq FROM private_messages m
             WHERE $5 AND m.conversation_id = $1 AND m.group_id IS NOT NULL AND m.sender_id = bs.id
             AND m.seq > r.floor AND m.seq <= r.top ORDER BY m.seq DESC LIMIT $4) x)
       ) u ORDER BY u.seq DESC LIMIT $4) h) AS hidden
  FROM r`;

/** History and listing queries. */
export class HistoryStore {
  constructor(private readonly db: Queryable) {}

  /**
   * A page of the conversation `conversationId` as `viewerId` sees it, with reactions
   * (PROTOCOL §6 `private_message_history`, §7 `group_messages`). `excludeSenders`:
   * senders hidden from this viewer in a group (group blocks, PROTOCOL §5); only group
   * messages (group_id set) are counted as hidden by it, so a DM passes none; their
   * reactions are left out of the group messages' totals too ({@link attachReactions}). Resolves {@link Page};
   * an unknown conversation gives an empty page with total 0. Throws driver errors.
   *
   * Cost (audit 2 of 2026-12-05, F5): two index reads, no count over the conversation. The first
   * lists the seqs hidden from the viewer ({@link HIDDEN_SQL}, at most HIDDEN_SCAN_CAP + 1);
   * with them `total` = (top - floor) - hidden, and the newest message of an `offset` page
   * is placed arithmetically (seqs are gap-free), so the page itself is a backward index
   * scan from that seq reading `limit + 1` visible rows (plus hidden ones in between),
   * whatever the offset: offset 299 900 of a 300 001-message conversation costs what offset
   * 0 does, and an offset past the end reads nothing. Only when more than HIDDEN_SCAN_CAP
   * messages are hidden and the offset reaches below the ones listed does the page fall
   * back to SQL OFFSET (counted from the lowest listed seq), and `total` is then a lower bound.
   */
  async page(conversationId: string, viewerId: string, req: PageRequest, excludeSenders: readonly string[] = []): Promise<Page> {
    const cap = HIDDEN_SCAN_CAP;
    const { rows: rr } = await this.db.query<{ top: string; floor: string; hidden: string | null }>(HIDDEN_SQL, [
      conversationId,
      viewerId,
      excludeSenders,
      cap + 1,
      excludeSenders.length > 0,
    ]);
    const r = rr[0];
    if (!r) return { messages: [], total: 0, totalExact: true, hasMore: false };
    const top = Number(r.top);
    const floor = Number(r.floor);
    const hidden = r.hidden ? r.hidden.split(',').map(Number) : [];
    const truncated = hidden.length > cap;
    // Truncated: the hidden seqs are known exactly in [lowest, top] only.
    const lowest = truncated ? hidden[cap]! : floor;
    const visibleKnown = Math.max(0, top - lowest - (truncated ? cap : hidden.length));
    const total = visibleKnown;

    const params: unknown[] = [conversationId, viewerId, excludeSenders];
    const where = `${VISIBLE} AND NOT (m.sender_id = ANY($3::text[]))`;
    let pageSql: string;
    if (req.before !== undefined) {
      params.push(Math.min(req.before - 1, top), req.limit + 1);
      pageSql = `SELECT ${MESSAGE_COLUMNS} FROM private_messages m ${SENDER_JOIN} WHERE ${where} AND m.seq <= $4 ORDER BY m.seq DESC LIMIT $5`;
    } else {
      const offset = req.offset ?? 0;
      // The newest seq of the page: the (offset + 1)-th visible seq counting down from top.
      let start = top - offset;
      let i = 0;
      while (i < hidden.length && i < cap && hidden[i]! >= start) {
        start--;
        i++;
      }
      if (!truncated || start > lowest) {
        if (start <= floor) return { messages: [], total, totalExact: !truncated, hasMore: false };
        params.push(start, req.limit + 1);
        pageSql = `SELECT ${MESSAGE_COLUMNS} FROM private_messages m ${SENDER_JOIN} WHERE ${where} AND m.seq <= $4 ORDER BY m.seq DESC LIMIT $5`;
      } else {
        // Below the listed hidden seqs: skip the rest of the offset with OFFSET there.
        params.push(lowest, req.limit + 1, Math.max(0, offset - visibleKnown));
        pageSql = `SELECT ${MESSAGE_COLUMNS} FROM private_messages m ${SENDER_JOIN} WHERE ${where} AND m.seq < $4 ORDER BY m.seq DESC LIMIT $5 OFFSET $6`;
      }
    }
    const pageRes = await this.db.query(pageSql, params);
    const rows = pageRes.rows.map(toMessageRecord);
    const hasMore = rows.length > req.limit;
    if (hasMore) rows.length = req.limit;
    rows.reverse();
    await this.attachReactions(rows, excludeSenders.length > 0 ? new Set(excludeSenders) : undefined);
    return { messages: rows, total, totalExact: !truncated, hasMore };
  }

  /**
   * Fill `reactions` of each message (one query for all). On group messages the reactions
   * of `hiddenReactors` (the users in a block with the viewer, PROTOCOL §5: a member never
   * sees their activity) are left out of `userIds` and `count`, and a reaction left with
   * no user is dropped. DM reactions are kept: a DM's reactions are its two participants',
   * and its history stays visible across a block (docs/PROTOCOL-NOTES.md).
   * @param messages records to fill in place
   * @param hiddenReactors user ids whose group reactions the viewer is not shown
   */
  async attachReactions(messages: MessageRecord[], hiddenReactors?: ReadonlySet<string>): Promise<void> {
    if (messages.length === 0) return;
    const byId = await this.reactionsFor(messages.map((m) => m.id));
    for (const m of messages) {
      const all = byId.get(m.id) ?? [];
      m.reactions = m.groupId && hiddenReactors && hiddenReactors.size > 0 ? withoutReactors(all, hiddenReactors) : all;
    }
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
   * whether more follow. Reads about the page's rows, not every conversation of the viewer
   * (audit 6, F6; see {@link listConversations}).
   */
  async conversations(viewerId: string, limit: number, before?: { updatedAt: Date; conversationId: string }): Promise<{ rows: ConversationRow[]; hasMore: boolean }> {
    const rows = await listConversations(this.db, viewerId, limit + 1, before);
    const hasMore = rows.length > limit;
    const out: ConversationRow[] = rows.slice(0, limit);
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

  /**
   * Delete every message of a conversation for everyone (bodies wiped, reactions removed),
   * up to its last seq as read first, in batches of {@link WIPE_BATCH} seqs, oldest first,
   * each its own statement (audit 6, F4: one UPDATE over a 300,000-message DM took 4.6 s,
   * near the statement timeout, and locked every row of it meanwhile). Each wiped message
   * gets its batch's `change_xid`, so it is a tombstone in both participants' sync (PROTOCOL
   * §9). While it runs, readers may see the older batches wiped and the newer not yet; if a
   * batch fails, the batches before it stay wiped and a repeat wipes the rest.
   * @returns the number of messages deleted (already deleted ones are not counted)
   * @throws driver errors
   */
  async deleteConversationForEveryone(conversationId: string, by: string, batch = WIPE_BATCH): Promise<number> {
    const { rows: c } = await this.db.query<{ last_seq: string }>('SELECT last_seq::text AS last_seq FROM conversations WHERE conversation_id = $1', [conversationId]);
    const last = Number(c[0]?.last_seq ?? 0);
    let n = 0;
    for (let lo = 0; lo < last; lo += batch) {
      const { rows } = await this.db.query<{ n: number }>(
        `WITH d AS (UPDATE private_messages SET is_deleted = true, deleted_at = now(), deleted_by = $2, nonce = '\\x', ciphertext = '\\x',
           change_xid = pg_current_xact_id() WHERE conversation_id = $1 AND seq > $3 AND seq <= $4 AND NOT is_deleted RETURNING id)
         , r AS (DELETE FROM message_reactions WHERE message_id IN (SELECT id FROM d))
         SELECT count(*)::int AS n FROM d`,
        [conversationId, by, lo, Math.min(lo + batch, last)],
      );
      n += Number(rows[0]?.n ?? 0);
    }
    return n;
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

/** `summaries` without the reactions of `hidden` users: `userIds` and `count` recomputed, empty reactions dropped (order kept). */
function withoutReactors(summaries: readonly ReactionSummary[], hidden: ReadonlySet<string>): ReactionSummary[] {
  const out: ReactionSummary[] = [];
  for (const r of summaries) {
    const userIds = r.userIds.filter((u) => !hidden.has(u));
    if (userIds.length > 0) out.push({ reaction: r.reaction, count: userIds.length, userIds });
  }
  return out;
}

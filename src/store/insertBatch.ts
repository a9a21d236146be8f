/**
 * Group commit of message inserts: messages that arrive while earlier inserts are in
 * flight are stored together in ONE statement (one round trip, one WAL flush), each
 * conversation's seq range assigned under its row lock, so seq stays gap-free in commit
 * order. At low load a message is flushed at once (no added latency). The ack still
 * means committed: each caller resolves only after its batch committed
 * (`synchronous_commit` untouched).
 *
 * Repeated idempotency keys (already stored, or twice in one batch) are left out inside
 * the statement and resolve as duplicates. A batch that still fails for any reason but a
 * lost connection (two batches racing on one key, a deadlock) is retried row by row, so
 * every message gets its own exact outcome (stored, duplicate, or its own error).
 */
import { isConnectionError } from './pgDb.ts';
import { type CoalesceOptions } from './coalesce.ts';
import type { Queryable } from './db.ts';
import type { InsertResult, NewMessage } from './messages.ts';
import type { MessageRecord } from './types.ts';

/** Tuning: concurrent batch statements and rows per statement. */
export type BatchOptions = CoalesceOptions;

const BATCH_SQL = `WITH input_all AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::text[], $7::text[], $8::text[], $9::text[],
                         $10::bytea[], $11::bytea[], $12::uuid[], $13::text[], $14::jsonb[], $15::bool[])
      WITH ORDINALITY AS t(conversation_id, kind, user_a, user_b, id, sender_id, recipient_id, group_id, key_id, nonce, ciphertext,
                           reply_to, client_message_id, mentions, is_announcement, ord)),
  -- Idempotency inside the statement: keys already stored, and repeats within the batch
  -- (first one wins), are left out BEFORE seqs are counted, so seq stays gap-free.
  input AS (
    SELECT DISTINCT ON (a.sender_id, COALESCE(a.client_message_id, a.id::text)) a.* FROM input_all a
    WHERE a.client_message_id IS NULL
       OR NOT EXISTS (SELECT 1 FROM private_messages p WHERE p.sender_id = a.sender_id AND p.client_message_id = a.client_message_id)
    ORDER BY a.sender_id, COALESCE(a.client_message_id, a.id::text), a.ord),
  counts AS (
    SELECT conversation_id, min(kind) AS kind, min(user_a) AS user_a, min(user_b) AS user_b, count(*) AS n FROM input GROUP BY conversation_id),
  c AS (
    INSERT INTO conversations AS c (conversation_id, kind, user_a, user_b, last_seq, last_message_at, updated_at)
    SELECT conversation_id, kind, user_a, user_b, n, now(), now() FROM counts ORDER BY conversation_id
    ON CONFLICT (conversation_id) DO UPDATE SET last_seq = c.last_seq + EXCLUDED.last_seq, last_message_at = now(), updated_at = now()
    RETURNING c.conversation_id, c.last_seq)
INSERT INTO private_messages (id, conversation_id, seq, sender_id, recipient_id, group_id, key_id, nonce, ciphertext,
  reply_to, client_message_id, mentions, is_announcement)
SELECT i.id, i.conversation_id, c.last_seq - k.n + row_number() OVER (PARTITION BY i.conversation_id ORDER BY i.ord),
  i.sender_id, i.recipient_id, i.group_id, i.key_id, i.nonce, i.ciphertext, i.reply_to, i.client_message_id, i.mentions, i.is_announcement
FROM input i JOIN c ON c.conversation_id = i.conversation_id JOIN counts k ON k.conversation_id = i.conversation_id
ORDER BY i.ord
RETURNING id::text AS id, seq::text AS seq, created_at`;

/**
 * The batch function for a {@link Coalescer} of inserts: one multi-row statement; rows
 * left out as repeats resolve as duplicates; any failure but a lost connection falls back
 * to `one` per message.
 * @param db where batches run
 * @param one the single-message insert (batches of one and fallbacks)
 * @param existing the stored message of an idempotency key (repeats left out of a batch)
 */
export function insertBatch(
  db: Queryable,
  one: (m: NewMessage) => Promise<InsertResult>,
  existing: (senderId: string, clientMessageId: string) => Promise<MessageRecord | null>,
): (ms: NewMessage[]) => Promise<(InsertResult | Error)[]> {
  const single = (m: NewMessage) => one(m).catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
  return async (ms) => {
    if (ms.length === 1) return [await single(ms[0]!)];
    let rows: { id: string; seq: string; created_at: Date }[];
    try {
      rows = (
        await db.query<{ id: string; seq: string; created_at: Date }>(BATCH_SQL, [
          ms.map((m) => m.conversationId),
          ms.map((m) => m.kind),
          ms.map((m) => m.userA ?? null),
          ms.map((m) => m.userB ?? null),
          ms.map((m) => m.id),
          ms.map((m) => m.senderId),
          ms.map((m) => m.recipientId),
          ms.map((m) => m.groupId),
          ms.map((m) => m.sealed.keyId),
          ms.map((m) => m.sealed.nonce),
          ms.map((m) => m.sealed.ciphertext),
          ms.map((m) => m.replyTo),
          ms.map((m) => m.clientMessageId),
          ms.map((m) => (m.mentions ? JSON.stringify(m.mentions) : null)),
          ms.map((m) => m.isAnnouncement),
        ])
      ).rows;
    } catch (err) {
      if (isConnectionError(err)) throw err;
      // Two batches racing on one key, a deadlock, …: nothing was stored; go row by row.
      return Promise.all(ms.map(single));
    }
    const byId = new Map(rows.map((r) => [r.id, r]));
    return Promise.all(
      ms.map(async (m): Promise<InsertResult | Error> => {
        const r = byId.get(m.id);
        if (r) return { duplicate: false, seq: Number(r.seq), createdAt: r.created_at };
        // Left out as a repeat of a stored idempotency key: resolve with the original.
        const orig = m.clientMessageId ? await existing(m.senderId, m.clientMessageId).catch(() => null) : null;
        return orig ? { duplicate: true, existing: orig } : new Error('batch insert stored no row for a message');
      }),
    );
  };
}

/**
 * Group commit of message inserts: messages that arrive while earlier inserts are in
 * flight are stored together in ONE statement (one round trip, one WAL flush), each
 * conversation's seq range assigned under its row lock, so seq stays gap-free in commit
 * order. At low load a message is flushed at once (no added latency). The ack still
 * means committed: each caller resolves only after its batch committed
 * (`synchronous_commit` untouched).
 *
 * An idempotency key repeated inside one batch is stored once (the first) and the
 * repeats resolve as its duplicates. A batch that fails for any reason but a lost
 * connection (a key stored earlier, two batches racing on one key, a deadlock) stored
 * nothing and is retried row by row, so every message gets its own exact outcome
 * (stored, duplicate, or its own error).
 */
import { isConnectionError } from './pgDb.ts';
import { type CoalesceOptions } from './coalesce.ts';
import type { Queryable } from './db.ts';
import type { InsertResult, NewMessage } from './messages.ts';
import type { MessageRecord } from './types.ts';

/** Tuning: concurrent batch statements and rows per statement. */
export type BatchOptions = CoalesceOptions;

/**
 * Rows of a batch statement that are run as a named prepared statement (one per row
 * count, prepared on each connection the first time that count occurs); larger batches,
 * which only a backlog produces, run the same form unnamed (parsed and planned per run).
 * The bound caps PostgreSQL's memory for these plans: every size from 2 to 16 prepared
 * on one connection held 3.5 MB of plan cache (`pg_backend_memory_contexts`), every size
 * to 32 held 9.0 MB, per connection of every process's pool (2026-12-05).
 */
export const PREPARED_MAX_ROWS = 16;

/** Types of a message row's 13 columns in the VALUES list, in {@link batchParams} order. */
const ROW_TYPES = ['text', 'int', 'uuid', 'text', 'text', 'text', 'text', 'bytea', 'bytea', 'uuid', 'text', 'jsonb', 'bool'] as const;

/**
 * The batch statement up to its message rows: the conversation upsert (parameters 1–5)
 * and the INSERT … SELECT over `t` (the rows `FROM` … `AS t(…)` that follow, then
 * `JOIN c`). Exported for scripts/insert-cpu.ts, which compares row forms.
 */
export const BATCH_SQL_HEAD = `WITH c AS (
    INSERT INTO conversations AS c (conversation_id, kind, user_a, user_b, last_seq, last_message_at, updated_at)
    SELECT conversation_id, kind, user_a, user_b, n, now(), now()
      FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[]) AS v(conversation_id, kind, user_a, user_b, n)
    ORDER BY conversation_id
    ON CONFLICT (conversation_id) DO UPDATE SET last_seq = c.last_seq + EXCLUDED.last_seq, last_message_at = now(), updated_at = now()
    RETURNING c.conversation_id, c.last_seq)
INSERT INTO private_messages (id, conversation_id, seq, sender_id, recipient_id, group_id, key_id, nonce, ciphertext,
  reply_to, client_message_id, mentions, is_announcement)
SELECT t.id, t.conversation_id, c.last_seq - t.back, t.sender_id, t.recipient_id, t.group_id, t.key_id, t.nonce, t.ciphertext,
  t.reply_to, t.client_message_id, t.mentions, t.is_announcement
`;

/** Statement texts by row count, for the row counts that are prepared. */
const BATCH_SQL_CACHE = new Map<number, string>();

/**
 * The statement for a batch of `rows` messages, and whether it runs prepared (see
 * {@link PREPARED_MAX_ROWS}): one row per conversation (parameters 1–5,
 * arrays) takes its seq range under the row lock (ORDER BY: batches lock conversations in
 * one order, no deadlock), then each message (a VALUES row of 13 parameters) gets
 * `last_seq - back` (`back` = later messages of its conversation in the batch, computed
 * here). An idempotency key already stored fails the statement (unique violation,
 * nothing written) and the batch goes row by row.
 *
 * Why a VALUES row per message instead of unnest over arrays: the row count is then part
 * of the text, so the statement can be prepared per row count with a plan that fits it,
 * and bytea values travel as binary parameters instead of hex text inside an array
 * literal. PostgreSQL 15 backend CPU per statement (`npx tsx scripts/insert-cpu.ts 1,3,8`,
 * 1,500 sequential batches of distinct conversations, 2026-12-05): 3 rows 287–333 µs
 * against 593–613 µs for the unnest form (~530 µs even prepared); 8 rows 547–573 µs
 * against 1,133–1,267 µs; one message alone (insertOne) 220–240 µs.
 */
function batchSql(rows: number): { sql: string; prepare: boolean } {
  const prepare = rows <= PREPARED_MAX_ROWS;
  let sql = BATCH_SQL_CACHE.get(rows);
  if (sql) return { sql, prepare };
  const values: string[] = [];
  let p = 6;
  for (let r = 0; r < rows; r++) values.push(`(${ROW_TYPES.map((t) => `$${p++}::${t}`).join(', ')})`);
  sql = `${BATCH_SQL_HEAD}FROM (VALUES ${values.join(',\n  ')})
  AS t(conversation_id, back, id, sender_id, recipient_id, group_id, key_id, nonce, ciphertext, reply_to, client_message_id, mentions, is_announcement)
JOIN c ON c.conversation_id = t.conversation_id
RETURNING id::text AS id, seq::text AS seq, created_at`;
  if (prepare) BATCH_SQL_CACHE.set(rows, sql);
  return { sql, prepare };
}

/**
 * The rows of one batch statement: repeats of an idempotency key inside the batch left
 * out (the first one is stored; the others resolve as its duplicates), the conversation
 * rows with their message counts, and each message's `back` offset.
 */
function batchParams(ms: readonly NewMessage[]): { rows: number; params: unknown[] } {
  const seen = new Set<string>();
  const rows: NewMessage[] = [];
  for (const m of ms) {
    if (m.clientMessageId !== null) {
      const key = `${m.senderId}\u0000${m.clientMessageId}`;
      if (seen.has(key)) continue;
      seen.add(key);
    }
    rows.push(m);
  }
  // n: the conversation's messages in this batch; later: how many of them are still to come.
  const convs = new Map<string, { m: NewMessage; n: number; later: number }>();
  for (const m of rows) {
    const c = convs.get(m.conversationId);
    if (c) {
      c.n++;
      c.later++;
    } else convs.set(m.conversationId, { m, n: 1, later: 1 });
  }
  const back = rows.map((m) => --convs.get(m.conversationId)!.later);
  const cs = [...convs.values()];
  const params: unknown[] = [
    cs.map((c) => c.m.conversationId),
    cs.map((c) => c.m.kind),
    cs.map((c) => c.m.userA ?? null),
    cs.map((c) => c.m.userB ?? null),
    cs.map((c) => c.n),
  ];
  rows.forEach((m, i) => {
    params.push(m.conversationId, back[i], m.id, m.senderId, m.recipientId, m.groupId, m.sealed.keyId, m.sealed.nonce, m.sealed.ciphertext,
      m.replyTo, m.clientMessageId, m.mentions ? JSON.stringify(m.mentions) : null, m.isAnnouncement);
  });
  return { rows: rows.length, params };
}

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
      const b = batchParams(ms);
      const { sql, prepare } = batchSql(b.rows);
      rows = (await db.query<{ id: string; seq: string; created_at: Date }>(sql, b.params, { prepare })).rows;
    } catch (err) {
      if (isConnectionError(err)) throw err;
      // A key stored earlier (a client's retry), two batches racing on one key, a deadlock,
      // …: nothing was stored; go row by row (each resolves stored, duplicate or its error).
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

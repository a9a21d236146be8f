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
import type { Queryable } from './db.ts';
import type { InsertResult, NewMessage } from './messages.ts';
import type { MessageRecord } from './types.ts';

interface Pending {
  m: NewMessage;
  resolve(r: InsertResult): void;
  reject(err: unknown): void;
}

/** Tuning: concurrent batch statements and rows per statement. */
export interface BatchOptions {
  maxInFlight: number;
  maxBatch: number;
}

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

/** Batches concurrent inserts; falls back to `one` (the single-row insert) per message. */
export class InsertBatcher {
  private queue: Pending[] = [];
  private inFlight = 0;

  /**
   * @param db where batches run
   * @param one the single-message insert (also used for batches of one and fallbacks)
   * @param existing the stored message of an idempotency key (for repeats left out of a batch)
   * @param opts concurrency and batch size
   */
  constructor(
    private readonly db: Queryable,
    private readonly one: (m: NewMessage) => Promise<InsertResult>,
    private readonly existing: (senderId: string, clientMessageId: string) => Promise<MessageRecord | null>,
    private readonly opts: BatchOptions = { maxInFlight: 4, maxBatch: 256 },
  ) {}

  /** Store `m` (possibly together with others); resolves once its row committed. */
  add(m: NewMessage): Promise<InsertResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ m, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.opts.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.opts.maxBatch);
      this.inFlight++;
      void this.run(batch).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  private async run(batch: Pending[]): Promise<void> {
    if (batch.length === 1) return this.single(batch[0]!);
    try {
      const ms = batch.map((p) => p.m);
      const { rows } = await this.db.query<{ id: string; seq: string; created_at: Date }>(BATCH_SQL, [
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
      ]);
      const byId = new Map(rows.map((r) => [r.id, r]));
      const skipped: Pending[] = [];
      for (const p of batch) {
        const r = byId.get(p.m.id);
        if (r) p.resolve({ duplicate: false, seq: Number(r.seq), createdAt: r.created_at });
        else skipped.push(p);
      }
      // Left out as repeats of a stored idempotency key: resolve with the original.
      await Promise.all(
        skipped.map(async (p) => {
          const existing = p.m.clientMessageId ? await this.existing(p.m.senderId, p.m.clientMessageId).catch(() => null) : null;
          if (existing) p.resolve({ duplicate: true, existing });
          else p.reject(new Error('batch insert stored no row for a message'));
        }),
      );
    } catch (err) {
      if (isConnectionError(err)) {
        for (const p of batch) p.reject(err);
        return;
      }
      // Duplicate idempotency key, deadlock, …: nothing of the batch was stored; go row by row.
      await Promise.all(batch.map((p) => this.single(p)));
    }
  }

  private async single(p: Pending): Promise<void> {
    try {
      p.resolve(await this.one(p.m));
    } catch (err) {
      p.reject(err);
    }
  }
}

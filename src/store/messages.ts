/**
 * Message writes and point reads (DMs and group messages share `private_messages`).
 * Every change to a row also sets `change_xid` so `sync` sees it (SYSTEM_DESIGN.md).
 */
import type { Sealed } from '../crypto/cipher.ts';
import { sqlState, type Queryable } from './db.ts';
import { Coalescer } from './coalesce.ts';
import { insertBatch, type BatchOptions } from './insertBatch.ts';
import { MESSAGE_COLUMNS, notHiddenFor, SENDER_JOIN, toMessageRecord, type MessageRecord } from './types.ts';

/** What {@link MessageStore.insert} stores. `id` is the UUIDv7 chosen by the caller (it is also the AAD of `sealed`). */
export interface NewMessage {
  id: string;
  conversationId: string;
  kind: 'direct' | 'group';
  /** DMs: the two participants (ordered), recorded on the conversation row. */
  userA?: string;
  userB?: string;
  senderId: string;
  recipientId: string | null;
  groupId: string | null;
  sealed: Sealed;
  replyTo: string | null;
  clientMessageId: string | null;
  mentions: unknown[] | null;
  isAnnouncement: boolean;
}

/** Result of an insert: stored (with its seq) or a duplicate of an earlier send with the same idempotency key. */
export type InsertResult = { duplicate: false; seq: number; createdAt: Date } | { duplicate: true; existing: MessageRecord };

/** A DM named in a delivery receipt: its id, sender and conversation (`conv_…`). */
export interface DeliveryRow {
  id: string;
  senderId: string;
  conversationId: string;
}

/** Message repository. */
export class MessageStore {
  private readonly batcher: Coalescer<NewMessage, InsertResult> | undefined;

  /** @param batch group-commit concurrent inserts (PostgreSQL; pointless on one PGlite connection) */
  constructor(
    private readonly db: Queryable,
    batch?: BatchOptions,
  ) {
    this.batcher = batch ? new Coalescer(insertBatch(db, (m) => this.insertOne(m), (s, c) => this.findByClientId(s, c)), batch) : undefined;
  }

  /**
   * Store one message and assign its seq (conversation row lock: gap-free, in commit
   * order per conversation); concurrent inserts are committed together (insertBatch.ts).
   * A repeated `(senderId, clientMessageId)` stores nothing and resolves the original.
   * Resolves only after the row committed. Throws DbUnavailableError / driver errors.
   */
  insert(m: NewMessage): Promise<InsertResult> {
    return this.batcher ? this.batcher.add(m) : this.insertOne(m);
  }

  /**
   * The single-row insert, in ONE autocommit statement. A repeated
   * `(senderId, clientMessageId)` rolls the statement back (no seq consumed) and returns
   * the original. Prepared (QueryOptions.prepare): at 1,000 DM/s most sends are batches of
   * one, and skipping the parse and plan took this statement from 0.52–0.69 to 0.37–0.39 ms
   * (p50, 2,000 sequential inserts on this machine's PostgreSQL 15, 2026-12-04); its plan
   * does not depend on the values, unlike the batch statement's unnest row counts.
   */
  async insertOne(m: NewMessage): Promise<InsertResult> {
    try {
      const { rows } = await this.db.query<{ seq: string; created_at: Date }>(
        `WITH c AS (
           INSERT INTO conversations AS c (conversation_id, kind, user_a, user_b, last_seq, last_message_at, updated_at)
           VALUES ($1, $2, $3, $4, 1, now(), now())
           ON CONFLICT (conversation_id) DO UPDATE SET last_seq = c.last_seq + 1, last_message_at = now(), updated_at = now()
           RETURNING last_seq)
         INSERT INTO private_messages (id, conversation_id, seq, sender_id, recipient_id, group_id, key_id, nonce, ciphertext,
           reply_to, client_message_id, mentions, is_announcement)
         SELECT $5, $1, c.last_seq, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 FROM c
         RETURNING seq::text AS seq, created_at`,
        [m.conversationId, m.kind, m.userA ?? null, m.userB ?? null, m.id, m.senderId, m.recipientId, m.groupId, m.sealed.keyId, m.sealed.nonce, m.sealed.ciphertext,
          m.replyTo, m.clientMessageId, m.mentions ? JSON.stringify(m.mentions) : null, m.isAnnouncement],
        { prepare: true },
      );
      const row = rows[0]!;
      return { duplicate: false, seq: Number(row.seq), createdAt: row.created_at };
    } catch (err) {
      if (sqlState(err) === '23505' && m.clientMessageId) {
        const existing = await this.findByClientId(m.senderId, m.clientMessageId);
        if (existing) return { duplicate: true, existing };
      }
      throw err;
    }
  }

  /** The message a sender stored under an idempotency key, or null. */
  async findByClientId(senderId: string, clientMessageId: string): Promise<MessageRecord | null> {
    const { rows } = await this.db.query(
      `SELECT ${MESSAGE_COLUMNS} FROM private_messages m ${SENDER_JOIN} WHERE m.sender_id = $1 AND m.client_message_id = $2`,
      [senderId, clientMessageId],
    );
    return rows[0] ? toMessageRecord(rows[0]) : null;
  }

  /** One message by id (deleted ones included, flagged), or null. */
  async get(id: string): Promise<MessageRecord | null> {
    const { rows } = await this.db.query(`SELECT ${MESSAGE_COLUMNS} FROM private_messages m ${SENDER_JOIN} WHERE m.id = $1`, [id]);
    return rows[0] ? toMessageRecord(rows[0]) : null;
  }

  /**
   * One message as `viewerId` may see it: null when it does not exist, is deleted for
   * everyone, was deleted by the viewer for themselves, or lies before the viewer's
   * conversation deletion. Participation is the caller's check.
   */
  async getForViewer(id: string, viewerId: string): Promise<MessageRecord | null> {
    const { rows } = await this.db.query(
      `SELECT ${MESSAGE_COLUMNS} FROM private_messages m ${SENDER_JOIN}
       WHERE m.id = $1 AND NOT m.is_deleted
         AND ${notHiddenFor('$2')}`,
      [id, viewerId],
    );
    return rows[0] ? toMessageRecord(rows[0]) : null;
  }

  /** True when `userId` deleted message `id` for themselves. */
  async isDeletedFor(id: string, userId: string): Promise<boolean> {
    const { rows } = await this.db.query('SELECT 1 FROM message_deletions WHERE message_id = $1 AND user_id = $2', [id, userId]);
    return rows.length > 0;
  }

  /**
   * Replace the body (edit), with `edited_at` = `editedAt` (the body is sealed for that time:
   * chat/bodySeal.ts). Resolves to `edited_at`, or null when the message is gone or deleted.
   */
  async edit(id: string, sealed: Sealed, editedAt: Date): Promise<Date | null> {
    const { rows } = await this.db.query<{ edited_at: Date }>(
      `UPDATE private_messages SET key_id = $2, nonce = $3, ciphertext = $4, is_edited = true, edited_at = $5, change_xid = pg_current_xact_id()
       WHERE id = $1 AND NOT is_deleted RETURNING edited_at`,
      [id, sealed.keyId, sealed.nonce, sealed.ciphertext, editedAt],
    );
    return rows[0]?.edited_at ?? null;
  }

  /** Delete for everyone: wipe the body and reactions, keep a tombstone. Resolves false when already gone. */
  async deleteForEveryone(id: string, by: string): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `WITH d AS (UPDATE private_messages SET is_deleted = true, deleted_at = now(), deleted_by = $2, nonce = '\\x', ciphertext = '\\x',
         change_xid = pg_current_xact_id() WHERE id = $1 AND NOT is_deleted RETURNING id)
       , r AS (DELETE FROM message_reactions WHERE message_id IN (SELECT id FROM d))
       SELECT 1 FROM d`,
      [id, by],
    );
    return rowCount > 0;
  }

  /**
   * Delete message `id` for user `userId` only (hidden from their history, PROTOCOL §6),
   * in one statement. The row's `change_xid` (column default: this transaction) puts a
   * tombstone in that user's sync stream, for all their devices (PROTOCOL §9,
   * store/sync.ts); the other participant's stream is untouched. Idempotent: a repeat
   * changes nothing (the first deletion's tombstone stands). Throws driver errors.
   */
  async deleteForUser(id: string, userId: string): Promise<void> {
    await this.db.query('INSERT INTO message_deletions (message_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [id, userId]);
  }

  /**
   * Mark a DM read by its recipient. Resolves `{changed, readAt}`: `changed` false when it
   * was already read (readAt then is the first read time).
   */
  async markRead(id: string, readerId: string): Promise<{ changed: boolean; readAt: Date | null }> {
    const { rows } = await this.db.query<{ read_at: Date }>(
      `UPDATE private_messages SET is_read = true, read_at = now(), change_xid = pg_current_xact_id()
       WHERE id = $1 AND recipient_id = $2 AND NOT is_read AND NOT is_deleted RETURNING read_at`,
      [id, readerId],
    );
    if (rows[0]) return { changed: true, readAt: rows[0].read_at };
    const cur = await this.db.query<{ read_at: Date | null }>('SELECT read_at FROM private_messages WHERE id = $1', [id]);
    return { changed: false, readAt: cur.rows[0]?.read_at ?? null };
  }

  /**
   * Of the message ids `ids`, the DMs to `recipientId` not yet recorded as delivered (nor
   * deleted for everyone), with their senders: what {@link markDelivered} would record
   * now, read without changing anything (PROTOCOL §9 `message_delivered`; the caller checks
   * the senders' blocks first). Throws driver errors.
   */
  async undelivered(ids: readonly string[], recipientId: string): Promise<DeliveryRow[]> {
    const { rows } = await this.db.query<{ id: string; sender_id: string; conversation_id: string }>(
      `SELECT id::text AS id, sender_id, conversation_id FROM private_messages
       WHERE id = ANY($1::uuid[]) AND recipient_id = $2 AND delivered_at IS NULL AND NOT is_deleted`,
      [ids, recipientId],
    );
    return rows.map((r) => ({ id: r.id, senderId: r.sender_id, conversationId: r.conversation_id }));
  }

  /**
   * Record delivery of DMs to their recipient (first delivery time kept; PROTOCOL §9).
   * Resolves the messages that changed now, with sender and conversation. Throws driver errors.
   */
  async markDelivered(ids: readonly string[], recipientId: string): Promise<DeliveryRow[]> {
    const { rows } = await this.db.query<{ id: string; sender_id: string; conversation_id: string }>(
      `UPDATE private_messages SET delivered_at = now(), change_xid = pg_current_xact_id()
       WHERE id = ANY($1::uuid[]) AND recipient_id = $2 AND delivered_at IS NULL AND NOT is_deleted
       RETURNING id::text AS id, sender_id, conversation_id`,
      [ids, recipientId],
    );
    return rows.map((r) => ({ id: r.id, senderId: r.sender_id, conversationId: r.conversation_id }));
  }
}

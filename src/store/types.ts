/**
 * Row shapes the store returns to the chat layer. Bodies stay sealed here: decrypting
 * is the chat layer's job (with `crypto/`), so no plaintext passes through `store/`.
 */
import type { Sealed } from '../crypto/cipher.ts';
import { toBuffer } from './db.ts';

/** A missing bytea. */
const EMPTY = Buffer.alloc(0);

/** A reaction summary of one message: `userIds` in reaction order. */
export interface ReactionSummary {
  reaction: string;
  count: number;
  userIds: string[];
}

/** One message row (DM or group), body sealed; `sealed` is null once deleted for everyone. */
export interface MessageRecord {
  id: string;
  conversationId: string;
  seq: number;
  senderId: string;
  senderUsername: string | null;
  recipientId: string | null;
  groupId: string | null;
  sealed: Sealed | null;
  replyTo: string | null;
  clientMessageId: string | null;
  mentions: unknown[] | null;
  isAnnouncement: boolean;
  isRead: boolean;
  readAt: Date | null;
  isEdited: boolean;
  editedAt: Date | null;
  isDeleted: boolean;
  createdAt: Date;
  /** Filled by queries that aggregate reactions; else empty. */
  reactions: ReactionSummary[];
  /** Group messages: pinned (set by group queries). */
  isPinned?: boolean;
}

/** Columns every message query selects (alias `m` for private_messages, `ua` for users_auth). */
export const MESSAGE_COLUMNS = `m.id::text AS id, m.conversation_id, m.seq::text AS seq, m.sender_id, ua.username AS sender_username,
  m.recipient_id, m.group_id, m.key_id, m.nonce, m.ciphertext, m.reply_to::text AS reply_to, m.client_message_id, m.mentions,
  m.is_announcement, m.is_read, m.read_at, m.is_edited, m.edited_at, m.is_deleted, m.created_at`;

/** The join that brings the sender's username (users ids are decimal text on our side). */
export const SENDER_JOIN = `LEFT JOIN users_auth ua ON ua.user_id = m.sender_id::bigint`;

/**
 * SQL condition: message `m` is not hidden from the viewer whose id is the bind parameter
 * `viewer` (e.g. '$2') by a deletion for them alone nor by their deletion of its
 * conversation (PROTOCOL §6 "deleted-for-me ones vanish for that user").
 */
export const notHiddenFor = (viewer: string): string =>
  `NOT EXISTS (SELECT 1 FROM message_deletions d WHERE d.message_id = m.id AND d.user_id = ${viewer})
   AND m.seq > COALESCE((SELECT up_to_seq FROM conversation_deletions cd WHERE cd.conversation_id = m.conversation_id AND cd.user_id = ${viewer}), 0)`;

/** Map a row selected with {@link MESSAGE_COLUMNS} to a {@link MessageRecord}. */
export function toMessageRecord(r: Record<string, unknown>): MessageRecord {
  const deleted = r.is_deleted === true;
  const ciphertext = r.ciphertext == null ? null : toBuffer(r.ciphertext);
  return {
    id: r.id as string,
    conversationId: r.conversation_id as string,
    seq: Number(r.seq),
    senderId: r.sender_id as string,
    senderUsername: (r.sender_username as string | null) ?? null,
    recipientId: (r.recipient_id as string | null) ?? null,
    groupId: (r.group_id as string | null) ?? null,
    // Only a deleted row has no body. One that is not deleted and has none is left sealed with
    // what it holds, so opening it fails authentication like any other broken body (logged, not
    // shown) instead of showing as an empty message (audit 10, F4).
    sealed: deleted ? null : { keyId: (r.key_id as string | null) ?? '', nonce: r.nonce == null ? EMPTY : toBuffer(r.nonce), ciphertext: ciphertext ?? EMPTY },
    replyTo: (r.reply_to as string | null) ?? null,
    clientMessageId: (r.client_message_id as string | null) ?? null,
    mentions: (r.mentions as unknown[] | null) ?? null,
    isAnnouncement: r.is_announcement === true,
    isRead: r.is_read === true,
    readAt: (r.read_at as Date | null) ?? null,
    isEdited: r.is_edited === true,
    editedAt: (r.edited_at as Date | null) ?? null,
    isDeleted: deleted,
    createdAt: r.created_at as Date,
    reactions: [],
    isPinned: r.is_pinned === undefined ? undefined : r.is_pinned === true,
  };
}

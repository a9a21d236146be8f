/**
 * Outbound frames (PROTOCOL §2–§6, §11): builders for the objects the server sends.
 * Timestamps are ISO-8601 UTC strings except `pong`/`test_response` (epoch ms).
 */
import type { MessageRecord } from '../store/types.ts';
import type { UserInfo } from '../store/users.ts';
import type { AuthErrorCode, ChatError } from './errors.ts';

/** ISO-8601 UTC of a Date (or null). */
export const iso = (d: Date | null | undefined): string | null => (d ? d.toISOString() : null);
/** Now, ISO-8601 UTC. */
export const nowIso = (): string => new Date().toISOString();

/** A stored message with its plaintext, as the chat layer hands it to the builders. */
export type DirectView = Omit<MessageRecord, 'sealed' | 'groupId' | 'mentions' | 'isAnnouncement' | 'isPinned'> & { content: string };

/** Message object `M` (PROTOCOL §6). */
export function messageM(v: DirectView): Record<string, unknown> {
  return {
    id: v.id,
    messageId: v.id,
    conversationId: v.conversationId,
    senderId: v.senderId,
    recipientId: v.recipientId,
    username: v.senderUsername,
    content: v.content,
    timestamp: v.createdAt.toISOString(),
    isRead: v.isRead,
    readAt: iso(v.readAt),
    replyTo: v.replyTo,
    isEdited: v.isEdited,
    editedAt: iso(v.editedAt),
    isDeleted: v.isDeleted,
    seq: v.seq,
    clientMessageId: v.clientMessageId,
    reactions: v.reactions,
  };
}

/** `auth_success.user` and friends (PROTOCOL §3 item 4). */
export function userObject(u: UserInfo): Record<string, unknown> {
  return { id: u.id, username: u.username, email: u.email, displayName: u.displayName, firstName: u.firstName, lastName: u.lastName };
}

/** `connected` welcome frame (§3 item 1). */
export const connectedFrame = (clientId: string) => ({ type: 'connected', clientId, requiresAuth: true, message: 'Please authenticate', timestamp: nowIso() });

/** `auth_success` (§3 item 4): nested `user` and the flat fields old clients read. */
export function authSuccessFrame(u: UserInfo, expiresAtMs: number, cursor: string) {
  return {
    type: 'auth_success',
    user: userObject(u),
    userId: u.id,
    username: u.username,
    displayName: u.displayName,
    expiresAt: new Date(expiresAtMs).toISOString(),
    cursor,
    timestamp: nowIso(),
  };
}

/** `auth_error` (§3 item 4): `error` repeats `message` for old clients. */
export const authErrorFrame = (code: AuthErrorCode, message: string) => ({ type: 'auth_error', code, message, error: message, timestamp: nowIso() });

/** `error` frame (§2.2) from a ChatError; `errorId` for INTERNAL_ERROR. */
export function errorFrame(err: ChatError, errorId?: string): Record<string, unknown> {
  const f: Record<string, unknown> = { type: 'error', code: err.code, message: err.message };
  if (err.extra.details !== undefined) f.details = err.extra.details;
  if (err.extra.field !== undefined) f.field = err.extra.field;
  if (err.extra.retryAfter !== undefined) f.retryAfter = err.extra.retryAfter;
  if (errorId) f.errorId = errorId;
  f.timestamp = nowIso();
  return f;
}

/** Serialise a reply, adding `requestId` when the inbound frame had one (§2). */
export function serialize(frame: object, requestId?: string): string {
  return JSON.stringify(requestId === undefined ? frame : { ...frame, requestId });
}

/** A mention (PROTOCOL §7): a member, or everyone. */
export type Mention = { type: 'user'; userId: string; username: string } | { type: 'everyone' };

/** Group message object `G` (PROTOCOL §7). */
export function groupG(v: DirectView & { groupId: string | null; mentions: unknown[] | null; isAnnouncement: boolean; isPinned?: boolean }): Record<string, unknown> {
  return {
    id: v.id,
    messageId: v.id,
    groupId: v.groupId,
    senderId: v.senderId,
    username: v.senderUsername,
    content: v.content,
    timestamp: v.createdAt.toISOString(),
    replyTo: v.replyTo,
    mentions: v.mentions ?? [],
    isEdited: v.isEdited,
    editedAt: iso(v.editedAt),
    isAnnouncement: v.isAnnouncement,
    isPinned: v.isPinned ?? false,
    seq: v.seq,
    clientMessageId: v.clientMessageId,
    reactions: v.reactions,
  };
}

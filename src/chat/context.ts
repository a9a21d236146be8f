/**
 * What every chat service shares: the acting user, dependencies, and small helpers
 * (rate limit, publish, open a sealed body). No socket code here: events leave through
 * the {@link Bus}, replies are returned to the gateway.
 */
import type { BodyCipher } from '../crypto/cipher.ts';
import { TamperedError, type UnreadableReason } from '../crypto/cipher.ts';
import type { Bus } from '../fanout/bus.ts';
import type { Logger } from '../observability/logger.ts';
import type { RelationPolicy } from '../policy/relations.ts';
import type { LimitKind, RateLimits } from '../policy/rateLimits.ts';
import type { Presence } from '../presence/presence.ts';
import { ChatError, badRequest, notFound, type ErrorCode } from '../protocol/errors.ts';
import { nowIso, type DirectView } from '../protocol/outbound.ts';
import type { Stores } from '../store/index.ts';
import { MAX_DISTINCT_REACTIONS, MAX_REACTIONS_PER_USER } from '../store/reactions.ts';
import type { MessageRecord } from '../store/types.ts';
import { openBody, sealBody } from './bodySeal.ts';

/** The authenticated user behind a command, and the connection it came on. */
export interface Actor {
  userId: string;
  username: string;
  displayName: string;
  /** The sending connection's id (excluded from broadcasts: it gets the direct reply). */
  connId: string;
}

/** Settings the chat layer reads (a slice of Config). */
export interface ChatSettings {
  editWindowMs: number;
  typingTimeoutMs: number;
  maxGroupSize: number;
  defaultGroupMaxMembers: number;
  syncRetentionDays: number;
  groupPurgeDays: number;
  /** SEND_QUEUE_LIMIT_BYTES: replies that may be large (a sync page) are kept to about half of it, bytes. */
  sendQueueLimitBytes: number;
  /** MAX_GROUPS_PER_USER: most groups one user may be in (./groupCap.ts). */
  maxGroupsPerUser: number;
}

/** Dependencies of the chat services, built by the composition root. */
export interface ChatDeps {
  stores: Stores;
  cipher: BodyCipher;
  relations: RelationPolicy;
  limits: RateLimits;
  bus: Bus;
  presence: Presence;
  settings: ChatSettings;
  logger: Logger;
  /** A stored body could not be opened (metrics: chat_bodies_unreadable_total). */
  onUnreadable?: (reason: UnreadableReason) => void;
}

/** A reply frame (without requestId) for the actor's connection. */
export type Reply = Record<string, unknown> & { type: string; [AFTER_REPLY]?: AfterReply[] };

/** Work run after the reply was written; `sendOwn` writes a frame to the actor's originating connection only. */
export type AfterReply = (sendOwn: (frame: object) => void) => void;

/** Key of work to run right after the reply is written (symbol keys are not serialised). */
export const AFTER_REPLY: unique symbol = Symbol('afterReply');

/** Run `fn` after `reply` has been sent on the actor's connection (e.g. PROTOCOL §7 `member_left` after `left_group`). */
export function afterReply(reply: Reply, fn: AfterReply): Reply {
  (reply[AFTER_REPLY] ??= []).push(fn);
  return reply;
}

/** Take one point of `kind` for the actor; throws RATE_LIMITED with `retryAfter` (s) when over (PROTOCOL §4). */
export async function rateLimit(deps: ChatDeps, kind: LimitKind, userId: string): Promise<void> {
  const wait = await deps.limits.consume(kind, userId);
  if (wait !== null) throw new ChatError('RATE_LIMITED', 'Too many requests; slow down', { retryAfter: wait });
}

/** Publish one event (serialised once) to `userIds`, skipping the actor's connection. */
export function publish(deps: ChatDeps, userIds: readonly string[], frame: object, exceptConnId?: string): void {
  if (userIds.length === 0) return;
  deps.bus.publish({ userIds, frame: JSON.stringify(frame), exceptConnId, publishedAt: Date.now() });
}

/**
 * The earlier message a send with a reused idempotency key (`clientMessageId`, unique per
 * sender) resolved to, opened for the duplicate ack (PROTOCOL §6 rules, §7).
 * @param existing the sender's stored message with that key
 * @param conversationId the conversation (`conv_…`) or group (`group_…`) of the retry
 * @returns the earlier message with its body decrypted
 * @throws ChatError BAD_REQUEST (field `clientMessageId`) when the key was used for a message
 *   in another conversation or group: that is not a retry, and answering it with the other
 *   message's ack would tell the client a message was sent that was not
 * @throws Error when the stored body fails authentication (the gateway answers INTERNAL_ERROR with an errorId)
 */
export function openDuplicate(deps: ChatDeps, existing: MessageRecord, conversationId: string): DirectView {
  if (existing.conversationId !== conversationId) {
    throw badRequest('clientMessageId was already used for a message in another conversation; use a new one for a new message', 'clientMessageId');
  }
  const view = openRecord(deps, existing);
  if (!view) throw new Error('stored message of a duplicate send could not be decrypted');
  return view;
}

/**
 * Refusals that a retry of a stored send may meet only because something changed after
 * the send was stored: the send budget is spent, a block or unfollow, the recipient
 * deleted, removal from the group or a lost admin role (`send_announcement`), the
 * replied-to message deleted. BAD_REQUEST is left out (a malformed send was never stored).
 */
const RETRY_REFUSALS: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['RATE_LIMITED', 'USER_BLOCKED', 'NOT_FOLLOWING', 'NOT_FOUND', 'INSUFFICIENT_PERMISSIONS']);

/**
 * The answer to a send refused before its insert when it is a retry (PROTOCOL §6 rules:
 * "Retrying a send with the same clientMessageId returns the original ack"; §7 for
 * groups; docs/PROTOCOL-NOTES.md "A retry is answered before limits and relationship
 * checks"). Called only once the send was refused, so a fresh send never pays this
 * lookup: its duplicates are found by the insert itself (store/messages.ts).
 * Over the send budget the lookup takes one point of the `read` budget instead (a
 * refused send otherwise costs the database nothing); with that spent too, the refusal stands.
 * @param actor the sender
 * @param clientMessageId the send's idempotency key, if any
 * @param refusal what the send's checks threw
 * @returns the sender's stored message with that key (the caller answers with its
 *   duplicate ack, see {@link openDuplicate}, which refuses a key used elsewhere)
 * @throws `refusal` unchanged when it is not a ChatError in {@link RETRY_REFUSALS}, there
 *   is no key, no message has that key, or the read budget is spent; DbUnavailableError
 *   when the lookup fails (SERVICE_UNAVAILABLE)
 */
export async function storedRetry(deps: ChatDeps, actor: Actor, clientMessageId: string | undefined, refusal: unknown): Promise<MessageRecord> {
  if (!clientMessageId || !(refusal instanceof ChatError) || !RETRY_REFUSALS.has(refusal.code)) throw refusal;
  if (refusal.code === 'RATE_LIMITED' && (await deps.limits.consume('read', actor.userId)) !== null) throw refusal;
  const existing = await deps.stores.messages.findByClientId(actor.userId, clientMessageId);
  if (!existing) throw refusal;
  return existing;
}

/**
 * Decrypt a record into a view. A body that fails authentication is reported in the log
 * (message id and key id only) and resolved as null: it is never shown.
 */
export function openRecord(deps: ChatDeps, r: MessageRecord): DirectView | null {
  let content = '';
  if (r.sealed) {
    try {
      content = openBody(deps.cipher, r.sealed, r, r.editedAt);
    } catch (err) {
      if (err instanceof TamperedError) {
        deps.logger.error('stored message failed authentication (tampered or wrong key)', { messageId: r.id, keyId: err.keyId, reason: err.reason });
        deps.onUnreadable?.(err.reason);
        return null;
      }
      throw err;
    }
  }
  return { ...r, content };
}

/** Decrypt many, dropping (and reporting) tampered ones. */
export function openAll(deps: ChatDeps, rs: readonly MessageRecord[]): DirectView[] {
  const out: DirectView[] = [];
  for (const r of rs) {
    const v = openRecord(deps, r);
    if (v) out.push(v);
  }
  return out;
}

/** `conv_<a>_<b>` with the two ids ordered as strings (PROTOCOL §6). */
export function directConversationId(a: string, b: string): { id: string; userA: string; userB: string } {
  const [userA, userB] = a < b ? [a, b] : [b, a];
  return { id: `conv_${userA}_${userB}`, userA, userB };
}

/**
 * A message the actor may act on by id: it exists, is visible to them (not deleted for
 * them or for everyone), and they are a DM participant, or, for a group message, not in
 * a block with its sender (a member never sees such messages, PROTOCOL §5). Group
 * membership is the groups service's check. Throws NOT_FOUND (existence never leaked).
 */
export async function findVisible(deps: ChatDeps, actor: Actor, messageId: string): Promise<MessageRecord> {
  const msg = await deps.stores.messages.getForViewer(messageId, actor.userId);
  if (!msg) throw notFound('Message', 'messageId');
  if (!msg.groupId && msg.senderId !== actor.userId && msg.recipientId !== actor.userId) throw notFound('Message', 'messageId');
  if (msg.groupId && msg.senderId !== actor.userId && (await deps.relations.isBlocked(actor.userId, msg.senderId))) throw notFound('Message', 'messageId');
  return msg;
}

/**
 * Refuse an action on the DM `msg` that its other participant would be shown (a reaction,
 * an edit) while a block exists between the two, either way (PROTOCOL §5: nothing new
 * crosses a block, as for a send; docs/PROTOCOL-NOTES.md "Direct messages across a
 * block"). Uses the cached relation lookup (RELATION_CACHE_MS). A group message or a
 * message with no other participant passes.
 * @throws ChatError USER_BLOCKED; SERVICE_UNAVAILABLE when the block lookup fails (fail closed)
 */
export async function assertNoDmBlock(deps: ChatDeps, actor: Actor, msg: MessageRecord): Promise<void> {
  const other = dmPeer(actor.userId, msg);
  if (other !== null && (await deps.relations.isBlocked(actor.userId, other))) {
    throw new ChatError('USER_BLOCKED', 'You cannot interact with this user');
  }
}

/**
 * The other participant of a DM for `userId`: the recipient when `userId` sent it, else
 * the sender; null for a group message or a DM with no other participant.
 */
export function dmPeer(userId: string, msg: { senderId: string; recipientId: string | null; groupId: string | null }): string | null {
  if (msg.groupId || !msg.recipientId) return null;
  const other = msg.senderId === userId ? msg.recipientId : msg.senderId;
  return other === userId ? null : other;
}

/**
 * Add or remove the actor's `reaction` on `msg` and build the event (PROTOCOL §6
 * `reaction_added`/`reaction_removed` with `conversationId`; §7 `group_reaction_*` with
 * `groupId`). REACTION_EXISTS / REACTION_NOT_FOUND; past MAX_REACTIONS_PER_USER or
 * MAX_DISTINCT_REACTIONS (docs/PROTOCOL-NOTES.md "Reactions per message") GROUP_FULL with
 * `field: "reaction"`, nothing changed.
 */
export async function applyReaction(deps: ChatDeps, actor: Actor, msg: MessageRecord, reaction: string, add: boolean): Promise<Reply> {
  let at: Date;
  if (add) {
    const added = await deps.stores.reactions.add(msg.id, actor.userId, reaction);
    if (added.status === 'exists') throw new ChatError('REACTION_EXISTS', 'You already reacted with this', { field: 'reaction' });
    if (added.status === 'user_limit') {
      throw new ChatError('GROUP_FULL', `You already have ${MAX_REACTIONS_PER_USER} reactions on this message: remove one first`, {
        field: 'reaction',
        details: `reaction limit ${MAX_REACTIONS_PER_USER} per user per message`,
      });
    }
    if (added.status === 'message_limit') {
      throw new ChatError('GROUP_FULL', `This message already has ${MAX_DISTINCT_REACTIONS} different reactions: use one of them`, {
        field: 'reaction',
        details: `reaction limit ${MAX_DISTINCT_REACTIONS} distinct per message`,
      });
    }
    at = added.at;
  } else {
    if (!(await deps.stores.reactions.remove(msg.id, actor.userId, reaction))) throw new ChatError('REACTION_NOT_FOUND', 'No such reaction of yours', { field: 'reaction' });
    at = new Date();
  }
  const where = msg.groupId ? { groupId: msg.groupId } : { conversationId: msg.conversationId };
  return {
    type: `${msg.groupId ? 'group_' : ''}reaction_${add ? 'added' : 'removed'}`,
    messageId: msg.id,
    ...where,
    reaction: { userId: actor.userId, username: actor.username, reaction, timestamp: at.toISOString() },
    emoji: reaction,
    timestamp: nowIso(),
  };
}

/**
 * Replace the body of the actor's own message within EDIT_WINDOW_MS (PROTOCOL §6, §7).
 * Resolves `editedAt`. INSUFFICIENT_PERMISSIONS for another's message, EDIT_WINDOW_EXPIRED,
 * NOT_FOUND when it was deleted meanwhile.
 */
export async function editBody(deps: ChatDeps, actor: Actor, msg: MessageRecord, newContent: string): Promise<Date> {
  if (msg.senderId !== actor.userId) throw new ChatError('INSUFFICIENT_PERMISSIONS', 'Only the sender can edit a message');
  const window = deps.settings.editWindowMs;
  if (window > 0 && Date.now() - msg.createdAt.getTime() > window) throw new ChatError('EDIT_WINDOW_EXPIRED', 'The edit window has passed');
  // The edit time is bound into the body (./bodySeal.ts), so it is chosen here and stored as is.
  const at = new Date();
  const editedAt = await deps.stores.messages.edit(msg.id, sealBody(deps.cipher, msg, newContent, at), at);
  if (!editedAt) throw notFound('Message', 'messageId');
  return editedAt;
}

/**
 * The view of a message just stored by `actor` (not read, edited or deleted yet; no
 * reactions): the one the send paths render as M or G.
 */
export function freshView(actor: Actor, m: { id: string; conversationId: string; recipientId: string | null; content: string; replyTo?: string | null; clientMessageId?: string }, stored: { seq: number; createdAt: Date }): DirectView {
  return {
    id: m.id,
    conversationId: m.conversationId,
    seq: stored.seq,
    senderId: actor.userId,
    senderUsername: actor.username,
    recipientId: m.recipientId,
    content: m.content,
    createdAt: stored.createdAt,
    isRead: false,
    readAt: null,
    replyTo: m.replyTo ?? null,
    isEdited: false,
    editedAt: null,
    isDeleted: false,
    clientMessageId: m.clientMessageId ?? null,
    reactions: [],
  };
}

/**
 * Direct messages (PROTOCOL §6) with the relationship rules of §5: send (idempotent by
 * clientMessageId), start a conversation, list conversations, history, edit, delete,
 * delete a conversation. Reactions and read receipts are in `messageActions.ts`.
 * Nothing is acknowledged or delivered before the row is committed (§9).
 */
import { v7 as uuidv7 } from 'uuid';
import { ChatError, badRequest, notFound } from '../protocol/errors.ts';
import { messageM, nowIso, type DirectView } from '../protocol/outbound.ts';
import type { MessageRecord } from '../store/types.ts';
import type { Page } from '../store/history.ts';
import { assertNoDmBlock, directConversationId, editBody, findVisible, freshView, openDuplicate, openRecord, publish, rateLimit, storedRetry, type Actor, type ChatDeps, type Reply } from './context.ts';
import { sealBody } from './bodySeal.ts';
import { pageBudgetBytes, takeWithinBytes } from './pageBytes.ts';

/** `send_private_message` fields after validation. */
export interface SendDirect {
  recipientId: string;
  content: string;
  replyTo?: string | null;
  clientMessageId?: string;
}

/** Operations on group messages that arrive through DM-named commands (set by the groups service). */
export interface GroupMessageOps {
  edit(actor: Actor, msg: MessageRecord, newContent: string): Promise<Reply>;
  delete(actor: Actor, msg: MessageRecord, deleteForEveryone: boolean | undefined): Promise<Reply>;
}

const HISTORY_DEFAULT = 50;

/** Direct-message service. */
export class DirectMessages {
  /** Set by the groups service so `edit_message`/`delete_message` on a group message act as §7's. */
  groupOps: GroupMessageOps | undefined;

  constructor(private readonly deps: ChatDeps) {}

  /**
   * `send_private_message` → `private_message_sent` (PROTOCOL §6). A retry of a stored
   * send (same clientMessageId) gets the original ack with `duplicate:true`, also when a
   * new message would now be refused (rate limit, block, follow rule): see {@link storedRetry}.
   * @throws ChatError RATE_LIMITED, BAD_REQUEST, NOT_FOUND, USER_BLOCKED, NOT_FOLLOWING,
   *   SERVICE_UNAVAILABLE (PROTOCOL §2.2, §4, §5)
   */
  async send(actor: Actor, cmd: SendDirect): Promise<Reply> {
    const { deps } = this;
    const conv = directConversationId(actor.userId, cmd.recipientId);
    let quoted: DirectView | null;
    try {
      quoted = await this.admit(actor, cmd, conv.id);
    } catch (refusal) {
      return duplicateAck(deps, await storedRetry(deps, actor, cmd.clientMessageId, refusal), conv.id);
    }
    const id = uuidv7();
    const sealed = sealBody(deps.cipher, { id, conversationId: conv.id, senderId: actor.userId, recipientId: cmd.recipientId, groupId: null }, cmd.content, null);
    const res = await deps.stores.messages.insert({
      id,
      conversationId: conv.id,
      kind: 'direct',
      userA: conv.userA,
      userB: conv.userB,
      senderId: actor.userId,
      recipientId: cmd.recipientId,
      groupId: null,
      sealed,
      replyTo: cmd.replyTo ?? null,
      clientMessageId: cmd.clientMessageId ?? null,
      mentions: null,
      isAnnouncement: false,
    });
    if (res.duplicate) return duplicateAck(deps, res.existing, conv.id);
    const view = freshView(actor, { id, conversationId: conv.id, recipientId: cmd.recipientId, content: cmd.content, replyTo: cmd.replyTo, clientMessageId: cmd.clientMessageId }, res);
    const m = messageM(view);
    const event: Record<string, unknown> = { type: 'new_private_message', message: m, timestamp: m.timestamp };
    if (quoted) event.replyTo = { messageId: quoted.id, content: quoted.content, username: quoted.senderUsername, timestamp: quoted.createdAt.toISOString() };
    publish(deps, [cmd.recipientId], event);
    const ack = sentAck(view, m);
    publish(deps, [actor.userId], ack, actor.connId);
    return ack;
  }

  /**
   * The checks a new message passes before it is stored, in order: a point of
   * MESSAGE_RATE_LIMIT (§4), not to oneself, the relationship rules (§5: block first,
   * then the follow rule), and a replied-to message in this conversation.
   * @returns the replied-to message, opened (null without `replyTo`)
   * @throws ChatError as {@link send}
   */
  private async admit(actor: Actor, cmd: SendDirect, conversationId: string): Promise<DirectView | null> {
    const { deps } = this;
    await rateLimit(deps, 'message', actor.userId);
    if (cmd.recipientId === actor.userId) throw badRequest('Cannot send a direct message to yourself', 'recipientId');
    await deps.relations.assertCanMessage(actor.userId, cmd.recipientId);
    if (!cmd.replyTo) return null;
    const target = await deps.stores.messages.getForViewer(cmd.replyTo, actor.userId);
    const quoted = target && target.conversationId === conversationId ? openRecord(deps, target) : null;
    if (!quoted) throw notFound('Replied-to message', 'replyTo');
    return quoted;
  }

  /**
   * `start_conversation` → `conversation_started` with the newest 50 messages (PROTOCOL §6),
   * fewer when they pass the page byte budget ({@link fitPage}: then `hasMore`, and the client
   * pages on with `get_private_messages`, `before` the oldest `seq` or `offset` the count).
   */
  async start(actor: Actor, recipientId: string): Promise<Reply> {
    const { deps } = this;
    if (recipientId === actor.userId) throw badRequest('Cannot start a conversation with yourself', 'recipientId');
    await deps.relations.assertCanMessage(actor.userId, recipientId);
    const conv = directConversationId(actor.userId, recipientId);
    const [users, online, page] = await Promise.all([
      deps.stores.users.byIds([recipientId]),
      deps.presence.onlineAmong([recipientId]),
      deps.stores.history.page(conv.id, actor.userId, { limit: HISTORY_DEFAULT }),
    ]);
    const u = users.get(recipientId);
    if (!u) throw notFound('User', 'recipientId');
    const fit = fitPage(deps, page);
    return {
      type: 'conversation_started',
      conversationId: conv.id,
      recipient: { id: u.id, username: u.username, displayName: u.displayName, online: online.has(u.id) },
      messages: fit.messages,
      hasMore: fit.hasMore,
      timestamp: nowIso(),
    };
  }

  /** `get_conversations` → `conversations`, newest activity first, cursor-paged (PROTOCOL §6); `online` is never shown across a block (§5). */
  async list(actor: Actor, limit = 50, before?: string): Promise<Reply> {
    const { deps } = this;
    const pos = before ? decodeListCursor(before) : undefined;
    const { rows, hasMore } = await deps.stores.history.conversations(actor.userId, limit, pos);
    const others = rows.map((r) => r.otherUserId);
    const [users, online, blocked] = await Promise.all([deps.stores.users.byIds(others), deps.presence.onlineAmong(others), deps.stores.relations.blockedWith(actor.userId)]);
    const conversations = rows.map((r) => {
      const u = users.get(r.otherUserId);
      const last = r.lastMessage ? openRecord(deps, r.lastMessage) : null;
      return {
        conversationId: r.conversationId,
        otherUser: { id: r.otherUserId, username: u?.username ?? null, displayName: u?.displayName ?? null, online: online.has(r.otherUserId) && !blocked.has(r.otherUserId) },
        lastMessage: last ? messageM(last) : null,
        unreadCount: r.unreadCount,
        updatedAt: r.updatedAt.toISOString(),
      };
    });
    const lastRow = rows[rows.length - 1];
    return {
      type: 'conversations',
      conversations,
      hasMore,
      nextBefore: hasMore && lastRow ? encodeListCursor(lastRow.updatedAt, lastRow.conversationId) : null,
      timestamp: nowIso(),
    };
  }

  /**
   * `get_private_messages` → `private_message_history` (PROTOCOL §6): offset 0 = newest page,
   * oldest first. A page whose messages pass the byte budget keeps its newest ones
   * ({@link fitPage}) with `hasMore:true` and `limit` = the messages it covers, so the next
   * page (`offset + limit`, or `before` its oldest `seq`) starts at the first one left out.
   */
  async history(actor: Actor, cmd: { recipientId?: string; conversationId?: string; limit?: number; offset?: number; before?: number }): Promise<Reply> {
    const { deps } = this;
    const conversationId = await this.resolveConversation(actor, cmd.conversationId, cmd.recipientId);
    const limit = cmd.limit ?? HISTORY_DEFAULT;
    const offset = cmd.before !== undefined ? 0 : (cmd.offset ?? 0);
    const page = await deps.stores.history.page(conversationId, actor.userId, { limit, offset, before: cmd.before });
    const fit = fitPage(deps, page);
    return {
      type: 'private_message_history',
      conversationId,
      messages: fit.messages,
      hasMore: fit.hasMore,
      total: page.total,
      offset,
      limit: fit.cut ? fit.covered : limit,
      timestamp: nowIso(),
    };
  }

  /**
   * `edit_message` (alias `edit_private_message`) → `message_edited` to both participants
   * (PROTOCOL §6). On a DM across a block: USER_BLOCKED, checked before the sender rule
   * (§5; SERVICE_UNAVAILABLE when the block lookup fails).
   */
  async edit(actor: Actor, messageId: string, newContent: string): Promise<Reply> {
    const { deps } = this;
    await rateLimit(deps, 'action', actor.userId);
    const msg = await this.visible(actor, messageId);
    if (msg.groupId) return this.requireGroupOps().edit(actor, msg, newContent);
    await assertNoDmBlock(deps, actor, msg);
    const editedAt = await editBody(deps, actor, msg, newContent);
    const event = { type: 'message_edited', messageId: msg.id, conversationId: msg.conversationId, newContent, editedAt: editedAt.toISOString(), timestamp: nowIso() };
    publish(deps, participants(msg), event, actor.connId);
    return event;
  }

  /**
   * `delete_message` / `delete_private_message` → `message_deleted` (PROTOCOL §6). Default
   * `deleteForEveryone`: false for delete_message; for delete_private_message true when the
   * caller is the sender. On a group message the same defaults apply, and the groups
   * service answers (`group_message_deleted`, §7 permissions). Allowed across a block
   * (a user may always remove their own content; the tombstone to the other participant
   * only removes what they already had).
   */
  async delete(actor: Actor, messageId: string, deleteForEveryone: boolean | undefined, privateAlias: boolean): Promise<Reply> {
    const { deps } = this;
    await rateLimit(deps, 'action', actor.userId);
    const msg = await this.visible(actor, messageId);
    // §6's defaults hold for these DM-named commands on a group message too (§7's default is for delete_group_message).
    const everyone = deleteForEveryone ?? (privateAlias && msg.senderId === actor.userId);
    if (msg.groupId) return this.requireGroupOps().delete(actor, msg, everyone);
    if (everyone) {
      if (msg.senderId !== actor.userId) throw new ChatError('INSUFFICIENT_PERMISSIONS', 'Only the sender can delete a message for everyone');
      if (!(await deps.stores.messages.deleteForEveryone(msg.id, actor.userId))) throw notFound('Message', 'messageId');
    } else {
      await deps.stores.messages.deleteForUser(msg.id, actor.userId);
    }
    const event = { type: 'message_deleted', messageId: msg.id, conversationId: msg.conversationId, deleteForEveryone: everyone, timestamp: nowIso() };
    publish(deps, everyone ? participants(msg) : [actor.userId], event, actor.connId);
    return event;
  }

  /** `delete_conversation` → `conversation_deleted` (for me: the actor's devices; for everyone: both participants). */
  async deleteConversation(actor: Actor, conversationId: string, deleteForEveryone = false): Promise<Reply> {
    const { deps } = this;
    await rateLimit(deps, 'action', actor.userId);
    const conv = await deps.stores.history.conversation(conversationId);
    if (!conv || conv.kind !== 'direct' || (conv.userA !== actor.userId && conv.userB !== actor.userId)) throw notFound('Conversation', 'conversationId');
    if (deleteForEveryone) await deps.stores.history.deleteConversationForEveryone(conversationId, actor.userId);
    else await deps.stores.history.deleteConversationForUser(conversationId, actor.userId);
    const event = { type: 'conversation_deleted', conversationId, deleteForEveryone, timestamp: nowIso() };
    publish(deps, deleteForEveryone ? [conv.userA!, conv.userB!] : [actor.userId], event, actor.connId);
    return event;
  }

  /**
   * A message the actor may act on (see {@link findVisible}); group messages are returned
   * for the groups service to check membership. Throws NOT_FOUND.
   */
  visible(actor: Actor, messageId: string): Promise<MessageRecord> {
    return findVisible(this.deps, actor, messageId);
  }

  private requireGroupOps(): GroupMessageOps {
    if (!this.groupOps) throw notFound('Message', 'messageId');
    return this.groupOps;
  }

  /** The DM conversation named by id (must include the actor) or by the other user. Throws NOT_FOUND. */
  private async resolveConversation(actor: Actor, conversationId?: string, recipientId?: string): Promise<string> {
    if (conversationId !== undefined) {
      const m = /^conv_(\d+)_(\d+)$/.exec(conversationId);
      if (!m || (m[1] !== actor.userId && m[2] !== actor.userId)) throw notFound('Conversation', 'conversationId');
      const ids = directConversationId(m[1]!, m[2]!);
      if (ids.id !== conversationId) throw notFound('Conversation', 'conversationId');
      return conversationId;
    }
    return directConversationId(actor.userId, recipientId!).id;
  }
}

/**
 * A DM history page (oldest first) as M objects, cut to the page byte budget (half of
 * SEND_QUEUE_LIMIT_BYTES, bytes; audit 7, F5): the newest messages are kept, at least one,
 * and the older ones left for the next page. `covered`: the page's records the reply
 * accounts for (undecryptable ones are not shown but count, as for `offset`); `cut`: some
 * were left out, and then `hasMore` is true (older messages exist).
 */
function fitPage(deps: ChatDeps, page: Page): { messages: Record<string, unknown>[]; hasMore: boolean; cut: boolean; covered: number } {
  const render = (r: MessageRecord): Record<string, unknown> | null => {
    const v = openRecord(deps, r);
    return v ? messageM(v) : null;
  };
  const fit = takeWithinBytes(page.messages, render, pageBudgetBytes(deps.settings), true);
  const cut = fit.taken < page.messages.length;
  return { messages: fit.views, hasMore: page.hasMore || cut, cut, covered: fit.taken };
}

/** The two participants of a DM. */
export function participants(msg: { senderId: string; recipientId: string | null }): string[] {
  return msg.recipientId && msg.recipientId !== msg.senderId ? [msg.senderId, msg.recipientId] : [msg.senderId];
}

/** The ack of a retried send: the stored message's `private_message_sent` with `duplicate:true` (BAD_REQUEST for a key used in another conversation, see openDuplicate). */
function duplicateAck(deps: ChatDeps, existing: MessageRecord, conversationId: string): Reply {
  return { ...sentAck(openDuplicate(deps, existing, conversationId)), duplicate: true };
}

function sentAck(view: DirectView, m = messageM(view)): Reply {
  return {
    type: 'private_message_sent',
    message: m,
    messageId: view.id,
    conversationId: view.conversationId,
    replyTo: view.replyTo,
    clientMessageId: view.clientMessageId,
    timestamp: m.timestamp as string,
  };
}

/** Upper bound of a list cursor's time, epoch ms (the year 10000). */
const MAX_CURSOR_TIME_MS = Date.UTC(10000, 0, 1);

/** The `nextBefore` cursor of `get_conversations`: base64url of `<ISO updatedAt>|<conversationId>`. */
function encodeListCursor(updatedAt: Date, conversationId: string): string {
  return Buffer.from(`${updatedAt.toISOString()}|${conversationId}`).toString('base64url');
}

/** Decode a `get_conversations` `before` cursor; BAD_REQUEST (field `before`) unless it is one {@link encodeListCursor} could have made. */
function decodeListCursor(s: string): { updatedAt: Date; conversationId: string } {
  const [when, cid, ...rest] = Buffer.from(s, 'base64url').toString('utf8').split('|');
  const updatedAt = new Date(when ?? '');
  const t = updatedAt.getTime();
  // Only what encodeListCursor writes: an ISO time PostgreSQL can hold and a `conv_<a>_<b>` id.
  if (rest.length > 0 || !cid || !/^conv_\d{1,18}_\d{1,18}$/.test(cid) || !(t >= 0 && t < MAX_CURSOR_TIME_MS)) throw badRequest('before: not a cursor from this server', 'before');
  return { updatedAt, conversationId: cid };
}

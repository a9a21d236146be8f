/**
 * Reactions and receipts on messages (PROTOCOL §6 reactions and `mark_message_read`,
 * §9 `message_delivered` / `message_status`). DMs here; group messages are handed to the
 * groups service through {@link GroupMessageActions}.
 */
import { notFound } from '../protocol/errors.ts';
import { nowIso } from '../protocol/outbound.ts';
import type { MessageRecord } from '../store/types.ts';
import { applyReaction, assertNoDmBlock, publish, rateLimit, type Actor, type ChatDeps, type Reply } from './context.ts';
import { participants, type DirectMessages } from './direct.ts';

/** Group-message variants, implemented by the groups service. */
export interface GroupMessageActions {
  react(actor: Actor, msg: MessageRecord, reaction: string, add: boolean, dmNames: boolean): Promise<Reply>;
  markRead(actor: Actor, msg: MessageRecord): Promise<Reply>;
}

/** Reactions, read and delivery receipts. */
export class MessageActions {
  /** Set by the groups service. */
  groupActions: GroupMessageActions | undefined;

  constructor(
    private readonly deps: ChatDeps,
    private readonly direct: DirectMessages,
  ) {}

  /**
   * `add_reaction` / `remove_reaction` → `reaction_added` / `reaction_removed` to both
   * participants (PROTOCOL §6). REACTION_EXISTS / REACTION_NOT_FOUND; NOT_FOUND when
   * the actor cannot see the message; on a DM across a block (either way) USER_BLOCKED,
   * adding and removing alike (§5; SERVICE_UNAVAILABLE when the block lookup fails).
   * On a group message: §7's group reactions.
   */
  async react(actor: Actor, messageId: string, reaction: string, add: boolean): Promise<Reply> {
    const { deps } = this;
    await rateLimit(deps, 'action', actor.userId);
    const msg = await this.direct.visible(actor, messageId);
    if (msg.groupId) {
      if (!this.groupActions) throw notFound('Message', 'messageId');
      return this.groupActions.react(actor, msg, reaction, add, true);
    }
    await assertNoDmBlock(deps, actor, msg);
    const event = await applyReaction(deps, actor, msg, reaction, add);
    publish(deps, participants(msg), event, actor.connId);
    return event;
  }

  /**
   * `mark_message_read` → `message_marked_read`; the sender's devices get `message_read`
   * and `message_status {status:"read"}`, the reader's other devices `message_marked_read`
   * (PROTOCOL §6, §9). Reading one's own message changes nothing. Across a block the
   * read is recorded but the sender gets no event (§5; as in groups): the stored
   * `isRead`/`readAt` they see in history and sync is not hidden (docs/PROTOCOL-NOTES.md).
   * The block is looked up before anything is recorded, so a failing lookup refuses
   * (SERVICE_UNAVAILABLE) with nothing changed.
   */
  async markRead(actor: Actor, messageId: string): Promise<Reply> {
    const { deps } = this;
    const msg = await this.direct.visible(actor, messageId);
    if (msg.groupId) {
      if (!this.groupActions) throw notFound('Message', 'messageId');
      return this.groupActions.markRead(actor, msg);
    }
    const reply = { type: 'message_marked_read', messageId: msg.id, conversationId: msg.conversationId, timestamp: nowIso() };
    if (msg.recipientId !== actor.userId) return reply;
    const blocked = await deps.relations.isBlocked(actor.userId, msg.senderId);
    const { changed, readAt } = await deps.stores.messages.markRead(msg.id, actor.userId);
    if (changed) {
      const ts = (readAt ?? new Date()).toISOString();
      if (!blocked) {
        publish(deps, [msg.senderId], { type: 'message_read', messageId: msg.id, conversationId: msg.conversationId, readBy: actor.userId, timestamp: ts });
        publish(deps, [msg.senderId], { type: 'message_status', messageId: msg.id, conversationId: msg.conversationId, status: 'read', userId: actor.userId, timestamp: ts });
      }
      publish(deps, [actor.userId], reply, actor.connId);
    }
    return reply;
  }

  /**
   * `message_delivered {messageIds}` from a recipient device: records first delivery and
   * sends `message_status {status:"delivered"}` to each sender's devices (PROTOCOL §9).
   * Ids the actor did not receive are ignored. Reply: `message_delivered_ack {messageIds}` (the ids recorded now).
   * A sender in a block with the actor (either way) is told nothing, though the delivery
   * is recorded (§5). The senders' blocks are looked up (cached) before anything is
   * recorded: a failing lookup refuses (SERVICE_UNAVAILABLE) with nothing changed.
   */
  async delivered(actor: Actor, messageIds: readonly string[]): Promise<Reply> {
    const { deps } = this;
    const unique = [...new Set(messageIds)];
    const pending = await deps.stores.messages.undelivered(unique, actor.userId);
    if (pending.length === 0) return { type: 'message_delivered_ack', messageIds: [], timestamp: nowIso() };
    const senders = [...new Set(pending.map((m) => m.senderId))];
    const blockedFlags = await Promise.all(senders.map((id) => deps.relations.isBlocked(actor.userId, id)));
    const blocked = new Set(senders.filter((_, i) => blockedFlags[i]));
    const changed = await deps.stores.messages.markDelivered(pending.map((m) => m.id), actor.userId);
    const ts = nowIso();
    for (const m of changed) {
      if (!blocked.has(m.senderId)) publish(deps, [m.senderId], { type: 'message_status', messageId: m.id, conversationId: m.conversationId, status: 'delivered', userId: actor.userId, timestamp: ts });
    }
    return { type: 'message_delivered_ack', messageIds: changed.map((m) => m.id), timestamp: nowIso() };
  }
}

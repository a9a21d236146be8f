/**
 * Group messages (PROTOCOL §7): send (mentions, announcements), history, edit, delete,
 * reactions, read positions, pins; on the same store, crypto, policy and fan-out paths as
 * direct messages. A member never receives nor sees messages of a user with whom they
 * have a block, in either direction (§5).
 */
import { v7 as uuidv7 } from 'uuid';
import { ChatError, notFound } from '../protocol/errors.ts';
import { groupG, nowIso, type DirectView } from '../protocol/outbound.ts';
import type { AudienceMember } from '../store/groups.ts';
import { MAX_PINS_PER_GROUP } from '../store/pins.ts';
import type { MessageRecord } from '../store/types.ts';
import { applyReaction, editBody, findVisible, freshView, openDuplicate, openRecord, publish, rateLimit, storedRetry, type Actor, type ChatDeps, type Reply } from './context.ts';
import { sealBody } from './bodySeal.ts';
import type { Groups } from './groups.ts';
import { parseMentions } from './mentions.ts';
import { pageBudgetBytes, takeWithinBytes, type Fitted } from './pageBytes.ts';

/** A stored group message with plaintext, ready for {@link groupG}. */
type GroupView = DirectView & { groupId: string | null; mentions: unknown[] | null; isAnnouncement: boolean; isPinned?: boolean };

/** Group message service. */
export class GroupMessages {
  constructor(
    private readonly deps: ChatDeps,
    private readonly groups: Groups,
  ) {}

  /**
   * `send_group_message` → `group_message_sent`; members get `new_group_message`, each
   * mentioned member also `mentioned_in_group`. With `announcement` (owner/admin):
   * `send_announcement` → `announcement_sent`, members `new_announcement`, stored pinned.
   * Idempotent by clientMessageId like DMs: a retry of a stored send gets the original
   * ack with `duplicate:true`, also when a new message would now be refused (rate limit,
   * removed from the group, no longer an admin): see {@link storedRetry}.
   * @throws ChatError RATE_LIMITED, NOT_FOUND, INSUFFICIENT_PERMISSIONS, BAD_REQUEST (a key
   *   used elsewhere); DbUnavailableError (SERVICE_UNAVAILABLE)
   */
  async send(actor: Actor, cmd: { groupId: string; content: string; replyTo?: string | null; clientMessageId?: string }, announcement = false): Promise<Reply> {
    const { deps } = this;
    let visible: AudienceMember[];
    try {
      visible = await this.admit(actor, cmd, announcement);
    } catch (refusal) {
      return this.duplicateAck(await storedRetry(deps, actor, cmd.clientMessageId, refusal), cmd.groupId, announcement);
    }
    const { mentions, addressed } = parseMentions(cmd.content, visible, actor.userId);
    const id = uuidv7();
    const res = await deps.stores.messages.insert({
      id,
      conversationId: cmd.groupId,
      kind: 'group',
      senderId: actor.userId,
      recipientId: null,
      groupId: cmd.groupId,
      sealed: sealBody(deps.cipher, { id, conversationId: cmd.groupId, senderId: actor.userId, recipientId: null, groupId: cmd.groupId }, cmd.content, null),
      replyTo: cmd.replyTo ?? null,
      clientMessageId: cmd.clientMessageId ?? null,
      mentions: mentions.length ? mentions : null,
      isAnnouncement: announcement,
    });
    if (res.duplicate) return this.duplicateAck(res.existing, cmd.groupId, announcement);
    // An announcement is pinned; at the pin cap that drops the oldest pinned announcement (PROTOCOL-NOTES "Pins per group").
    const evicted = announcement ? (await deps.stores.pins.pin(cmd.groupId, id, actor.userId, true)).evicted : null;
    const g = groupG({
      ...freshView(actor, { id, conversationId: cmd.groupId, recipientId: null, content: cmd.content, replyTo: cmd.replyTo, clientMessageId: cmd.clientMessageId }, res),
      groupId: cmd.groupId,
      mentions,
      isAnnouncement: announcement,
      isPinned: announcement,
    });
    const audience = visible.filter((m) => m.userId !== actor.userId).map((m) => m.userId);
    const ts = g.timestamp as string;
    // The ack names the unpinned message only to an actor who may see it (no block with its sender, §5).
    const namedInAck = evicted ? await this.publishEviction(actor, cmd.groupId, evicted, ts) : false;
    publish(deps, audience, announcement ? { type: 'new_announcement', ...g, message: g, timestamp: ts } : { type: 'new_group_message', message: g, timestamp: ts });
    if (addressed.size > 0) {
      publish(deps, [...addressed], { type: 'mentioned_in_group', messageId: id, groupId: cmd.groupId, message: g, mentionedBy: actor.userId, mentionedByUsername: actor.username, timestamp: ts });
    }
    const ack = evicted && namedInAck ? { ...this.ack(g, announcement), unpinnedMessageId: evicted.messageId } : this.ack(g, announcement);
    publish(deps, [actor.userId], ack, actor.connId);
    return ack;
  }

  /**
   * `message_unpinned` for a pin an announcement pushed out at the pin cap, to the members
   * who may hear of the actor's activity on that message (as for an explicit unpin), the
   * actor's other devices included; the acting connection learns it from the ack's
   * `unpinnedMessageId`.
   * @returns whether the actor is among them (no block with the message's sender): only
   *   then may the ack name the message
   */
  private async publishEviction(actor: Actor, groupId: string, evicted: { messageId: string; senderId: string }, ts: string): Promise<boolean> {
    const audience = await this.audienceAbout(actor, groupId, evicted.senderId);
    publish(this.deps, audience, { type: 'message_unpinned', messageId: evicted.messageId, groupId, unpinnedBy: actor.userId, reason: 'pin_limit', timestamp: ts }, actor.connId);
    return audience.includes(actor.userId);
  }

  /**
   * The checks a new group message passes before it is stored, in order: a point of
   * MESSAGE_RATE_LIMIT (§4), membership of an active group, the admin role for an
   * announcement, a replied-to message of this group the actor can see.
   * @returns the members with no block with the actor (the audience; usernames when the
   *   content may hold mentions)
   * @throws ChatError RATE_LIMITED, NOT_FOUND, INSUFFICIENT_PERMISSIONS
   */
  private async admit(actor: Actor, cmd: { groupId: string; content: string; replyTo?: string | null }, announcement: boolean): Promise<AudienceMember[]> {
    const { deps } = this;
    await rateLimit(deps, 'message', actor.userId);
    // Usernames are only needed to resolve mentions.
    const aud = await deps.stores.groups.audience(cmd.groupId, actor.userId, cmd.content.includes('@'));
    const me = aud?.members.find((m) => m.userId === actor.userId);
    if (!aud || !aud.active || !me) throw notFound('Group', 'groupId');
    if (announcement && me.role === 'member') throw new ChatError('INSUFFICIENT_PERMISSIONS', 'Only admins can send announcements');
    if (cmd.replyTo) {
      // Only "not there" is NOT_FOUND; a lookup that failed refuses as SERVICE_UNAVAILABLE.
      const target = await findVisible(deps, actor, cmd.replyTo).catch((err: unknown) => {
        if (err instanceof ChatError && err.code === 'NOT_FOUND') return null;
        throw err;
      });
      if (!target || target.conversationId !== cmd.groupId) throw notFound('Replied-to message', 'replyTo');
    }
    return aud.members.filter((m) => !m.blockedWithActor);
  }

  /** The ack of a retried send: the stored message as G with `duplicate:true` (BAD_REQUEST for a key used elsewhere, see openDuplicate). */
  private duplicateAck(existing: MessageRecord, groupId: string, announcement: boolean): Reply {
    const view = openDuplicate(this.deps, existing, groupId);
    const g = groupG({ ...existing, ...view, isPinned: existing.isAnnouncement });
    return { ...this.ack(g, announcement), duplicate: true };
  }

  private ack(g: Record<string, unknown>, announcement: boolean): Reply {
    return announcement ? { type: 'announcement_sent', ...g, message: g, timestamp: g.timestamp } : { type: 'group_message_sent', message: g, timestamp: g.timestamp };
  }

  /**
   * `get_group_messages` → `group_messages` (offset 0 = newest page, oldest first), senders
   * blocked with the viewer left out. A page whose messages pass the byte budget (half of
   * SEND_QUEUE_LIMIT_BYTES, bytes; audit 7, F5, ./pageBytes.ts) keeps its newest ones, at
   * least one, with `hasMore:true` and `limit` = the messages it covers, so the next page
   * (`offset + limit`, or `before` its oldest `seq`) starts at the first one left out.
   */
  async history(actor: Actor, cmd: { groupId: string; limit?: number; offset?: number; before?: number }): Promise<Reply> {
    const { deps } = this;
    await this.groups.access(actor, cmd.groupId);
    const limit = cmd.limit ?? 50;
    const offset = cmd.before !== undefined ? 0 : (cmd.offset ?? 0);
    const blocked = await deps.stores.relations.blockedWith(actor.userId);
    const page = await deps.stores.history.page(cmd.groupId, actor.userId, { limit, offset, before: cmd.before }, [...blocked]);
    const fit = await this.render(cmd.groupId, page.messages);
    const cut = fit.taken < page.messages.length;
    return {
      type: 'group_messages',
      groupId: cmd.groupId,
      messages: fit.views,
      hasMore: page.hasMore || cut,
      total: page.total,
      offset,
      limit: cut ? fit.taken : limit,
      timestamp: nowIso(),
    };
  }

  /**
   * Decrypt and render records (oldest first) as G, with their pin state, newest first until
   * the page byte budget ({@link takeWithinBytes}); `taken`: the records covered, newest
   * first (undecryptable ones are not shown but count).
   */
  private async render(groupId: string, records: MessageRecord[]): Promise<Fitted<Record<string, unknown>>> {
    const pinned = await this.deps.stores.pins.pinnedAmong(groupId, records.map((r) => r.id));
    const one = (r: MessageRecord): Record<string, unknown> | null => {
      const v = openRecord(this.deps, r);
      return v ? groupG({ ...r, ...v, isPinned: pinned.has(v.id) }) : null;
    };
    return takeWithinBytes(records, one, pageBudgetBytes(this.deps.settings), true);
  }

  /** Members of the message's group who may see the actor's activity (no block either way). */
  private async audienceOf(actor: Actor, groupId: string): Promise<string[]> {
    const aud = await this.deps.stores.groups.audience(groupId, actor.userId, false);
    if (!aud || !aud.active || !aud.members.some((m) => m.userId === actor.userId)) throw notFound('Message', 'messageId');
    return aud.members.filter((m) => !m.blockedWithActor).map((m) => m.userId);
  }

  /**
   * Members who may hear of the actor's activity on a message of `groupId` sent by
   * `senderId` (a reaction, a pin): no block with the actor, nor with the message's sender, whose message the others never saw (§5).
   * Throws NOT_FOUND when the actor is not a member of an active group.
   */
  private async audienceAbout(actor: Actor, groupId: string, senderId: string): Promise<string[]> {
    const [byActor, bySender] = await Promise.all([
      this.audienceOf(actor, groupId),
      senderId === actor.userId ? null : this.deps.stores.groups.audience(groupId, senderId, false),
    ]);
    if (!bySender) return byActor;
    const clear = new Set(bySender.members.filter((m) => !m.blockedWithActor).map((m) => m.userId));
    return byActor.filter((id) => clear.has(id));
  }

  /** `edit_group_message` (or `edit_message` on a group message): sender only, within EDIT_WINDOW_MS. */
  async edit(actor: Actor, msg: MessageRecord, newContent: string): Promise<Reply> {
    const { deps } = this;
    const audience = await this.audienceOf(actor, msg.groupId!);
    const editedAt = await editBody(deps, actor, msg, newContent);
    const reply = { type: 'group_message_edited', messageId: msg.id, groupId: msg.groupId, newContent, editedAt: editedAt.toISOString(), timestamp: nowIso() };
    publish(deps, audience, { ...reply, editedBy: actor.userId }, actor.connId);
    return reply;
  }

  /**
   * `delete_group_message` (or `delete_message` on a group message). For everyone: the
   * sender, or an owner/admin for anyone's message; default true when the caller may.
   */
  async delete(actor: Actor, msg: MessageRecord, deleteForEveryone: boolean | undefined): Promise<Reply> {
    const { deps } = this;
    const a = await this.groups.access(actor, msg.groupId!).catch(asMessageNotFound);
    const may = msg.senderId === actor.userId || a.role !== 'member';
    const everyone = deleteForEveryone ?? may;
    if (everyone && !may) throw new ChatError('INSUFFICIENT_PERMISSIONS', "Only admins can delete others' messages for everyone");
    const reply = { type: 'group_message_deleted', messageId: msg.id, groupId: msg.groupId, deleteForEveryone: everyone, timestamp: nowIso() };
    if (everyone) {
      if (!(await deps.stores.messages.deleteForEveryone(msg.id, actor.userId))) throw notFound('Message', 'messageId');
      // Members in a block with the sender never saw the message: they are not told (§5).
      const aud = await deps.stores.groups.audience(msg.groupId!, msg.senderId, false);
      const told = (aud?.members ?? []).filter((m) => !m.blockedWithActor || m.userId === actor.userId).map((m) => m.userId);
      publish(deps, told, { ...reply, deletedBy: actor.userId }, actor.connId);
    } else {
      await deps.stores.messages.deleteForUser(msg.id, actor.userId);
      publish(deps, [actor.userId], reply, actor.connId);
    }
    return reply;
  }

  /**
   * `add_group_reaction` / `remove_group_reaction` (and DM-named reactions on a group
   * message) → `group_reaction_added` / `group_reaction_removed` to the members.
   */
  async react(actor: Actor, msg: MessageRecord, reaction: string, add: boolean): Promise<Reply> {
    const { deps } = this;
    const audience = await this.audienceAbout(actor, msg.groupId!, msg.senderId);
    const event = await applyReaction(deps, actor, msg, reaction, add);
    publish(deps, audience, event, actor.connId);
    return event;
  }

  /** `add_group_reaction` by id: the message must be a group message the actor can see. */
  async reactById(actor: Actor, messageId: string, reaction: string, add: boolean): Promise<Reply> {
    await rateLimit(this.deps, 'action', actor.userId);
    return this.react(actor, await this.groupMessage(actor, messageId), reaction, add);
  }

  /** `edit_group_message`: rate-limited (action budget) {@link edit} by id. */
  async editById(actor: Actor, messageId: string, newContent: string): Promise<Reply> {
    await rateLimit(this.deps, 'action', actor.userId);
    return this.edit(actor, await this.groupMessage(actor, messageId), newContent);
  }

  /** `delete_group_message`: rate-limited (action budget) {@link delete} by id. */
  async deleteById(actor: Actor, messageId: string, deleteForEveryone: boolean | undefined): Promise<Reply> {
    await rateLimit(this.deps, 'action', actor.userId);
    return this.delete(actor, await this.groupMessage(actor, messageId), deleteForEveryone);
  }

  /** A visible group message by id (not from a user in a block with the actor), else NOT_FOUND. */
  async groupMessage(actor: Actor, messageId: string): Promise<MessageRecord> {
    const msg = await findVisible(this.deps, actor, messageId);
    if (!msg.groupId) throw notFound('Message', 'messageId');
    return msg;
  }

  /**
   * `mark_message_read` on a group message: moves the member's read position (drives
   * `unreadCount`); the sender's devices get `message_read` and `message_status` read.
   */
  async markRead(actor: Actor, msg: MessageRecord): Promise<Reply> {
    const { deps } = this;
    await this.groups.access(actor, msg.groupId!).catch(asMessageNotFound);
    const ts = nowIso();
    const reply = { type: 'message_marked_read', messageId: msg.id, groupId: msg.groupId, conversationId: msg.groupId, timestamp: ts };
    const moved = await deps.stores.groups.markRead(msg.groupId!, actor.userId, msg.seq);
    if (moved && msg.senderId !== actor.userId && !(await deps.relations.isBlocked(actor.userId, msg.senderId))) {
      publish(deps, [msg.senderId], { type: 'message_read', messageId: msg.id, groupId: msg.groupId, conversationId: msg.groupId, readBy: actor.userId, timestamp: ts });
      publish(deps, [msg.senderId], { type: 'message_status', messageId: msg.id, groupId: msg.groupId, status: 'read', userId: actor.userId, timestamp: ts });
    }
    if (moved) publish(deps, [actor.userId], reply, actor.connId);
    return reply;
  }

  /**
   * `pin_message` / `unpin_message` (owner/admin, a message they can see) → `message_pinned` /
   * `message_unpinned` to the members who can see it (§5). A new pin with the group at
   * MAX_PINS_PER_GROUP pins → GROUP_FULL (`field: "messageId"`), nothing changed.
   */
  async pin(actor: Actor, groupId: string, messageId: string, pin: boolean): Promise<Reply> {
    const { deps } = this;
    await rateLimit(deps, 'action', actor.userId);
    await this.groups.access(actor, groupId, 'admin');
    // A message the admin cannot see (deleted for them, or its sender in a block with them) is NOT_FOUND (§2.2, §5).
    const msg = await findVisible(deps, actor, messageId);
    if (msg.groupId !== groupId) throw notFound('Message', 'messageId');
    if (pin) {
      if ((await deps.stores.pins.pin(groupId, messageId, actor.userId)).status === 'full') {
        throw new ChatError('GROUP_FULL', `This group already has ${MAX_PINS_PER_GROUP} pinned messages: unpin one first`, { field: 'messageId', details: `pin limit ${MAX_PINS_PER_GROUP}` });
      }
    } else if (!(await deps.stores.pins.unpin(groupId, messageId))) throw notFound('Pin', 'messageId');
    const event = pin
      ? { type: 'message_pinned', messageId, groupId, pinnedBy: actor.userId, timestamp: nowIso() }
      : { type: 'message_unpinned', messageId, groupId, unpinnedBy: actor.userId, timestamp: nowIso() };
    publish(deps, await this.audienceAbout(actor, groupId, msg.senderId), event, actor.connId);
    return event;
  }

  /**
   * `get_pinned_messages` → `pinned_message {groupId, message: latest or null, messages: newest
   * first}`: at most MAX_PINS_PER_GROUP, senders in a block with the caller left out (in the query).
   */
  async pinned(actor: Actor, groupId: string): Promise<Reply> {
    const { deps } = this;
    await this.groups.access(actor, groupId);
    const blocked = await deps.stores.relations.blockedWith(actor.userId);
    const rows = await deps.stores.pins.list(groupId, actor.userId, [...blocked]);
    const messages = rows.flatMap((p) => {
      const v = openRecord(deps, p.record);
      return v
        ? [{ messageId: v.id, id: v.id, senderId: v.senderId, username: v.senderUsername, content: v.content, createdAt: v.createdAt.toISOString(), pinnedAt: p.pinnedAt.toISOString(), pinnedBy: p.pinnedBy, isAnnouncement: p.record.isAnnouncement }]
        : [];
    });
    return { type: 'pinned_message', groupId, message: messages[0] ?? null, messages, timestamp: nowIso() };
  }

  /** Typing audience in a group: members but the actor, minus blocks; null when the actor is not a member. */
  async typingAudience(actor: Actor, groupId: string): Promise<string[] | null> {
    const aud = await this.deps.stores.groups.audience(groupId, actor.userId, false);
    if (!aud || !aud.active || !aud.members.some((m) => m.userId === actor.userId)) return null;
    return aud.members.filter((m) => m.userId !== actor.userId && !m.blockedWithActor).map((m) => m.userId);
  }

}

/**
 * A group access refusal (not a member, group deleted) on a command naming a message
 * answers as for a message that does not exist (NOT_FOUND `messageId`: existence is never
 * leaked); anything else (a failed lookup) is rethrown, so it refuses as SERVICE_UNAVAILABLE
 * rather than telling the client the message is gone (§2.2).
 */
function asMessageNotFound(err: unknown): never {
  if (err instanceof ChatError) throw notFound('Message', 'messageId');
  throw err;
}

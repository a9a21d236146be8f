/**
 * Command table: canonical inbound type → chat service call (PROTOCOL §6, §8, §9, §11).
 * Each handler reads like its protocol row; group commands are added by the groups module.
 * Reads and receipts take a point of the user's `read` / `receipt` budget first (sends and
 * actions take theirs inside the chat services, §4).
 */
import { rateLimit, type Actor, type ChatDeps, type Reply } from '../chat/context.ts';
import type { ChatServices } from '../chat/index.ts';
import type { LimitKind } from '../policy/rateLimits.ts';
import { nowIso } from '../protocol/outbound.ts';
import type { DecodedFrame } from '../protocol/inbound.ts';

/** A command handler: validated fields in, reply out (or a thrown ChatError). */
export type Handler = (actor: Actor, cmd: any, frame: DecodedFrame) => Promise<Reply>;

/**
 * `handler` after one point of the actor's `kind` budget (READ_RATE_LIMIT or
 * RECEIPT_RATE_LIMIT per MESSAGE_RATE_WINDOW_MS, per user across devices and processes).
 * Over budget it throws `RATE_LIMITED` with `retryAfter` (s) and the handler does not run
 * (docs/PROTOCOL-NOTES.md "Reads and receipts").
 */
function budgeted(deps: ChatDeps, kind: LimitKind, handler: Handler): Handler {
  return async (actor, cmd, frame) => {
    await rateLimit(deps, kind, actor.userId);
    return handler(actor, cmd, frame);
  };
}

/** The handlers of the core and direct-message commands. */
export function coreHandlers(chat: ChatServices): Record<string, Handler> {
  const { direct, actions, typing, presence, sync, deps } = chat;
  const read = (h: Handler) => budgeted(deps, 'read', h);
  const receipt = (h: Handler) => budgeted(deps, 'receipt', h);
  return {
    send_private_message: (a, c) => direct.send(a, c),
    start_conversation: read((a, c) => direct.start(a, c.recipientId)),
    get_conversations: read((a, c) => direct.list(a, c.limit, c.before)),
    get_private_messages: read((a, c) => direct.history(a, c)),
    edit_message: (a, c) => direct.edit(a, c.messageId, c.newContent),
    delete_message: (a, c) => direct.delete(a, c.messageId, c.deleteForEveryone, false),
    delete_private_message: (a, c) => direct.delete(a, c.messageId, c.deleteForEveryone, true),
    delete_conversation: (a, c) => direct.deleteConversation(a, c.conversationId, c.deleteForEveryone),
    mark_message_read: receipt((a, c) => actions.markRead(a, c.messageId)),
    add_reaction: (a, c) => actions.react(a, c.messageId, c.reaction, true),
    remove_reaction: (a, c) => actions.react(a, c.messageId, c.reaction, false),
    message_delivered: receipt((a, c) => actions.delivered(a, c.messageIds)),
    typing: (a, c) => typing.typing(a, c),
    sync: read((a, c) => sync.sync(a, c.cursor ?? undefined, c.limit)),
    get_online_users: read((a) => presence.onlineUsers(a)),
    get_presence: read((a, c) => presence.presenceOf(a, c.userIds)),
    get_communities: async () => ({ type: 'community_list', communities: [], timestamp: nowIso() }),
    get_community_members: async (_a, c) => ({ type: 'community_members', communityId: c.communityId ?? null, members: [], timestamp: nowIso() }),
    get_community_progress: async (_a, c) => ({ type: 'community_progress', communityId: c.communityId ?? null, progress: null, timestamp: nowIso() }),
  };
}

/** The handlers of the group commands (PROTOCOL §7). */
export function groupHandlers(chat: ChatServices): Record<string, Handler> {
  const { groups: g, groupMessages: gm, deps } = chat;
  const read = (h: Handler) => budgeted(deps, 'read', h);
  // leave/delete/restore take their `action` point here; the other group commands inside the service.
  const action = (h: Handler) => budgeted(deps, 'action', h);
  return {
    create_group: (a, c) => g.create(a, c),
    send_group_message: (a, c) => gm.send(a, c),
    get_group_messages: read((a, c) => gm.history(a, c)),
    get_user_groups: read((a) => g.userGroups(a)),
    get_group_members: read((a, c) => g.members(a, c.groupId)),
    get_group_info: read((a, c) => g.info(a, c.groupId)),
    add_group_member: (a, c) => g.addMember(a, c.groupId, c.userId),
    remove_group_member: (a, c) => g.removeMember(a, c.groupId, c.userId),
    leave_group: action((a, c) => g.leave(a, c.groupId)),
    update_group_info: (a, c) => g.updateInfo(a, c),
    edit_group_message: (a, c) => gm.editById(a, c.messageId, c.newContent),
    delete_group_message: (a, c) => gm.deleteById(a, c.messageId, c.deleteForEveryone),
    add_group_reaction: (a, c) => gm.reactById(a, c.messageId, c.reaction, true),
    remove_group_reaction: (a, c) => gm.reactById(a, c.messageId, c.reaction, false),
    promote_member: (a, c) => g.setRole(a, c.groupId, c.userId, true),
    demote_member: (a, c) => g.setRole(a, c.groupId, c.userId, false),
    transfer_ownership: (a, c) => g.transferOwnership(a, c.groupId, c.userId),
    delete_group: action((a, c) => g.deleteGroup(a, c.groupId, c.permanent)),
    restore_group: action((a, c) => g.restore(a, c.groupId)),
    pin_message: (a, c) => gm.pin(a, c.groupId, c.messageId, true),
    unpin_message: (a, c) => gm.pin(a, c.groupId, c.messageId, false),
    get_pinned_messages: read((a, c) => gm.pinned(a, c.groupId)),
    send_announcement: (a, c) => gm.send(a, c, true),
  };
}

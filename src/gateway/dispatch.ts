/**
 * Command table: canonical inbound type → chat service call (PROTOCOL §6, §8, §9, §11).
 * Each handler reads like its protocol row; group commands are added by the groups module.
 */
import type { Actor, Reply } from '../chat/context.ts';
import type { ChatServices } from '../chat/index.ts';
import { nowIso } from '../protocol/outbound.ts';
import type { DecodedFrame } from '../protocol/inbound.ts';

/** A command handler: validated fields in, reply out (or a thrown ChatError). */
export type Handler = (actor: Actor, cmd: any, frame: DecodedFrame) => Promise<Reply>;

/** The handlers of the core and direct-message commands. */
export function coreHandlers(chat: ChatServices): Record<string, Handler> {
  const { direct, actions, typing, presence, sync } = chat;
  return {
    send_private_message: (a, c) => direct.send(a, c),
    start_conversation: (a, c) => direct.start(a, c.recipientId),
    get_conversations: (a, c) => direct.list(a, c.limit, c.before),
    get_private_messages: (a, c) => direct.history(a, c),
    edit_message: (a, c) => direct.edit(a, c.messageId, c.newContent),
    delete_message: (a, c) => direct.delete(a, c.messageId, c.deleteForEveryone, false),
    delete_private_message: (a, c) => direct.delete(a, c.messageId, c.deleteForEveryone, true),
    delete_conversation: (a, c) => direct.deleteConversation(a, c.conversationId, c.deleteForEveryone),
    mark_message_read: (a, c) => actions.markRead(a, c.messageId),
    add_reaction: (a, c) => actions.react(a, c.messageId, c.reaction, true),
    remove_reaction: (a, c) => actions.react(a, c.messageId, c.reaction, false),
    message_delivered: (a, c) => actions.delivered(a, c.messageIds),
    typing: (a, c) => typing.typing(a, c),
    sync: (a, c) => sync.sync(a, c.cursor ?? undefined, c.limit),
    get_online_users: (a) => presence.onlineUsers(a),
    get_presence: (a, c) => presence.presenceOf(a, c.userIds),
    get_communities: async () => ({ type: 'community_list', communities: [], timestamp: nowIso() }),
    get_community_members: async (_a, c) => ({ type: 'community_members', communityId: c.communityId ?? null, members: [], timestamp: nowIso() }),
    get_community_progress: async (_a, c) => ({ type: 'community_progress', communityId: c.communityId ?? null, progress: null, timestamp: nowIso() }),
  };
}

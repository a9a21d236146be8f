/**
 * Wire types of the chat protocol for clients (PROTOCOL.md §2–§11): the message and
 * group objects, every inbound command with its fields and its direct reply type, and
 * the frames the server sends. Types only (plus one table of reply types): nothing here
 * needs Node or a DOM, so the SDK runs in browsers and on Node alike.
 *
 * Ids are strings on output (§2); inbound user ids may be strings or numbers. Every
 * timestamp is an ISO-8601 UTC string except `pong.timestamp` and
 * `test_response.timestamp` (epoch ms). Servers may add fields: a client must ignore
 * fields and frame types it does not know (§ introduction).
 */
import type { AuthErrorCode, ErrorCode } from '../protocol/errors.ts';

export type { AuthErrorCode, ErrorCode };

/** A user id as a client may send it (§2: `1` and `"1"` name the same user). */
export type UserIdIn = string | number;

/** A reaction summary on a message: `{reaction, count, userIds}` (§6). */
export interface ReactionSummary {
  reaction: string;
  count: number;
  userIds: string[];
}

/** Direct message object `M` (§6). */
export interface DirectMessage {
  id: string;
  messageId: string;
  conversationId: string;
  senderId: string;
  recipientId: string;
  /** Sender's username. */
  username: string;
  content: string;
  /** Creation time. */
  timestamp: string;
  isRead: boolean;
  readAt: string | null;
  replyTo: string | null;
  isEdited: boolean;
  editedAt: string | null;
  isDeleted: boolean;
  /** Gap-free position in the conversation (§9). */
  seq: number;
  clientMessageId: string | null;
  reactions: ReactionSummary[];
}

/** A mention in a group message (§7). */
export type Mention = { type: 'user'; userId: string; username: string } | { type: 'everyone' };

/** Group message object `G` (§7). */
export interface GroupMessage {
  id: string;
  messageId: string;
  groupId: string;
  senderId: string;
  username: string;
  content: string;
  timestamp: string;
  replyTo: string | null;
  mentions: Mention[];
  isEdited: boolean;
  editedAt: string | null;
  isAnnouncement: boolean;
  isPinned: boolean;
  seq: number;
  clientMessageId: string | null;
  reactions: ReactionSummary[];
}

/** A deleted message in `sync_result.messages` (§9). */
export interface Tombstone {
  messageId: string;
  isDeleted: true;
  conversationId?: string;
  groupId?: string;
}

/** A member of a group (§7 group object). */
export interface GroupMember {
  userId: string;
  username: string;
  displayName: string;
  role: 'owner' | 'admin' | 'member';
  joinedAt: string;
}

/** Group object (§7). */
export interface Group {
  groupId: string;
  groupName: string;
  groupDescription: string;
  createdBy: string;
  ownerId: string;
  maxMembers: number;
  memberCount: number;
  isActive: boolean;
  createdAt: string;
  members: GroupMember[];
}

/** The user object of `auth_success` (§3 item 4). */
export interface AuthUser {
  id: string;
  username: string;
  email: string | null;
  displayName: string;
  firstName: string | null;
  lastName: string | null;
}

/** A pin in `pinned_message` (§7). */
export interface Pin {
  messageId: string;
  id: string;
  senderId: string;
  username: string;
  content: string;
  createdAt: string;
  pinnedAt: string;
  pinnedBy: string;
  isAnnouncement: boolean;
}

/** `{userId, username, reaction, timestamp}` in reaction events (§6, §7). */
export interface ReactionEntry {
  userId: string;
  username: string;
  reaction: string;
  timestamp: string;
}

/** Paging fields of the history commands (§6, §7). */
export interface Paging {
  /** 1..100, default 50. */
  limit?: number;
  /** ≥ 0; 0 is the newest page. */
  offset?: number;
  /** A `seq`: the page before it. */
  before?: number;
}

/** Fields present on every frame the server sends. */
interface Base<T extends string> {
  type: T;
  /** The `requestId` of the command this frame answers (§2), on direct replies only. */
  requestId?: string;
  timestamp?: string | number;
}

/** A frame of type `T` with fields `F` (any further fields a server adds are allowed). */
export type Frame<T extends string, F = {}> = Base<T> & F & Record<string, unknown>;

type Stamp = { timestamp: string };
type ReactionEvent = { messageId: string; reaction: ReactionEntry; emoji: string } & Stamp;
type GroupRef = { groupId: string };

/**
 * Every frame the server sends, by type (§2.2, §3, §6–§11). A direct reply and the event
 * of the same name share one shape.
 */
export interface ServerFrames {
  connected: Frame<'connected', { clientId: string; requiresAuth: boolean; message: string } & Stamp>;
  auth_success: Frame<'auth_success', { user: AuthUser; userId: string; username: string; displayName: string; expiresAt: string; cursor: string } & Stamp>;
  auth_error: Frame<'auth_error', { code: AuthErrorCode; message: string; error: string } & Stamp>;
  error: Frame<'error', { code: ErrorCode; message: string; details?: string; field?: string; retryAfter?: number; errorId?: string }>;
  token_expiring: Frame<'token_expiring', { expiresAt: string }>;
  session_conflict: Frame<'session_conflict', { message: string }>;
  pong: Frame<'pong', { timestamp: number }>;
  test_response: Frame<'test_response', { message: string; timestamp: number }>;
  private_message_sent: Frame<'private_message_sent', { message: DirectMessage; messageId: string; conversationId: string; replyTo: string | null; clientMessageId: string | null; duplicate?: boolean } & Stamp>;
  new_private_message: Frame<'new_private_message', { message: DirectMessage; replyTo?: { messageId: string; content: string; username: string; timestamp: string } } & Stamp>;
  conversation_started: Frame<'conversation_started', { conversationId: string; recipient: { id: string; username: string; displayName: string; online: boolean }; messages: DirectMessage[]; hasMore: boolean } & Stamp>;
  conversations: Frame<'conversations', { conversations: { conversationId: string; otherUser: { id: string; username: string; displayName: string; online: boolean }; lastMessage: DirectMessage; unreadCount: number; updatedAt: string }[]; hasMore: boolean; nextBefore: string | null }>;
  /** `limit`: the messages this page covers, below the one asked for when the page reached its byte budget (then `hasMore`): page on with `offset + limit` or `before` the oldest `seq` (docs/PROTOCOL-NOTES.md "History and start_conversation page size"). */
  private_message_history: Frame<'private_message_history', { conversationId: string; messages: DirectMessage[]; hasMore: boolean; total: number; offset: number; limit: number }>;
  message_edited: Frame<'message_edited', { messageId: string; conversationId: string; newContent: string; editedAt: string } & Stamp>;
  message_deleted: Frame<'message_deleted', { messageId: string; conversationId: string; deleteForEveryone: boolean } & Stamp>;
  conversation_deleted: Frame<'conversation_deleted', { conversationId: string; deleteForEveryone: boolean } & Stamp>;
  message_marked_read: Frame<'message_marked_read', { messageId: string; conversationId: string } & Stamp>;
  message_read: Frame<'message_read', { messageId: string; conversationId: string; readBy: string } & Stamp>;
  message_delivered_ack: Frame<'message_delivered_ack', { messageIds: string[] } & Stamp>;
  message_status: Frame<'message_status', { messageId: string; status: 'delivered' | 'read'; userId: string } & Stamp>;
  typing_indicator_sent: Frame<'typing_indicator_sent', { recipientId: string | null; groupId?: string; isTyping: boolean } & Stamp>;
  typing_indicator: Frame<'typing_indicator', { senderId: string; userId: string; senderUsername: string; conversationId?: string; groupId?: string; isTyping: boolean } & Stamp>;
  reaction_added: Frame<'reaction_added', ReactionEvent & { conversationId: string }>;
  reaction_removed: Frame<'reaction_removed', ReactionEvent & { conversationId: string }>;
  sync_result: Frame<'sync_result', { messages: (DirectMessage | GroupMessage | Tombstone)[]; changes: ({ type: string; groupId?: string; userId?: string; actorId?: string; role?: string } & Stamp)[]; cursor: string; hasMore: boolean }>;
  online_users: Frame<'online_users', { users: { id: string; username: string; displayName: string; online: true }[] }>;
  presence: Frame<'presence', { users: { id: string; online: boolean; lastSeen: string | null }[] }>;
  user_online: Frame<'user_online', { user: { id: string; username: string } } & Stamp>;
  user_offline: Frame<'user_offline', { user: { id: string; username: string }; lastSeen: string } & Stamp>;
  group_created: Frame<'group_created', { group: Group; groupId: string; groupName: string; groupDescription: string; createdBy: string; members: GroupMember[]; maxMembers: number; rejectedMembers?: { userId: string; code: ErrorCode }[] } & Stamp>;
  group_message_sent: Frame<'group_message_sent', { message: GroupMessage; duplicate?: boolean } & Stamp>;
  new_group_message: Frame<'new_group_message', { message: GroupMessage } & Stamp>;
  mentioned_in_group: Frame<'mentioned_in_group', { messageId: string; groupId: string; message: GroupMessage; mentionedBy: string; mentionedByUsername: string } & Stamp>;
  /** `limit` as in `private_message_history`. */
  group_messages: Frame<'group_messages', { groupId: string; messages: GroupMessage[]; hasMore: boolean; total: number; offset: number; limit: number }>;
  user_groups: Frame<'user_groups', { groups: { groupId: string; groupName: string; groupDescription: string; createdBy: string; myRole: string; role: string; joinedAt: string; memberCount: number; lastMessageAt: string | null; unreadCount: number }[] }>;
  group_members: Frame<'group_members', { groupId: string; members: GroupMember[] }>;
  group_info: Frame<'group_info', { group: Group } & Partial<Group>>;
  member_added: Frame<'member_added', GroupRef & { userId: string; username: string; addedBy: string; role: string } & Stamp>;
  member_removed: Frame<'member_removed', GroupRef & { userId: string; username: string; removedBy: string } & Stamp>;
  left_group: Frame<'left_group', GroupRef & Stamp>;
  member_left: Frame<'member_left', GroupRef & { userId: string; username: string } & Stamp>;
  group_updated: Frame<'group_updated', GroupRef & { updates: Record<string, unknown> } & Stamp>;
  group_info_updated: Frame<'group_info_updated', GroupRef & { updates: Record<string, unknown>; updatedBy: string; updatedByUsername: string } & Stamp>;
  group_message_edited: Frame<'group_message_edited', GroupRef & { messageId: string; newContent: string; editedAt: string; editedBy?: string } & Stamp>;
  group_message_deleted: Frame<'group_message_deleted', GroupRef & { messageId: string; deleteForEveryone: boolean; deletedBy?: string } & Stamp>;
  group_reaction_added: Frame<'group_reaction_added', ReactionEvent & GroupRef>;
  group_reaction_removed: Frame<'group_reaction_removed', ReactionEvent & GroupRef>;
  member_promoted: Frame<'member_promoted', GroupRef & { userId: string; newRole: string; promotedBy: string } & Stamp>;
  member_demoted: Frame<'member_demoted', GroupRef & { userId: string; newRole: string; demotedBy: string } & Stamp>;
  ownership_transferred: Frame<'ownership_transferred', GroupRef & { newOwnerId: string; previousOwnerId: string }>;
  group_deleted: Frame<'group_deleted', GroupRef & { deletedBy: string; permanent: boolean; message: string } & Stamp>;
  group_restored: Frame<'group_restored', GroupRef & { restoredBy: string } & Stamp>;
  message_pinned: Frame<'message_pinned', GroupRef & { messageId: string; pinnedBy: string } & Stamp>;
  /** `reason: 'pin_limit'` when an announcement at the group's 50-pin cap pushed the oldest out (docs/PROTOCOL-NOTES.md "Pins per group"). */
  message_unpinned: Frame<'message_unpinned', GroupRef & { messageId: string; unpinnedBy: string; reason?: 'pin_limit' } & Stamp>;
  pinned_message: Frame<'pinned_message', GroupRef & { message: Pin | null; messages: Pin[] }>;
  /** `unpinnedMessageId`: the pin it pushed out at the group's 50-pin cap, if any. */
  announcement_sent: Frame<'announcement_sent', { message: GroupMessage; unpinnedMessageId?: string } & Partial<GroupMessage>>;
  new_announcement: Frame<'new_announcement', { message?: GroupMessage } & Partial<GroupMessage>>;
  community_list: Frame<'community_list', { communities: [] } & Stamp>;
  community_members: Frame<'community_members', { communityId?: string; members: [] } & Stamp>;
  community_progress: Frame<'community_progress', { communityId?: string; progress: null } & Stamp>;
}

/** Any frame type the server sends. */
export type ServerFrameType = keyof ServerFrames;
/** Any frame the server sends. */
export type ServerFrame = ServerFrames[ServerFrameType];

type Send = { content: string; replyTo?: string | null; clientMessageId?: string };
type Member = { groupId: string; userId: UserIdIn };
type React = { messageId: string; reaction: string };
type Pinning = { groupId: string; messageId: string };

/**
 * Every command a client sends (§3, §6–§11, but `authenticate`, which the client runs
 * itself): its fields and its direct reply type. Aliases (§6 "alias") are accepted by
 * the server but not listed: use the canonical names.
 */
export interface Commands {
  ping: { fields: {}; reply: 'pong' };
  test: { fields: {}; reply: 'test_response' };
  send_private_message: { fields: Send & { recipientId: UserIdIn }; reply: 'private_message_sent' };
  start_conversation: { fields: { recipientId: UserIdIn }; reply: 'conversation_started' };
  get_conversations: { fields: { limit?: number; before?: string }; reply: 'conversations' };
  get_private_messages: { fields: Paging & ({ recipientId: UserIdIn; conversationId?: string } | { conversationId: string; recipientId?: UserIdIn }); reply: 'private_message_history' };
  edit_message: { fields: { messageId: string; newContent: string }; reply: 'message_edited' };
  delete_message: { fields: { messageId: string; deleteForEveryone?: boolean }; reply: 'message_deleted' };
  /** As `delete_message`, but `deleteForEveryone` defaults to true for the sender (§6). */
  delete_private_message: { fields: { messageId: string; deleteForEveryone?: boolean }; reply: 'message_deleted' };
  delete_conversation: { fields: { conversationId: string; deleteForEveryone?: boolean }; reply: 'conversation_deleted' };
  mark_message_read: { fields: { messageId: string }; reply: 'message_marked_read' };
  typing: { fields: ({ recipientId: UserIdIn } | { groupId: string }) & { isTyping?: boolean }; reply: 'typing_indicator_sent' };
  add_reaction: { fields: React; reply: 'reaction_added' };
  remove_reaction: { fields: React; reply: 'reaction_removed' };
  message_delivered: { fields: { messageIds: string[] }; reply: 'message_delivered_ack' };
  sync: { fields: { cursor?: string | null; limit?: number }; reply: 'sync_result' };
  get_online_users: { fields: {}; reply: 'online_users' };
  get_presence: { fields: { userIds: UserIdIn[] }; reply: 'presence' };
  get_communities: { fields: {}; reply: 'community_list' };
  get_community_members: { fields: { communityId?: string }; reply: 'community_members' };
  get_community_progress: { fields: { communityId?: string }; reply: 'community_progress' };
  create_group: { fields: { groupName: string; groupDescription?: string; initialMembers?: UserIdIn[]; maxMembers?: number }; reply: 'group_created' };
  send_group_message: { fields: Send & { groupId: string }; reply: 'group_message_sent' };
  get_group_messages: { fields: Paging & { groupId: string }; reply: 'group_messages' };
  get_user_groups: { fields: {}; reply: 'user_groups' };
  get_group_members: { fields: { groupId: string }; reply: 'group_members' };
  get_group_info: { fields: { groupId: string }; reply: 'group_info' };
  add_group_member: { fields: Member; reply: 'member_added' };
  remove_group_member: { fields: Member; reply: 'member_removed' };
  leave_group: { fields: { groupId: string }; reply: 'left_group' };
  update_group_info: { fields: { groupId: string; groupName?: string; groupDescription?: string; maxMembers?: number }; reply: 'group_updated' };
  edit_group_message: { fields: { messageId: string; newContent: string }; reply: 'group_message_edited' };
  delete_group_message: { fields: { messageId: string; deleteForEveryone?: boolean }; reply: 'group_message_deleted' };
  add_group_reaction: { fields: React; reply: 'group_reaction_added' };
  remove_group_reaction: { fields: React; reply: 'group_reaction_removed' };
  promote_member: { fields: Member; reply: 'member_promoted' };
  demote_member: { fields: Member; reply: 'member_demoted' };
  transfer_ownership: { fields: Member; reply: 'ownership_transferred' };
  delete_group: { fields: { groupId: string; permanent?: boolean }; reply: 'group_deleted' };
  restore_group: { fields: { groupId: string }; reply: 'group_restored' };
  pin_message: { fields: Pinning; reply: 'message_pinned' };
  unpin_message: { fields: Pinning; reply: 'message_unpinned' };
  get_pinned_messages: { fields: { groupId: string }; reply: 'pinned_message' };
  send_announcement: { fields: { groupId: string; content: string; clientMessageId?: string }; reply: 'announcement_sent' };
}

/** Any command type. */
export type CommandType = keyof Commands;
/** The fields of command `K`. */
export type CommandFields<K extends CommandType> = Commands[K]['fields'];
/** The direct reply frame of command `K`. */
export type ReplyOf<K extends CommandType> = ServerFrames[Commands[K]['reply']];

/**
 * The reply type of each command, at run time: a reply of another type (but `error`) is
 * a protocol violation the client reports instead of handing on.
 */
export const REPLY_TYPES: { readonly [K in CommandType]: Commands[K]['reply'] } = {
  ping: 'pong',
  test: 'test_response',
  send_private_message: 'private_message_sent',
  start_conversation: 'conversation_started',
  get_conversations: 'conversations',
  get_private_messages: 'private_message_history',
  edit_message: 'message_edited',
  delete_message: 'message_deleted',
  delete_private_message: 'message_deleted',
  delete_conversation: 'conversation_deleted',
  mark_message_read: 'message_marked_read',
  typing: 'typing_indicator_sent',
  add_reaction: 'reaction_added',
  remove_reaction: 'reaction_removed',
  message_delivered: 'message_delivered_ack',
  sync: 'sync_result',
  get_online_users: 'online_users',
  get_presence: 'presence',
  get_communities: 'community_list',
  get_community_members: 'community_members',
  get_community_progress: 'community_progress',
  create_group: 'group_created',
  send_group_message: 'group_message_sent',
  get_group_messages: 'group_messages',
  get_user_groups: 'user_groups',
  get_group_members: 'group_members',
  get_group_info: 'group_info',
  add_group_member: 'member_added',
  remove_group_member: 'member_removed',
  leave_group: 'left_group',
  update_group_info: 'group_updated',
  edit_group_message: 'group_message_edited',
  delete_group_message: 'group_message_deleted',
  add_group_reaction: 'group_reaction_added',
  remove_group_reaction: 'group_reaction_removed',
  promote_member: 'member_promoted',
  demote_member: 'member_demoted',
  transfer_ownership: 'ownership_transferred',
  delete_group: 'group_deleted',
  restore_group: 'group_restored',
  pin_message: 'message_pinned',
  unpin_message: 'message_unpinned',
  get_pinned_messages: 'pinned_message',
  send_announcement: 'announcement_sent',
};

/**
 * Commands the client resends after a reconnect until they are answered: sends carry a
 * `clientMessageId`, so a resend of one the server already stored returns the original
 * ack with `duplicate: true` and stores nothing new (§6 rules). Reads and delivery
 * receipts have no effect to repeat. Every other command in flight when the connection drops is failed with
 * `CONNECTION_LOST`, since it may or may not have been applied.
 */
export const RETRIED_COMMANDS: ReadonlySet<CommandType> = new Set<CommandType>([
  'send_private_message',
  'send_group_message',
  'send_announcement',
  'ping',
  'test',
  'start_conversation',
  'get_conversations',
  'get_private_messages',
  'get_online_users',
  'get_presence',
  'get_communities',
  'get_community_members',
  'get_community_progress',
  'get_group_messages',
  'get_user_groups',
  'get_group_members',
  'get_group_info',
  'get_pinned_messages',
  'sync',
  // Records first delivery only (§9): a repeat changes nothing.
  'message_delivered',
]);

/** Commands that get a `clientMessageId` from the client when the caller gives none. */
export const IDEMPOTENT_SENDS: ReadonlySet<CommandType> = new Set<CommandType>(['send_private_message', 'send_group_message', 'send_announcement']);

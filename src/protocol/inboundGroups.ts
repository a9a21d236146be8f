/** Group command schemas (PROTOCOL §7), merged into the same table as the core ones. */
import { z } from 'zod';
import { clientMessageId, flag, groupId, intIn, messageId, reaction, text, userId } from './fields.ts';
import type { CommandSpec, ProtocolLimits } from './inbound.ts';

const paging = { limit: intIn(1, 100).optional(), offset: intIn(0, 1_000_000_000).optional(), before: intIn(0, Number.MAX_SAFE_INTEGER).optional() };

/**
 * Most entries `create_group.initialMembers` may list (PROTOCOL §7): 2 × MAX_GROUP_SIZE, at
 * least 1000. Only an abuse bound (more → BAD_REQUEST): duplicates, the creator and
 * rejected users are dropped first, and too many accepted members is TOO_MANY_MEMBERS.
 * @param maxGroupSize MAX_GROUP_SIZE
 * @returns the bound on the raw list length
 */
export function maxInitialMembersListed(maxGroupSize: number): number {
  return Math.max(1000, 2 * maxGroupSize);
}

/**
 * The group command specs (PROTOCOL §7). Names are 1..100 code points, descriptions ≤ 1000;
 * maxMembers 2..MAX_GROUP_SIZE; initialMembers see {@link maxInitialMembersListed}.
 * @param limits the configured protocol limits
 * @returns command name → schema and field aliases
 */
export function groupCommands(limits: ProtocolLimits): Record<string, CommandSpec> {
  const content = text(1, limits.maxMessageLength, true);
  const name = text(1, 100, true);
  const description = text(0, 1000);
  const maxMembers = intIn(2, limits.maxGroupSize);
  const member = { schema: z.object({ groupId, userId }) };
  const onlyGroup = { schema: z.object({ groupId }) };
  const react: CommandSpec = { schema: z.object({ messageId, reaction }), aliases: [['emoji', 'reaction']] };
  const pin = { schema: z.object({ groupId, messageId }) };
  return {
    create_group: {
      schema: z.object({ groupName: name, groupDescription: description.optional(), initialMembers: z.array(userId).max(maxInitialMembersListed(limits.maxGroupSize)).optional(), maxMembers: maxMembers.optional() }),
      aliases: [['memberUserIds', 'initialMembers'], ['name', 'groupName'], ['description', 'groupDescription']],
    },
    send_group_message: {
      schema: z.object({ groupId, content, replyTo: messageId.optional().nullable(), clientMessageId: clientMessageId.optional() }),
      aliases: [['replyToMessageId', 'replyTo']],
    },
    get_group_messages: { schema: z.object({ groupId, ...paging }) },
    get_user_groups: { schema: z.object({}) },
    get_group_members: onlyGroup,
    get_group_info: onlyGroup,
    add_group_member: member,
    remove_group_member: member,
    leave_group: onlyGroup,
    update_group_info: {
      schema: z
        .object({ groupId, groupName: name.optional(), groupDescription: description.optional(), maxMembers: maxMembers.optional() })
        .refine((v) => v.groupName !== undefined || v.groupDescription !== undefined || v.maxMembers !== undefined, { message: 'nothing to update', path: ['groupName'] }),
    },
    edit_group_message: { schema: z.object({ messageId, newContent: content }), aliases: [['content', 'newContent']] },
    delete_group_message: { schema: z.object({ messageId, deleteForEveryone: flag.optional() }) },
    add_group_reaction: react,
    remove_group_reaction: react,
    promote_member: member,
    demote_member: member,
    transfer_ownership: member,
    delete_group: { schema: z.object({ groupId, permanent: flag.optional() }) },
    restore_group: onlyGroup,
    pin_message: pin,
    unpin_message: pin,
    get_pinned_messages: onlyGroup,
    send_announcement: { schema: z.object({ groupId, content, clientMessageId: clientMessageId.optional() }) },
  };
}

/** The chat services, built together over one set of dependencies and wired to each other. */
import { groupG } from '../protocol/outbound.ts';
import type { ChatDeps } from './context.ts';
import { DirectMessages } from './direct.ts';
import { GroupMessages } from './groupMessages.ts';
import { Groups } from './groups.ts';
import { MessageActions } from './messageActions.ts';
import { PresenceQueries } from './presence.ts';
import { SyncService } from './sync.ts';
import { Typing } from './typing.ts';

/** Every chat service. */
export interface ChatServices {
  deps: ChatDeps;
  direct: DirectMessages;
  actions: MessageActions;
  typing: Typing;
  presence: PresenceQueries;
  sync: SyncService;
  groups: Groups;
  groupMessages: GroupMessages;
}

/** Build the chat services and connect the group variants of DM-named commands. */
export function createChatServices(deps: ChatDeps): ChatServices {
  const direct = new DirectMessages(deps);
  const actions = new MessageActions(deps, direct);
  const typing = new Typing(deps);
  const presence = new PresenceQueries(deps);
  const sync = new SyncService(deps);
  const groups = new Groups(deps);
  const groupMessages = new GroupMessages(deps, groups);
  direct.groupOps = { edit: (a, m, c) => groupMessages.edit(a, m, c), delete: (a, m, e) => groupMessages.delete(a, m, e) };
  actions.groupActions = { react: (a, m, r, add) => groupMessages.react(a, m, r, add), markRead: (a, m) => groupMessages.markRead(a, m) };
  typing.groupAudience = (a, g) => groupMessages.typingAudience(a, g);
  sync.groups = {
    groupIdsOf: (u) => deps.stores.groups.groupIdsOf(u),
    render: (rec, content) => groupG({ ...rec, content, isPinned: rec.isPinned === true }),
  };
  return { deps, direct, actions, typing, presence, sync, groups, groupMessages };
}

/** The chat services, built together over one set of dependencies. */
import type { ChatDeps } from './context.ts';
import { DirectMessages } from './direct.ts';
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
}

/** Build the chat services. */
export function createChatServices(deps: ChatDeps): ChatServices {
  const direct = new DirectMessages(deps);
  return {
    deps,
    direct,
    actions: new MessageActions(deps, direct),
    typing: new Typing(deps),
    presence: new PresenceQueries(deps),
    sync: new SyncService(deps),
  };
}

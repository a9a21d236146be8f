/**
 * Presence queries (PROTOCOL §8): `get_online_users` and `get_presence`, contacts only
 * (users followed or following, plus members of shared groups, minus blocks).
 */
import { nowIso } from '../protocol/outbound.ts';
import type { Actor, ChatDeps, Reply } from './context.ts';

/** Presence queries and the contact set. */
export class PresenceQueries {
  constructor(private readonly deps: ChatDeps) {}

  /** The user's contacts (PROTOCOL §8), never across a block, in one query. Throws on lookup failure. */
  contacts(userId: string): Promise<Set<string>> {
    return this.deps.stores.relations.contacts(userId);
  }

  /** `get_online_users` → `online_users {users:[{id, username, displayName, online:true}]}`. */
  async onlineUsers(actor: Actor): Promise<Reply> {
    const contacts = [...(await this.contacts(actor.userId))];
    const online = [...(await this.deps.presence.onlineAmong(contacts))];
    const users = await this.deps.stores.users.byIds(online);
    return {
      type: 'online_users',
      users: online.flatMap((id) => {
        const u = users.get(id);
        return u ? [{ id, username: u.username, displayName: u.displayName, online: true }] : [];
      }),
      timestamp: nowIso(),
    };
  }

  /** `get_presence {userIds}` → `presence {users:[{id, online, lastSeen}]}`; non-contacts omitted. */
  async presenceOf(actor: Actor, userIds: readonly string[]): Promise<Reply> {
    // Only the asked ids are tested (≤ 100 index probes each), not the whole contact set (audit 6 F7).
    const unique = [...new Set(userIds)];
    const contacts = await this.deps.stores.relations.contactsAmong(actor.userId, unique);
    const asked = unique.filter((id) => contacts.has(id));
    const [online, lastSeen] = await Promise.all([this.deps.presence.onlineAmong(asked), this.deps.stores.status.lastSeen(asked)]);
    return {
      type: 'presence',
      users: asked.map((id) => ({ id, online: online.has(id), lastSeen: lastSeen.get(id)?.toISOString() ?? null })),
      timestamp: nowIso(),
    };
  }
}

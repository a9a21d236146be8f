/**
 * Presence queries (PROTOCOL §8): `get_online_users` and `get_presence`, contacts only
 * (users followed or following, plus members of shared groups, minus blocks).
 */
import { nowIso } from '../protocol/outbound.ts';
import { rateLimit, type Actor, type ChatDeps, type Reply } from './context.ts';

/**
 * Contacts per read point of `get_online_users`: a call over more takes one more
 * READ_RATE_LIMIT point per started 1,000 beyond the first (its dispatch took one), so its
 * cost to the database and presence store is budgeted in proportion to the work (audit 7,
 * F1: an account following 50,000 users called it 20 times a second, each call reading
 * every contact).
 */
export const CONTACTS_PER_READ_POINT = 1000;

/** Presence queries and the contact set. */
export class PresenceQueries {
  constructor(private readonly deps: ChatDeps) {}

  /** The user's contacts (PROTOCOL §8), never across a block, in one query. Throws on lookup failure. */
  contacts(userId: string): Promise<Set<string>> {
    return this.deps.stores.relations.contacts(userId);
  }

  /**
   * `get_online_users` → `online_users {users:[{id, username, displayName, online:true}]}`.
   * Over {@link CONTACTS_PER_READ_POINT} contacts it takes more read points first: RATE_LIMITED
   * (`retryAfter`) when they are not there, and presence is not asked.
   */
  async onlineUsers(actor: Actor): Promise<Reply> {
    const contacts = [...(await this.contacts(actor.userId))];
    const extra = Math.ceil(contacts.length / CONTACTS_PER_READ_POINT) - 1;
    for (let i = 0; i < extra; i++) await rateLimit(this.deps, 'read', actor.userId);
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

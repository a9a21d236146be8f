/**
 * In-memory presence bookkeeping (PROTOCOL §3 item 9, §8) shared by {@link LocalPresence}
 * (one process, one owner) and the node:cluster primary (one owner per worker): open
 * connections per user and owner, and the offline grace period as a token so that exactly
 * one caller announces each online/offline transition.
 */

/** A grace period in progress: the user has no connection; `owner` may announce offline with `token`. */
export interface GraceEntry {
  token: string;
  owner: string;
}

/** What {@link PresenceTable.dropOwner} found: users now offline at once, and grace periods the owner held. */
export interface DroppedOwner {
  /** Users whose last connections were on the dropped owner (no grace: they are offline now). */
  offline: string[];
  /** Grace periods started by the dropped owner and still pending. */
  grace: { userId: string; token: string }[];
}

/** userId → owner → connection ids, plus grace tokens. Synchronous and atomic by construction. */
export class PresenceTable {
  private readonly conns = new Map<string, Map<string, Set<string>>>();
  private readonly grace = new Map<string, GraceEntry>();
  private seq = 0;

  /**
   * Register connection `connId` of `userId` held by `owner`. Returns true when the user
   * had no connection anywhere and was not within a grace period: `user_online` is due.
   * A reconnect within the grace period cancels it silently (returns false).
   */
  connect(owner: string, userId: string, connId: string): boolean {
    let byOwner = this.conns.get(userId);
    const first = !byOwner;
    if (!byOwner) this.conns.set(userId, (byOwner = new Map()));
    let set = byOwner.get(owner);
    if (!set) byOwner.set(owner, (set = new Set()));
    set.add(connId);
    const resumed = this.grace.delete(userId);
    return first && !resumed;
  }

  /**
   * Unregister a connection. Returns a grace token when it was the user's last connection
   * anywhere (the caller owns the grace period and may {@link claim} it later), else null.
   * Unknown connections return null.
   */
  disconnect(owner: string, userId: string, connId: string): string | null {
    const byOwner = this.conns.get(userId);
    const set = byOwner?.get(owner);
    if (!byOwner || !set || !set.delete(connId)) return null;
    if (set.size === 0) byOwner.delete(owner);
    if (byOwner.size > 0) return null;
    this.conns.delete(userId);
    const token = `${owner}|${++this.seq}`;
    this.grace.set(userId, { token, owner });
    return token;
  }

  /**
   * End a grace period: true exactly once, when `token` is still the current one and the
   * user still has no connection (then `user_offline` is due); false otherwise.
   */
  claim(userId: string, token: string): boolean {
    const g = this.grace.get(userId);
    if (!g || g.token !== token || this.conns.has(userId)) return false;
    this.grace.delete(userId);
    return true;
  }

  /** Open connections of `userId` (all owners). */
  count(userId: string): number {
    let n = 0;
    for (const set of this.conns.get(userId)?.values() ?? []) n += set.size;
    return n;
  }

  /** Of `userIds`, those with at least one open connection (a user within the grace period is not). */
  online(userIds: readonly string[]): Set<string> {
    return new Set(userIds.filter((id) => this.conns.has(id)));
  }

  /** Users with at least one connection. */
  users(): number {
    return this.conns.size;
  }

  /**
   * Forget everything `owner` held (a crashed or exited worker). Users left with no
   * connection are reported offline at once; grace periods the owner started are handed
   * back so the caller can finish them.
   */
  dropOwner(owner: string): DroppedOwner {
    const offline: string[] = [];
    for (const [userId, byOwner] of this.conns) {
      if (!byOwner.delete(owner)) continue;
      if (byOwner.size === 0) {
        this.conns.delete(userId);
        offline.push(userId);
      }
    }
    const grace: DroppedOwner['grace'] = [];
    for (const [userId, g] of this.grace) if (g.owner === owner) grace.push({ userId, token: g.token });
    return { offline, grace };
  }
}

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

/**
 * userId → (owner, connection id) pairs, plus grace tokens. Synchronous and atomic by
 * construction. A user's pairs are one flat array `[owner, connId, owner, connId, …]`
 * (a handful per user, at most MAX_CONNECTIONS_PER_USER per owner): about 300 bytes less
 * per online user than a Map of Sets.
 */
export class PresenceTable {
  private readonly conns = new Map<string, string[]>();
  private readonly grace = new Map<string, GraceEntry>();
  private seq = 0;

  /**
   * Register connection `connId` of `userId` held by `owner`. Returns true when the user
   * had no connection anywhere and was not within a grace period: `user_online` is due.
   * A reconnect within the grace period cancels it silently (returns false).
   */
  connect(owner: string, userId: string, connId: string): boolean {
    const pairs = this.conns.get(userId);
    const first = !pairs;
    if (!pairs) this.conns.set(userId, [owner, connId]);
    else if (indexOfPair(pairs, owner, connId) < 0) pairs.push(owner, connId);
    const resumed = this.grace.delete(userId);
    return first && !resumed;
  }

  /**
   * Unregister a connection. Returns a grace token when it was the user's last connection
   * anywhere (the caller owns the grace period and may {@link claim} it later), else null.
   * Unknown connections return null.
   */
  disconnect(owner: string, userId: string, connId: string): string | null {
    const pairs = this.conns.get(userId);
    const i = pairs ? indexOfPair(pairs, owner, connId) : -1;
    if (i < 0) return null;
    pairs!.splice(i, 2);
    if (pairs!.length > 0) return null;
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
    return (this.conns.get(userId)?.length ?? 0) / 2;
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
    for (const [userId, pairs] of this.conns) {
      const kept: string[] = [];
      for (let i = 0; i < pairs.length; i += 2) if (pairs[i] !== owner) kept.push(pairs[i]!, pairs[i + 1]!);
      if (kept.length === pairs.length) continue;
      if (kept.length === 0) {
        this.conns.delete(userId);
        offline.push(userId);
      } else this.conns.set(userId, kept);
    }
    const grace: DroppedOwner['grace'] = [];
    for (const [userId, g] of this.grace) if (g.owner === owner) grace.push({ userId, token: g.token });
    return { offline, grace };
  }
}

/** Index of the (owner, connId) pair in a flat pair array, or -1. */
function indexOfPair(pairs: readonly string[], owner: string, connId: string): number {
  for (let i = 0; i < pairs.length; i += 2) if (pairs[i + 1] === connId && pairs[i] === owner) return i;
  return -1;
}

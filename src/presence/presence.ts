/**
 * Presence: who is online, how many connections each user holds (PROTOCOL §3 item 9,
 * §8). The local implementation counts this process's connections; the Redis one
 * (scale-out) counts across the deployment.
 */

/** Presence tracker. All methods are async so a shared store can implement them. */
export interface Presence {
  /** A connection of `userId` authenticated here. Resolves true when it is the user's first anywhere. */
  connected(userId: string, connId: string): Promise<boolean>;
  /** A connection of `userId` closed. Resolves true when the user has none left anywhere. */
  disconnected(userId: string, connId: string): Promise<boolean>;
  /** Open authenticated connections of `userId` in the deployment. */
  connectionCount(userId: string): Promise<number>;
  /** Of `userIds`, those online. */
  onlineAmong(userIds: readonly string[]): Promise<Set<string>>;
}

/** One process's presence: counts per user. */
export class LocalPresence implements Presence {
  private readonly conns = new Map<string, Set<string>>();

  async connected(userId: string, connId: string): Promise<boolean> {
    let set = this.conns.get(userId);
    const first = !set;
    if (!set) this.conns.set(userId, (set = new Set()));
    set.add(connId);
    return first;
  }
  async disconnected(userId: string, connId: string): Promise<boolean> {
    const set = this.conns.get(userId);
    if (!set) return false;
    set.delete(connId);
    if (set.size > 0) return false;
    this.conns.delete(userId);
    return true;
  }
  async connectionCount(userId: string): Promise<number> {
    return this.conns.get(userId)?.size ?? 0;
  }
  async onlineAmong(userIds: readonly string[]): Promise<Set<string>> {
    return new Set(userIds.filter((id) => this.conns.has(id)));
  }
  /** Users with at least one connection here. */
  users(): number {
    return this.conns.size;
  }
}

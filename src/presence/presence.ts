/**
 * Presence: who is online, how many connections each user holds (PROTOCOL §3 item 9,
 * §8). Implementations: {@link LocalPresence} (one process), ClusterPresence (state held
 * by the node:cluster primary, ./clusterPresence.ts) and RedisPresence (across hosts,
 * ./redisPresence.ts). Every implementation decides each online/offline transition
 * atomically in its store, so exactly one process announces it.
 */
import { PresenceTable } from './table.ts';

/**
 * Transitions a store found outside a connect/close on this process: users that came
 * online while Redis was unreachable (reported after the resync), and users that went
 * offline with no grace period left to claim (their process died, or they left during an
 * outage). The process that receives them is the only one that does, and announces them.
 */
export type PresenceListener = (online: string[], offline: string[]) => void;

/** Presence tracker. All methods are async so a shared store can implement them. */
export interface Presence {
  /**
   * A connection of `userId` authenticated here. Resolves true when `user_online` is due:
   * it is the user's first connection in the deployment and not a reconnect within the
   * OFFLINE_GRACE_MS period (a reconnect cancels the pending offline silently).
   */
  connected(userId: string, connId: string): Promise<boolean>;
  /**
   * A connection of `userId` closed. Resolves true when the user has no connection left
   * anywhere: a grace period started and this process owns it ({@link claimOffline}).
   */
  disconnected(userId: string, connId: string): Promise<boolean>;
  /**
   * After the grace period that followed a `disconnected` → true on this process: resolves
   * true exactly once deployment-wide when the user is still offline (announce
   * `user_offline`), false when they came back or another grace period replaced this one.
   */
  claimOffline?(userId: string): Promise<boolean>;
  /** Listen for transitions to announce that no connect/close on this process reported ({@link PresenceListener}). */
  onTransitions?(listener: PresenceListener): void;
  /** Open authenticated connections of `userId` in the deployment. */
  connectionCount(userId: string): Promise<number>;
  /**
   * Of `userIds`, those online: with an open connection now. A user within the grace
   * period already reads as offline here (only the `user_offline` event waits for it).
   */
  onlineAmong(userIds: readonly string[]): Promise<Set<string>>;
}

const OWNER = 'local';

/** One process's presence: counts per user, grace periods in memory. */
export class LocalPresence implements Presence {
  private readonly table = new PresenceTable();
  private readonly tokens = new Map<string, string>();

  async connected(userId: string, connId: string): Promise<boolean> {
    this.tokens.delete(userId);
    return this.table.connect(OWNER, userId, connId);
  }
  async disconnected(userId: string, connId: string): Promise<boolean> {
    const token = this.table.disconnect(OWNER, userId, connId);
    if (token) this.tokens.set(userId, token);
    return token !== null;
  }
  async claimOffline(userId: string): Promise<boolean> {
    const token = this.tokens.get(userId);
    if (!token) return false;
    this.tokens.delete(userId);
    return this.table.claim(userId, token);
  }
  onTransitions(): void {
    // One process: every transition comes from a connect or a close here.
  }
  async connectionCount(userId: string): Promise<number> {
    return this.table.count(userId);
  }
  async onlineAmong(userIds: readonly string[]): Promise<Set<string>> {
    return this.table.online(userIds);
  }
  /** Users with at least one connection here. */
  users(): number {
    return this.table.users();
  }
}

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

/**
 * Outcome of {@link Presence.admit}: `refused` (the user already holds
 * MAX_CONNECTIONS_PER_USER connections: close 4429, nothing was registered), or
 * registered, with `first` when `user_online` is due (as {@link Presence.connected} → true)
 * and `again` otherwise.
 */
export type Admission = 'refused' | 'first' | 'again';

/** Presence tracker. All methods are async so a shared store can implement them. */
export interface Presence {
  /**
   * Device cap and registration in one atomic step (PROTOCOL §3 item 9, §2.3 4429): when
   * `userId` holds fewer than `max` connections in the deployment, counting admissions
   * still in flight on this process, register `connId` (resolving `first` when it is the user's first connection in the
   * deployment and not a reconnect within OFFLINE_GRACE_MS, which cancels the pending
   * offline silently); else
   * register nothing and resolve `refused`. Concurrent calls never admit more than `max`.
   * When the shared store is unreachable the cap is checked against this process's own
   * connections (including in-flight admissions) and the connection is admitted without
   * an announcement. Never rejects.
   */
  admit(userId: string, connId: string, max: number): Promise<Admission>;
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
  /**
   * This process is stopping and its connections were drained (PROTOCOL §8, `lastSeen`
   * persisted): when no other process can still finish its users' grace periods, drop
   * everything it holds and resolve the users now offline deployment-wide, whose
   * `lastSeen` the caller persists; else resolve [] (another process does it). Later
   * calls on this instance change nothing.
   */
  release?(): Promise<string[]>;
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

  async admit(userId: string, connId: string, max: number): Promise<Admission> {
    // Synchronous check-and-add: concurrent admissions see each other.
    if (this.table.count(userId) >= max) return 'refused';
    this.tokens.delete(userId);
    return this.table.connect(OWNER, userId, connId) ? 'first' : 'again';
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
  /** One process holds every user: all of them (connected or within the grace period) are offline now. */
  async release(): Promise<string[]> {
    const { offline, grace } = this.table.dropOwner(OWNER);
    for (const g of grace) if (this.table.claim(g.userId, g.token)) offline.push(g.userId);
    this.tokens.clear();
    return offline;
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

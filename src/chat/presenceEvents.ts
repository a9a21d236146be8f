/**
 * Presence events (PROTOCOL §8), wired to the gateway's userConnected/userDisconnected
 * hooks. No socket code: events leave through the Bus.
 *
 * - `user_online {user:{id, username}, timestamp}` to the user's online contacts when the
 *   presence store reports the user's first connection in the deployment (not a
 *   reconnect within the grace period); `user_status` is marked online.
 * - `user_offline {user:{id, username}, lastSeen, timestamp}` when the last connection
 *   closed and none appeared within OFFLINE_GRACE_MS: the process that saw the last close
 *   waits the grace period, then claims the transition from the store (exactly one
 *   claim succeeds deployment-wide) and persists `lastSeen` (StatusStore.set).
 * - Transitions found by the store itself (a crashed process reaped, state resynced after
 *   a Redis outage) are announced by the one process the store reports them to.
 * - Shutdown ({@link PresenceEvents.shutdown}, after the gateway drained): when no other
 *   process will finish this one's grace periods (one process; the last live instance on
 *   Redis) the store releases its users and their `lastSeen` is persisted at once.
 *
 * Contacts come from {@link PresenceQueries.contacts} (follows and shared groups, never
 * across a block); only contacts that are online get the event.
 */
import { nowIso } from '../protocol/outbound.ts';
import { publish, type ChatDeps } from './context.ts';
import type { PresenceQueries } from './presence.ts';

/** Emits presence events for connection changes on this process. */
export class PresenceEvents {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** When each user's grace period began (their last close on this process). */
  private readonly closedAt = new Map<string, Date>();
  private closed = false;

  /**
   * @param deps chat dependencies (presence store, status store, bus, logger)
   * @param queries contact lookup
   * @param graceMs OFFLINE_GRACE_MS: delay before `user_offline`, ms
   */
  constructor(
    private readonly deps: ChatDeps,
    private readonly queries: PresenceQueries,
    private readonly graceMs: number,
  ) {
    deps.presence.onTransitions?.((online, offline) => void this.transitions(online, offline));
  }

  /** Gateway hook: a connection of the user authenticated; `announce` = presence says `user_online` is due. */
  userConnected(userId: string, username: string, announce: boolean): void {
    const t = this.timers.get(userId);
    if (t) {
      clearTimeout(t);
      this.timers.delete(userId);
    }
    this.closedAt.delete(userId);
    if (announce && !this.closed) void this.online(userId, username);
  }

  /** Gateway hook: a connection closed; `last` = no connection left anywhere (this process owns the grace period). */
  userDisconnected(userId: string, username: string, last: boolean): void {
    if (!last || this.closed) return;
    const prev = this.timers.get(userId);
    if (prev) clearTimeout(prev);
    // lastSeen is when the user was last connected, not when the grace period ended (§8).
    const closedAt = new Date();
    this.closedAt.set(userId, closedAt);
    const timer = setTimeout(() => {
      this.timers.delete(userId);
      this.closedAt.delete(userId);
      void this.afterGrace(userId, username, closedAt);
    }, this.graceMs);
    timer.unref();
    this.timers.set(userId, timer);
  }

  /** Cancel pending grace timers (shutdown). Their users are announced by the store's reaping, if any. */
  close(): void {
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  /**
   * Graceful shutdown, once the gateway drained (PROTOCOL §8: `lastSeen` is persisted):
   * {@link close}, then ask the store to release this process's users
   * ({@link Presence.release}: everything on one process; on Redis only when no other
   * instance is live, else that instance reaps this one after the grace period) and mark
   * them offline in `user_status` with `lastSeen` = their last close on this process (within
   * the grace period) or now (still connected), in batched statements. No
   * `user_offline` is sent: no contact is connected anywhere any more. Waits at most
   * `timeoutMs` (ms); failures are logged, never thrown. Resolves the users persisted offline.
   */
  async shutdown(timeoutMs = 3000): Promise<string[]> {
    this.close();
    const log = this.deps.logger;
    const work = (async () => {
      const users = (await this.deps.presence.release?.()) ?? [];
      if (users.length === 0) return users;
      // Through the coalescer, after any `user_online` write still queued for these users.
      // Users within their grace period were last seen when they closed; the others now.
      await Promise.all(users.map((u) => this.deps.stores.status.set(u, false, this.closedAt.get(u))));
      log.info('presence: lastSeen persisted at shutdown', { users: users.length });
      return users;
    })().catch((err: Error) => {
      log.warn('presence: lastSeen not persisted at shutdown', { err: err.message });
      return [];
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string[]>((r) => {
      timer = setTimeout(() => {
        log.warn('presence: lastSeen not persisted at shutdown', { err: `timed out after ${timeoutMs} ms` });
        r([]);
      }, timeoutMs);
    });
    try {
      return await Promise.race([work, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async afterGrace(userId: string, username: string, closedAt: Date): Promise<void> {
    if (this.closed) return;
    const p = this.deps.presence;
    try {
      const due = p.claimOffline ? await p.claimOffline(userId) : (await p.connectionCount(userId)) === 0;
      if (due) await this.offline(userId, username, closedAt);
    } catch (err) {
      this.deps.logger.warn('presence: offline check failed', { userId, err: (err as Error).message });
    }
  }

  private async transitions(online: string[], offline: string[]): Promise<void> {
    if (this.closed) return;
    try {
      const users = await this.deps.stores.users.byIds([...online, ...offline]);
      for (const id of online) await this.online(id, users.get(id)?.username ?? '');
      for (const id of offline) await this.offline(id, users.get(id)?.username ?? '');
    } catch (err) {
      this.deps.logger.warn('presence: announcing store transitions failed', { online: online.length, offline: offline.length, err: (err as Error).message });
    }
  }

  private async online(userId: string, username: string): Promise<void> {
    try {
      // The status write is batched (up to ~20 ms under load); the audience lookup need not wait for it.
      const [, to] = await Promise.all([this.deps.stores.status.set(userId, true), this.audience(userId)]);
      publish(this.deps, to, { type: 'user_online', user: { id: userId, username }, timestamp: nowIso() });
    } catch (err) {
      this.deps.logger.warn('presence: user_online not sent', { userId, err: (err as Error).message });
    }
  }

  /** Persist `lastSeen` (`closedAt`, else now: a reaped instance's users) and send `user_offline` to the online contacts. */
  private async offline(userId: string, username: string, closedAt?: Date): Promise<void> {
    let lastSeen: Date | null = null;
    try {
      lastSeen = await this.deps.stores.status.set(userId, false, closedAt);
    } catch (err) {
      this.deps.logger.warn('presence: lastSeen not persisted', { userId, err: (err as Error).message });
    }
    try {
      const to = await this.audience(userId);
      const now = nowIso();
      publish(this.deps, to, { type: 'user_offline', user: { id: userId, username }, lastSeen: lastSeen?.toISOString() ?? now, timestamp: now });
    } catch (err) {
      this.deps.logger.warn('presence: user_offline not sent', { userId, err: (err as Error).message });
    }
  }

  /** The user's contacts that are online now. */
  private async audience(userId: string): Promise<string[]> {
    const contacts = [...(await this.queries.contacts(userId))];
    if (contacts.length === 0) return [];
    return [...(await this.deps.presence.onlineAmong(contacts))];
  }
}

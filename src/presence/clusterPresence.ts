/**
 * Presence and per-IP connection counts for node:cluster workers without Redis
 * (PROTOCOL §1, §3 item 9, §8): the state lives in the primary's PresenceTable
 * (src/fanout/clusterPrimary.ts) and every transition is decided there, so one worker
 * announces each. When a worker dies the primary drops its connections and hands the
 * resulting offline transitions to one live worker (`chat:presence` message).
 * If the primary does not answer (it is gone; the worker is about to exit), calls fall
 * back to this worker's own counts.
 *
 * Shutdown ({@link ClusterPresence.release}, after the drain): while the whole cluster
 * stops, the primary hands each worker the users it was the last to hold, whose `lastSeen`
 * the worker persists (PresenceEvents.shutdown); a worker stopped alone gets none (the
 * primary hands them to a live worker once it exits).
 *
 * Device cap: the primary checks MAX_CONNECTIONS_PER_USER and registers the connection in
 * one step (`p.admit`), so simultaneous logins of one user on any workers never pass it.
 * Without the primary, this worker's own connections (in-flight admissions included) are
 * the count.
 */
import { CH, isMsg, type PresenceMsg, type WorkerRpc } from '../fanout/clusterIpc.ts';
import type { IpConnectionCounter } from '../gateway/admission.ts';
import { LocalIpCounter } from '../gateway/admission.ts';
import type { Logger } from '../observability/logger.ts';
import type { Admission, Presence, PresenceListener } from './presence.ts';

/** Longest {@link ClusterPresence.release} waits for the primary, ms (PresenceEvents.shutdown allows 3 s in all). */
const RELEASE_TIMEOUT_MS = 1500;

/** Worker-side {@link Presence} backed by the cluster primary. */
export class ClusterPresence implements Presence {
  private readonly tokens = new Map<string, string>();
  private readonly local = new Map<string, number>();
  private readonly listeners: PresenceListener[] = [];
  private readonly onMessage = (m: unknown) => {
    if (!isMsg<PresenceMsg>(m, CH.presence)) return;
    for (const l of this.listeners) {
      try {
        l(m.on, m.off);
      } catch (err) {
        this.logger.error('presence listener failed', { err: (err as Error).message });
      }
    }
  };

  constructor(
    private readonly rpc: WorkerRpc,
    private readonly logger: Logger,
  ) {
    process.on('message', this.onMessage);
  }

  onTransitions(listener: PresenceListener): void {
    this.listeners.push(listener);
  }

  async admit(userId: string, connId: string, max: number): Promise<Admission> {
    // Counted here first, so a fallback count includes admissions still in flight.
    const held = (this.local.get(userId) ?? 0) + 1;
    this.local.set(userId, held);
    this.tokens.delete(userId);
    let r: Admission;
    try {
      r = await this.rpc.call<Admission>('p.admit', [userId, connId, max]);
    } catch {
      // The primary does not answer: this worker's own connections are the count.
      r = held > max ? 'refused' : 'again';
    }
    if (r === 'refused') this.forget(userId);
    return r;
  }

  /** Undo one local count of `userId` (a refused admission; a closed connection). */
  private forget(userId: string): void {
    const n = (this.local.get(userId) ?? 0) - 1;
    if (n <= 0) this.local.delete(userId);
    else this.local.set(userId, n);
  }

  async disconnected(userId: string, connId: string): Promise<boolean> {
    this.forget(userId);
    const token = await this.rpc.call<string | null>('p.disconnected', [userId, connId]);
    if (!token) return false;
    this.tokens.set(userId, token);
    return true;
  }

  async claimOffline(userId: string): Promise<boolean> {
    const token = this.tokens.get(userId);
    if (!token) return false;
    this.tokens.delete(userId);
    return this.rpc.call<boolean>('p.claim', [userId, token]);
  }

  async connectionCount(userId: string): Promise<number> {
    try {
      return await this.rpc.call<number>('p.count', [userId]);
    } catch {
      return this.local.get(userId) ?? 0;
    }
  }

  async onlineAmong(userIds: readonly string[]): Promise<Set<string>> {
    if (userIds.length === 0) return new Set();
    try {
      return new Set(await this.rpc.call<string[]>('p.online', [[...userIds]]));
    } catch {
      return new Set(userIds.filter((id) => this.local.has(id)));
    }
  }

  /**
   * This worker stops (after its drain): the users it must persist offline now. While the
   * cluster stops, the primary hands over the users whose connections only this worker
   * still held, the grace periods it owns, and (to the first caller) those of exited
   * workers; a worker stopped alone gets []. Rejects with PrimaryUnavailableError when
   * the primary does not answer within {@link RELEASE_TIMEOUT_MS}.
   */
  async release(): Promise<string[]> {
    this.tokens.clear();
    const users = await this.rpc.call<string[]>('p.release', [], RELEASE_TIMEOUT_MS);
    return Array.isArray(users) ? users.map(String) : [];
  }

  /** Stop listening for transitions. */
  close(): void {
    process.off('message', this.onMessage);
  }
}

/** Per-IP cap (PROTOCOL §1) counted by the primary; this worker's own counter when it does not answer. */
export class ClusterIpCounter implements IpConnectionCounter {
  private readonly fallback = new LocalIpCounter();
  /** IPs whose slot was taken from the fallback (released there). */
  private readonly fallbackHeld = new Map<string, number>();

  constructor(private readonly rpc: WorkerRpc) {}

  async acquire(ip: string, max: number): Promise<boolean> {
    try {
      return await this.rpc.call<boolean>('ip.acquire', [ip, max], 1000);
    } catch {
      const ok = await this.fallback.acquire(ip, max);
      if (ok) this.fallbackHeld.set(ip, (this.fallbackHeld.get(ip) ?? 0) + 1);
      return ok;
    }
  }

  release(ip: string): void {
    const held = this.fallbackHeld.get(ip) ?? 0;
    if (held > 0) {
      if (held === 1) this.fallbackHeld.delete(ip);
      else this.fallbackHeld.set(ip, held - 1);
      this.fallback.release(ip);
      return;
    }
    this.rpc.notify('ip.release', [ip]);
  }
}

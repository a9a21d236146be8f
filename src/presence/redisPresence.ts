/**
 * Deployment-wide presence and per-IP connection counts on Redis (PROTOCOL §1, §3 item
 * 9, §8; key layout and scripts in ./redisScripts.ts).
 *
 * Liveness: every instance refreshes its heartbeat each PRESENCE_HEARTBEAT_MS and, in the
 * same tick, reaps instances silent for PRESENCE_TTL_MS: their connections and IP slots
 * are dropped and their users announced offline by the one reaper. So a crashed
 * instance's users go offline within PRESENCE_TTL_MS + PRESENCE_HEARTBEAT_MS (20 s by
 * default). A gracefully stopped instance is reaped the same way, which also ends the
 * grace periods it owned. The last live instance to stop gracefully has no one left to
 * reap it: it drops itself at once ({@link RedisPresence.release}) so that its users'
 * `lastSeen` is persisted.
 *
 * Device cap: {@link RedisPresence.admit} checks and registers in one script (ADMIT), and
 * reserves the slot in the mirror before sending it, so concurrent logins on any
 * instances never exceed MAX_CONNECTIONS_PER_USER.
 *
 * Redis down: each process keeps a mirror of its own connections and IP slots and
 * answers from it (per-process device cap, IP cap and online set; no presence events).
 * On every reconnect the mirror is written back in one script (RESYNC), which also
 * reports the users who came or went meanwhile, and grace periods that ended during the
 * outage are claimed then.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from '../fanout/redisClient.ts';
import type { IpConnectionCounter } from '../gateway/admission.ts';
import type { Logger } from '../observability/logger.ts';
import type { Admission, Presence, PresenceListener } from './presence.ts';
import { ADMIT, ALL_SCRIPTS, CLAIM, DISCONNECT, HEARTBEAT, IP_ACQUIRE, IP_RELEASE, ONLINE, REAP, RELEASE, RESYNC } from './redisScripts.ts';

/** Users whose online state one Redis script reads in {@link RedisPresence.onlineAmong}. */
export const ONLINE_CHUNK = 500;

/** Options of {@link RedisPresence} (ms). */
export interface RedisPresenceOptions {
  /** REDIS_KEY_PREFIX. */
  prefix: string;
  /** This process's instance id (no `|`). */
  instanceId: string;
  /** OFFLINE_GRACE_MS. */
  graceMs: number;
  /** PRESENCE_HEARTBEAT_MS. */
  heartbeatMs: number;
  /** PRESENCE_TTL_MS (raised to 2 × heartbeat when smaller). */
  ttlMs: number;
  logger: Logger;
}

/** {@link Presence} and {@link IpConnectionCounter} across instances, on one Redis command connection. */
export class RedisPresence implements Presence {
  /** userId → connection ids on this instance (the mirror). */
  private readonly conns = new Map<string, Set<string>>();
  /** ip → open connections on this instance (the mirror). */
  private readonly ips = new Map<string, number>();
  /** Grace tokens this instance owns, by user. */
  private readonly tokens = new Map<string, string>();
  /** Grace periods that ended while Redis was unreachable: claimed after the next resync. */
  private readonly overdue = new Set<string>();
  private readonly listeners: PresenceListener[] = [];
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly ttlMs: number;
  private timer: NodeJS.Timeout | undefined;
  /** True once the mirror was written back after the current connection became ready. */
  private synced = false;
  /** True once {@link release} ran: nothing is written back or re-registered any more. */
  private released = false;

  /** Adapter for the gateway's per-IP cap (PROTOCOL §1). */
  readonly ipCounter: IpConnectionCounter = {
    acquire: (ip, max) => this.acquireIp(ip, max),
    release: (ip) => this.releaseIp(ip),
  };

  constructor(
    private readonly client: Redis,
    private readonly opts: RedisPresenceOptions,
  ) {
    this.ttlMs = Math.max(opts.ttlMs, 2 * opts.heartbeatMs);
    client.on('ready', () => this.resync());
    client.on('error', () => (this.synced = false));
    client.on('end', () => (this.synced = false));
  }

  /** Register this instance now (when connected) and start the heartbeat/reap timer. */
  start(): void {
    if (this.client.isReady) this.resync();
    this.timer = setInterval(() => void this.tick(), this.opts.heartbeatMs);
    this.timer.unref();
  }

  /** Stop the timer and wait (≤ 1 s) for in-flight updates. The instance is left to be reaped (ends its grace periods). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.race([Promise.allSettled([...this.inflight]), new Promise((r) => setTimeout(r, 1000))]);
  }

  onTransitions(listener: PresenceListener): void {
    this.listeners.push(listener);
  }

  async admit(userId: string, connId: string, max: number): Promise<Admission> {
    let set = this.conns.get(userId);
    // The mirror holds this instance's connections and in-flight admissions (a slot is
    // reserved here before any await): enough to refuse locally, and the whole count
    // while Redis is unreachable.
    if ((set?.size ?? 0) >= max) return 'refused';
    if (!set) this.conns.set(userId, (set = new Set()));
    set.add(connId);
    this.tokens.delete(userId);
    this.overdue.delete(userId);
    if (!this.live()) return 'again';
    let r: unknown;
    try {
      const keys = [this.k('pu:', userId), this.k('pis:', this.opts.instanceId), this.k('pg:', userId)];
      r = await this.track(ADMIT.run(this.client, keys, [this.opts.instanceId, userId, String(max)]));
    } catch {
      return 'again';
    }
    if (Number(r) === -1) {
      set.delete(connId);
      if (set.size === 0 && this.conns.get(userId) === set) this.conns.delete(userId);
      return 'refused';
    }
    return Number(r) === 1 ? 'first' : 'again';
  }

  async disconnected(userId: string, connId: string): Promise<boolean> {
    const set = this.conns.get(userId);
    if (!set || !set.delete(connId)) return false;
    if (set.size === 0) this.conns.delete(userId);
    if (!this.live()) return false;
    const inst = this.opts.instanceId;
    const token = `${inst}|${randomBytes(6).toString('hex')}`;
    const px = this.opts.graceMs + 2 * this.ttlMs + 5000;
    const keys = [this.k('pu:', userId), this.k('pis:', inst), this.k('pg:', userId), this.k('pig:', inst)];
    const r = await this.track(DISCONNECT.run(this.client, keys, [inst, userId, token, String(px)])).catch(() => 0);
    if (Number(r) !== 1) return false;
    this.tokens.set(userId, token);
    return true;
  }

  async claimOffline(userId: string): Promise<boolean> {
    const token = this.tokens.get(userId);
    if (!token || this.conns.has(userId)) return false;
    if (!this.live()) {
      this.overdue.add(userId);
      return false;
    }
    this.tokens.delete(userId);
    try {
      const r = await this.track(CLAIM.run(this.client, [this.k('pu:', userId), this.k('pg:', userId), this.k('pig:', this.opts.instanceId)], [token, userId]));
      return Number(r) === 1;
    } catch {
      this.tokens.set(userId, token);
      this.overdue.add(userId);
      return false;
    }
  }

  /**
   * Drop this instance now when it is the last live one (RELEASE), after in-flight updates
   * (≤ 1 s); resolves the users now offline. With another live instance, or Redis
   * unreachable, resolves [] and leaves this instance to be reaped. Stops the heartbeat
   * either way.
   */
  async release(): Promise<string[]> {
    if (this.released) return [];
    this.released = true;
    clearInterval(this.timer);
    await Promise.race([Promise.allSettled([...this.inflight]), new Promise((r) => setTimeout(r, 1000))]);
    if (!this.live()) return [];
    try {
      const [dropped, users] = (await this.track(RELEASE.run(this.client, [this.k('pi', '')], [this.opts.prefix, String(this.ttlMs), this.opts.instanceId]))) as [number, string[]];
      if (Number(dropped) !== 1) return [];
      this.conns.clear();
      this.tokens.clear();
      this.overdue.clear();
      return [...new Set(users)];
    } catch (err) {
      this.opts.logger.warn('presence: release failed; this instance is left to be reaped', { err: (err as Error).message });
      return [];
    }
  }

  async connectionCount(userId: string): Promise<number> {
    const local = this.conns.get(userId)?.size ?? 0;
    if (!this.live()) return local;
    try {
      const vals = await this.client.hVals(this.k('pu:', userId));
      return vals.reduce((n, v) => n + Number(v), 0);
    } catch {
      return local;
    }
  }

  async onlineAmong(userIds: readonly string[]): Promise<Set<string>> {
    const ids = [...new Set(userIds)];
    const localOnly = () => new Set(ids.filter((id) => this.conns.has(id)));
    if (ids.length === 0) return new Set();
    if (!this.live()) return localOnly();
    try {
      // One script per ONLINE_CHUNK keys, sent together (node-redis pipelines them): Redis
      // runs each atomically but other clients' commands between them, where one script over
      // 50,000 contacts held its only thread ~24 ms per call (audit 7, F1).
      const chunks: Promise<number[]>[] = [];
      for (let i = 0; i < ids.length; i += ONLINE_CHUNK) {
        const keys = ids.slice(i, i + ONLINE_CHUNK).map((id) => this.k('pu:', id));
        chunks.push(ONLINE.run(this.client, keys, []) as Promise<number[]>);
      }
      const flags = (await Promise.all(chunks)).flat();
      return new Set(ids.filter((_, i) => Number(flags[i]) === 1));
    } catch {
      return localOnly();
    }
  }

  private async acquireIp(ip: string, max: number): Promise<boolean> {
    const local = this.ips.get(ip) ?? 0;
    let ok: boolean;
    if (this.live()) {
      try {
        const r = await this.track(IP_ACQUIRE.run(this.client, [this.k('ip:', ip), this.k('ipi:', this.opts.instanceId)], [this.opts.instanceId, ip, String(max)]));
        ok = Number(r) === 1;
      } catch {
        ok = local < max;
      }
    } else {
      ok = local < max;
    }
    if (ok) this.ips.set(ip, (this.ips.get(ip) ?? 0) + 1);
    return ok;
  }

  private releaseIp(ip: string): void {
    const n = (this.ips.get(ip) ?? 0) - 1;
    if (n < 0) return;
    if (n === 0) this.ips.delete(ip);
    else this.ips.set(ip, n);
    if (!this.live()) return;
    void this.track(IP_RELEASE.run(this.client, [this.k('ip:', ip), this.k('ipi:', this.opts.instanceId)], [this.opts.instanceId, ip])).catch(() => {});
  }

  private k(kind: string, id: string): string {
    return this.opts.prefix + kind + id;
  }

  private live(): boolean {
    return this.synced && this.client.isReady;
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p)).catch(() => {});
    return p;
  }

  /**
   * Load the scripts, then write the mirror back (RESYNC). Both are queued before any other
   * presence command on this connection, so every later update applies after the resync.
   */
  private resync(): void {
    if (!this.client.isReady || this.released) return;
    for (const s of ALL_SCRIPTS) this.client.scriptLoad(s.src).catch(() => {});
    const args = [this.opts.prefix, this.opts.instanceId, String(this.conns.size)];
    for (const [u, set] of this.conns) args.push(u, String(set.size));
    args.push(String(this.ips.size));
    for (const [ip, n] of this.ips) args.push(ip, String(n));
    const p = this.track(RESYNC.run(this.client, [this.k('pi', '')], args));
    this.synced = true;
    p.then(
      (r) => {
        const [online, offline] = r as [string[], string[]];
        if (online.length || offline.length) this.opts.logger.info('presence resynced with redis', { online: online.length, offline: offline.length });
        this.emit(online, offline);
        void this.claimOverdue();
      },
      (err: Error) => {
        this.synced = false;
        this.opts.logger.warn('presence resync failed; retried next heartbeat', { err: err.message });
      },
    );
  }

  private async claimOverdue(): Promise<void> {
    const users = [...this.overdue];
    this.overdue.clear();
    const off: string[] = [];
    for (const u of users) if (await this.claimOffline(u)) off.push(u);
    this.emit([], off);
  }

  /** Heartbeat, then reap silent instances (PRESENCE_TTL_MS). */
  private async tick(): Promise<void> {
    if (!this.client.isReady || this.released) return;
    if (!this.synced) return this.resync();
    try {
      const ok = await this.track(HEARTBEAT.run(this.client, [this.k('pi', '')], [this.opts.instanceId]));
      if (Number(ok) !== 1) {
        this.opts.logger.warn('presence: this instance was reaped (silent past PRESENCE_TTL_MS); re-registering');
        return this.resync();
      }
      const off = (await this.track(REAP.run(this.client, [this.k('pi', '')], [this.opts.prefix, String(this.ttlMs), this.opts.instanceId]))) as string[];
      if (off.length) {
        this.opts.logger.info('presence: reaped a silent instance', { offline: off.length });
        this.emit([], [...new Set(off)]);
      }
    } catch (err) {
      this.opts.logger.debug('presence heartbeat failed', { err: (err as Error).message });
    }
  }

  private emit(online: string[], offline: string[]): void {
    if (online.length === 0 && offline.length === 0) return;
    for (const l of this.listeners) {
      try {
        l(online, offline);
      } catch (err) {
        this.opts.logger.error('presence listener failed', { err: (err as Error).message });
      }
    }
  }
}

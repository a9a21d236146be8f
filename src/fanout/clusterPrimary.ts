/**
 * The node:cluster primary's side of one-host scale-out (cluster-server.ts): relays
 * deliveries to the workers that hold their users, holds deployment-wide presence and
 * per-IP counts when there is no Redis, serves the workers' rate limits
 * (rate-limiter-flexible RateLimiterClusterMaster) and aggregated /metrics (prom-client
 * AggregatorRegistry). No socket, chat or database code runs here.
 */
import cluster, { type Worker } from 'node:cluster';
import client from 'prom-client';
import { RateLimiterClusterMaster } from 'rate-limiter-flexible';
import type { Logger } from '../observability/logger.ts';
import { PresenceTable } from '../presence/table.ts';
import { CH, isMsg, type BusMsg, type PresenceMsg, type RpcMsg, type RpcReply, type TrackMsg } from './clusterIpc.ts';

/** Options of {@link ClusterHub}. */
export interface ClusterHubOptions {
  /** OFFLINE_GRACE_MS: grace left to a dead worker's pending offline announcements, ms. */
  graceMs: number;
  logger: Logger;
}

/** Primary-side relay and shared state for the workers. */
export class ClusterHub {
  /** userId → ids of workers holding connections of the user. */
  private readonly routes = new Map<string, Set<number>>();
  private readonly byWorker = new Map<number, Set<string>>();
  private readonly table = new PresenceTable();
  /** ip → worker id → open connections. */
  private readonly ips = new Map<string, Map<number, number>>();
  private readonly graceTimers = new Set<NodeJS.Timeout>();
  /** Workers whose server is listening (their presence listeners are installed). */
  private readonly listening = new Set<number>();
  private readonly aggregator: client.AggregatorRegistry<client.PrometheusContentType>;
  /** Deliveries relayed (for tests and logs). */
  relayed = 0;

  constructor(private readonly opts: ClusterHubOptions) {
    new RateLimiterClusterMaster();
    this.aggregator = new client.AggregatorRegistry();
  }

  /** Start handling worker messages (call once, in the primary). */
  attach(): void {
    cluster.on('message', (worker, msg) => this.onMessage(worker, msg));
    cluster.on('listening', (worker) => this.listening.add(worker.id));
  }

  /** A worker exited: forget its routes, connections and IP slots; hand its users' offline transitions to a live worker. */
  workerGone(workerId: number): void {
    this.listening.delete(workerId);
    for (const userId of this.byWorker.get(workerId) ?? []) this.untrack(workerId, userId);
    this.byWorker.delete(workerId);
    for (const [ip, byWorker] of this.ips) if (byWorker.delete(workerId) && byWorker.size === 0) this.ips.delete(ip);
    const dropped = this.table.dropOwner(String(workerId));
    if (dropped.offline.length) this.announce(dropped.offline);
    for (const g of dropped.grace) {
      const t = setTimeout(() => {
        this.graceTimers.delete(t);
        if (this.table.claim(g.userId, g.token)) this.announce([g.userId]);
      }, this.opts.graceMs);
      t.unref();
      this.graceTimers.add(t);
    }
  }

  /** Stop timers. */
  close(): void {
    for (const t of this.graceTimers) clearTimeout(t);
    this.graceTimers.clear();
  }

  private onMessage(worker: Worker, msg: unknown): void {
    if (isMsg<BusMsg>(msg, CH.bus)) return this.relay(worker.id, msg);
    if (isMsg<TrackMsg>(msg, CH.track)) {
      if (msg.p) this.trackUser(worker.id, msg.u);
      else this.untrack(worker.id, msg.u);
      return;
    }
    if (isMsg<RpcMsg>(msg, CH.rpc)) void this.serve(worker, msg);
  }

  private relay(from: number, msg: BusMsg): void {
    const targets = new Set<number>();
    for (const u of msg.u) for (const w of this.routes.get(u) ?? []) if (w !== from) targets.add(w);
    for (const w of targets) {
      const wk = cluster.workers?.[w];
      if (wk?.isConnected()) {
        wk.send(msg);
        this.relayed++;
      }
    }
  }

  private trackUser(workerId: number, userId: string): void {
    let set = this.routes.get(userId);
    if (!set) this.routes.set(userId, (set = new Set()));
    set.add(workerId);
    let users = this.byWorker.get(workerId);
    if (!users) this.byWorker.set(workerId, (users = new Set()));
    users.add(userId);
  }

  private untrack(workerId: number, userId: string): void {
    const set = this.routes.get(userId);
    if (set && set.delete(workerId) && set.size === 0) this.routes.delete(userId);
    this.byWorker.get(workerId)?.delete(userId);
  }

  private async serve(worker: Worker, msg: RpcMsg): Promise<void> {
    let reply: RpcReply;
    try {
      reply = { ch: CH.reply, id: msg.id, r: await this.run(worker.id, msg) };
    } catch (err) {
      reply = { ch: CH.reply, id: msg.id, e: (err as Error).message };
    }
    if (msg.id !== 0 && worker.isConnected()) worker.send(reply);
  }

  private async run(workerId: number, msg: RpcMsg): Promise<unknown> {
    const a = msg.a;
    const owner = String(workerId);
    switch (msg.op) {
      case 'p.disconnected':
        return this.table.disconnect(owner, String(a[0]), String(a[1]));
      case 'p.claim':
        return this.table.claim(String(a[0]), String(a[1]));
      case 'p.admit': {
        // Device cap and registration in one step: the primary runs one message at a time (PROTOCOL §3 item 9).
        const userId = String(a[0]);
        if (this.table.count(userId) >= Number(a[2])) return 'refused';
        return this.table.connect(owner, userId, String(a[1])) ? 'first' : 'again';
      }
      case 'p.count':
        return this.table.count(String(a[0]));
      case 'p.online':
        return [...this.table.online((a[0] as string[]) ?? [])];
      case 'ip.acquire':
        return this.acquireIp(workerId, String(a[0]), Number(a[1]));
      case 'ip.release':
        return this.releaseIp(workerId, String(a[0]));
      case 'metrics':
        return this.aggregator.clusterMetrics();
      default:
        throw new Error(`unknown op ${String(msg.op)}`);
    }
  }

  private acquireIp(workerId: number, ip: string, max: number): boolean {
    let byWorker = this.ips.get(ip);
    let total = 0;
    for (const n of byWorker?.values() ?? []) total += n;
    if (total >= max) return false;
    if (!byWorker) this.ips.set(ip, (byWorker = new Map()));
    byWorker.set(workerId, (byWorker.get(workerId) ?? 0) + 1);
    return true;
  }

  private releaseIp(workerId: number, ip: string): boolean {
    const byWorker = this.ips.get(ip);
    const n = (byWorker?.get(workerId) ?? 0) - 1;
    if (!byWorker || n < 0) return false;
    if (n === 0) byWorker.delete(workerId);
    else byWorker.set(workerId, n);
    if (byWorker.size === 0) this.ips.delete(ip);
    return true;
  }

  /** Send offline transitions to one live worker, which announces them. */
  private announce(off: string[]): void {
    const live = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && w.isConnected() && this.listening.has(w.id));
    const target = live[0];
    if (!target) {
      this.opts.logger.warn('no live worker to announce presence changes', { offline: off.length });
      return;
    }
    target.send({ ch: CH.presence, on: [], off } satisfies PresenceMsg);
  }
}

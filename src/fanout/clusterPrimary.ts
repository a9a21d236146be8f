/**
 * The node:cluster primary's side of one-host scale-out (cluster-server.ts): relays
 * deliveries to the workers that hold their users, holds deployment-wide presence and
 * per-IP counts when there is no Redis, serves the workers' rate limits
 * (rate-limiter-flexible RateLimiterClusterMaster) and aggregated /metrics. No socket,
 * chat or database code runs here.
 *
 * /metrics under the cluster (README "HTTP"): the primary asks every live worker for its
 * registry (`chat:metrics-req`, {@link WORKER_METRICS_TIMEOUT_MS} each) and keeps each
 * worker's last answer. The aggregate sums counters, histograms and gauges over the live
 * workers' last answers, plus, for counters and histograms only, the last answers of the
 * workers that exited: a re-forked worker starts from 0, and without that the sum would
 * go down (Prometheus would read a reset and count the survivors' totals again).
 * Event-loop lag gauges are the highest over the workers (the worst one; `…_min_seconds`
 * the lowest); `process_start_time_seconds` is the primary's, the only restart that
 * resets the aggregate. At shutdown, workers persist their users offline
 * ({@link ClusterHub.beginShutdown}, `p.release`).
 */
import cluster, { type Worker } from 'node:cluster';
import client from 'prom-client';
import { RateLimiterClusterMaster } from 'rate-limiter-flexible';
import type { Logger } from '../observability/logger.ts';
import { PresenceTable } from '../presence/table.ts';
import { CH, isMsg, type BusMsg, type MetricFamily, type MetricsReq, type MetricsRes, type PresenceMsg, type RpcMsg, type RpcReply, type TrackMsg } from './clusterIpc.ts';

/** Longest the primary waits for one worker's metrics, ms; a worker that does not answer counts with its last answer. */
export const WORKER_METRICS_TIMEOUT_MS = 3000;

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
  /** Grace periods of exited workers, finished by a live worker after OFFLINE_GRACE_MS: userId → token and timer. */
  private readonly orphans = new Map<string, { token: string; timer: NodeJS.Timeout }>();
  /** Workers whose server is listening (their presence listeners are installed). */
  private readonly listening = new Set<number>();
  /** Each live worker's last metrics answer. */
  private readonly latest = new Map<number, MetricFamily[]>();
  /** Counters and histograms of exited workers, summed (their last answers). */
  private retired: MetricFamily[] = [];
  private readonly metricWaits = new Map<number, { workerId: number; done: (m?: MetricFamily[]) => void }>();
  private metricSeq = 0;
  /** The primary's start, epoch seconds (`process_start_time_seconds`). */
  private readonly startedS = Math.round(Date.now() / 1000 - process.uptime());
  /** The whole cluster stops: `p.release` hands workers their users. */
  private stopping = false;
  /** Deliveries relayed (for tests and logs). */
  relayed = 0;

  constructor(private readonly opts: ClusterHubOptions) {
    new RateLimiterClusterMaster();
  }

  /** Start handling worker messages (call once, in the primary). */
  attach(): void {
    cluster.on('message', (worker, msg) => this.onMessage(worker, msg));
    cluster.on('listening', (worker) => this.listening.add(worker.id));
  }

  /**
   * A worker exited: forget its routes, connections and IP slots; hand its users' offline
   * transitions to a live worker; keep its last counters and histograms in the aggregate.
   */
  workerGone(workerId: number): void {
    this.listening.delete(workerId);
    for (const w of [...this.metricWaits.values()]) if (w.workerId === workerId) w.done();
    const last = this.latest.get(workerId);
    this.latest.delete(workerId);
    if (last) this.retired = sumFamilies(this.retired, last.filter(isCumulative));
    for (const userId of this.byWorker.get(workerId) ?? []) this.untrack(workerId, userId);
    this.byWorker.delete(workerId);
    for (const [ip, byWorker] of this.ips) if (byWorker.delete(workerId) && byWorker.size === 0) this.ips.delete(ip);
    const dropped = this.table.dropOwner(String(workerId));
    if (dropped.offline.length) this.announce(dropped.offline);
    for (const g of dropped.grace) {
      const timer = setTimeout(() => {
        this.orphans.delete(g.userId);
        if (this.table.claim(g.userId, g.token)) this.announce([g.userId]);
      }, this.opts.graceMs);
      timer.unref();
      clearTimeout(this.orphans.get(g.userId)?.timer);
      this.orphans.set(g.userId, { token: g.token, timer });
    }
  }

  /**
   * The whole cluster is stopping (SIGTERM, crash loop): from now on a worker's
   * `p.release` (after its drain) hands it the users it must persist offline, since no
   * live worker will be left to finish their grace periods. Call before signalling the workers.
   */
  beginShutdown(): void {
    this.stopping = true;
  }

  /** Stop timers. */
  close(): void {
    for (const o of this.orphans.values()) clearTimeout(o.timer);
    this.orphans.clear();
  }

  private onMessage(worker: Worker, msg: unknown): void {
    if (isMsg<BusMsg>(msg, CH.bus)) return this.relay(worker.id, msg);
    if (isMsg<TrackMsg>(msg, CH.track)) {
      if (msg.p) this.trackUser(worker.id, msg.u);
      else this.untrack(worker.id, msg.u);
      return;
    }
    if (isMsg<RpcMsg>(msg, CH.rpc)) return void this.serve(worker, msg);
    if (isMsg<MetricsRes>(msg, CH.metricsRes)) {
      const w = this.metricWaits.get(msg.id);
      if (!w || w.workerId !== worker.id) return;
      if (msg.e !== undefined) this.opts.logger.warn('worker metrics failed', { workerId: worker.id, err: msg.e });
      w.done(msg.m);
    }
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
      case 'p.release':
        return this.release(owner);
      case 'ip.acquire':
        return this.acquireIp(workerId, String(a[0]), Number(a[1]));
      case 'ip.release':
        return this.releaseIp(workerId, String(a[0]));
      case 'metrics':
        return this.clusterMetrics();
      default:
        throw new Error(`unknown op ${String(msg.op)}`);
    }
  }

  /**
   * While the cluster stops: the users `owner` must persist offline (connections only it
   * still holds, grace periods it owns, and the first caller takes exited workers' grace
   * periods). Otherwise [] (the primary hands its users to a live worker when it exits).
   */
  private release(owner: string): string[] {
    if (!this.stopping) return [];
    const { offline, grace } = this.table.dropOwner(owner);
    for (const g of grace) if (this.table.claim(g.userId, g.token)) offline.push(g.userId);
    for (const [userId, o] of this.orphans) {
      clearTimeout(o.timer);
      if (this.table.claim(userId, o.token)) offline.push(userId);
    }
    this.orphans.clear();
    return offline;
  }

  /** Ask every live worker for its metrics (bounded), then render the aggregate (module comment). */
  private async clusterMetrics(): Promise<string> {
    const live = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && w.isConnected());
    await Promise.all(live.map((w) => this.askMetrics(w)));
    const startTime: MetricFamily = {
      name: 'process_start_time_seconds',
      help: 'Start time of the process since unix epoch in seconds (the cluster primary).',
      type: 'gauge',
      aggregator: 'first',
      values: [{ value: this.startedS, labels: {} }],
    };
    const families = [this.retired, ...[...this.latest.values()].map((fs) => fs.map(forAggregate).filter((f): f is MetricFamily => !!f)), [startTime]];
    return client.AggregatorRegistry.aggregate<client.PrometheusContentType>(families).metrics();
  }

  /** One worker's metrics into {@link latest}; resolves (never rejects) on its answer, its exit or the timeout. */
  private askMetrics(worker: Worker): Promise<void> {
    return new Promise((resolve) => {
      const id = ++this.metricSeq;
      const done = (m?: MetricFamily[]) => {
        clearTimeout(timer);
        this.metricWaits.delete(id);
        if (m) this.latest.set(worker.id, m);
        resolve();
      };
      const timer = setTimeout(() => {
        this.opts.logger.warn('worker metrics not answered; using its last answer', { workerId: worker.id, timeoutMs: WORKER_METRICS_TIMEOUT_MS });
        done();
      }, WORKER_METRICS_TIMEOUT_MS);
      this.metricWaits.set(id, { workerId: worker.id, done });
      try {
        worker.send({ ch: CH.metricsReq, id } satisfies MetricsReq);
      } catch {
        done();
      }
    });
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

/** Counters and histograms summed over workers: what a dead worker leaves in the aggregate. */
function isCumulative(f: MetricFamily): boolean {
  return (f.type === 'counter' || f.type === 'histogram') && (f.aggregator ?? 'sum') === 'sum';
}

/** A worker's family as the aggregate takes it: its start time dropped (the primary's is used), event-loop lag averages → maximum. */
function forAggregate(f: MetricFamily): MetricFamily | undefined {
  if (f.name === 'process_start_time_seconds') return undefined;
  if (f.name.startsWith('nodejs_eventloop_lag_') && f.aggregator === 'average') return { ...f, aggregator: 'max' };
  return f;
}

/** `a` + `b` by family, series (metricName and labels) and value: the sum of two sets of counters and histograms. */
function sumFamilies(a: MetricFamily[], b: MetricFamily[]): MetricFamily[] {
  const out = new Map<string, { f: MetricFamily; at: Map<string, number> }>();
  for (const f of [...a, ...b]) {
    let acc = out.get(f.name);
    if (!acc) out.set(f.name, (acc = { f: { name: f.name, help: f.help, type: f.type, aggregator: 'sum', values: [] }, at: new Map() }));
    for (const v of f.values) {
      const key = `${v.metricName ?? ''}|${JSON.stringify(Object.entries(v.labels).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)))}`;
      const i = acc.at.get(key);
      if (i === undefined) {
        acc.at.set(key, acc.f.values.length);
        acc.f.values.push({ ...v, labels: { ...v.labels } });
      } else acc.f.values[i]!.value += v.value;
    }
  }
  return [...out.values()].map((x) => x.f);
}

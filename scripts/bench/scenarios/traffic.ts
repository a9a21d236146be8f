/**
 * Driver side, shared by scenarios: connect clients across load generators, run one
 * open-loop traffic phase on all of them, drain, collect and merge what they recorded
 * (acks, per-device deliveries, lost messages, latency histograms).
 */
import { sleep } from '../../lib/proc.ts';
import type { BenchOptions } from '../args.ts';
import { sourceAddress, type LoadGens } from '../fixture.ts';
import type { ClientSpec, ConnectResult, ProgressResult, TrafficPlan, TrafficResult } from '../ipc.ts';
import { nowMs, parseTag } from '../ipc.ts';
import { mergeHists, newHist, recordMs, summarize, type LatencySummary } from '../histo.ts';
import { slowAckBursts, type SlowAckSummary } from '../stalls.ts';
import type { FlushWindow } from '../flush-probe.ts';

/** Merged result of connecting clients on every load generator. */
export interface ConnectSummary {
  ok: number;
  failed: number;
  failures: Record<string, number>;
  /** First attempt start → last completion, ms. */
  spanMs: number;
  /** connect → auth_success latency. */
  latency: LatencySummary;
  /** CPU used by all load generators while connecting, ms. */
  generatorCpuMs: number;
}

/**
 * One client each for users `firstUser` .. `firstUser + count - 1`, keyed `${prefix}1` ..
 * `${prefix}${count}`, dealt round-robin over `gens` load generators; client k gets source
 * address number `ipBase + k` (see {@link sourceAddress}; none when `sourceIps` is 0).
 */
export function dealClients(gens: number, prefix: string, firstUser: number, count: number, sourceIps: number, ipBase: number): ClientSpec[][] {
  const specs: ClientSpec[][] = Array.from({ length: gens }, () => []);
  for (let k = 0; k < count; k++) specs[k % gens]!.push({ key: `${prefix}${k + 1}`, userId: String(firstUser + k), localAddress: sourceAddress(ipBase + k, sourceIps) });
  return specs;
}

/** Open `specs[i]` on load generator i (all at once, synchronised start), bounded by `timeoutMs` each. */
export async function connectAll(lg: LoadGens, specs: ClientSpec[][], concurrency: number, timeoutMs: number): Promise<ConnectSummary> {
  const total = specs.reduce((n, s) => n + s.length, 0);
  // Room for every generator to sign its tokens first (well under 0.1 ms each).
  const startAt = nowMs() + 300 + Math.ceil(total / 20);
  // Whole-phase bound: every batch of `concurrency` may take up to timeoutMs.
  const bound = 10_000 + Math.ceil(total / Math.max(1, concurrency)) * timeoutMs;
  const rs = await lg.all<ConnectResult>((i) => ({ op: 'connect', clients: specs[i] ?? [], concurrency, timeoutMs, startAt }), bound);
  const failures: Record<string, number> = {};
  for (const r of rs) for (const [k, v] of Object.entries(r.failures)) failures[k] = (failures[k] ?? 0) + v;
  const used = rs.filter((_, i) => (specs[i]?.length ?? 0) > 0);
  const spanMs = used.length ? Math.max(...used.map((r) => r.lastEnd)) - Math.min(...used.map((r) => r.firstStart)) : 0;
  return {
    ok: rs.reduce((n, r) => n + r.ok, 0),
    failed: rs.reduce((n, r) => n + r.failed, 0),
    failures,
    spanMs,
    latency: summarize(mergeHists(rs.map((r) => r.latency))),
    generatorCpuMs: Math.round(rs.reduce((n, r) => n + r.cpuMs, 0)),
  };
}

/** Merged traffic phase. Latencies in ms; rates per second of the measured window. */
export interface TrafficSummary {
  sent: number;
  sentMeasured: number;
  acked: number;
  ackedMeasured: number;
  /** Sends answered with an error frame. */
  errors: number;
  errorCodes: Record<string, number>;
  /** Sends with neither ack nor error by the end of the drain. */
  unacked: number;
  /** Acknowledged but not delivered to every expected connection by the end of the drain. */
  lost: number;
  /** Deliveries beyond the expected count (same message twice on a connection). */
  duplicates: number;
  /**
   * Throughput: measured-window sends acknowledged within GOODPUT_ACK_MS (1 s), per second
   * of window. Equals the offered rate exactly while the server keeps up.
   */
  ackedPerSec: number;
  /** Acks received per second inside the measured window: the server's service rate when saturated. */
  ackRateInWindow: number;
  /** Measured-window sends acknowledged by the end of the drain. */
  ackedMeasuredEventually: number;
  /** Delivery frames received per second inside the measured window. */
  framesPerSec: number;
  ack: LatencySummary;
  /** Send → delivery on each connection. */
  perDevice: LatencySummary;
  /** Send → delivery on the last of the expected connections (messages fully delivered). */
  allDevices: LatencySummary;
  /** How late the generator sent versus schedule. */
  lag: LatencySummary;
  /** How the acks at or above the p99 are spread over the window: in a few stalls, or throughout (../stalls.ts). */
  slowAcks: SlowAckSummary;
  /** Epoch ms of the measured window's start: the origin of `slowAcks`' burst times, for matching them with other logs. */
  windowStartMs: number;
  maxBufferedBytes: number;
  drainMs: number;
  /** False when the drain hit its bound with acks or deliveries outstanding ("lost" may then include deliveries still in flight). */
  drainComplete: boolean;
  /** CPU use during the measured window, % of one core: all load generators, and the server (when probed). */
  generatorCpuPct: number;
  serverCpuPct: number | null;
  /** CPU of the private PostgreSQL (postmaster + backends) and Redis over the window, % of one core (null: not ours to read). */
  dbCpuPct: number | null;
  redisCpuPct: number | null;
  /** The server's event-loop lateness over the window (single process only; null: not measured). */
  serverLoop: LoopLateness | null;
  /** The disk under the database over the window (../flush-probe.ts; null: not probed). */
  disk: DiskFlushes | null;
}

/** What the disk flush probe saw in the measured window. */
export interface DiskFlushes {
  /** Probe flushes (4 KiB write + fdatasync) started in the window. */
  flushes: number;
  /** Those that took `thresholdMs` or more. */
  slowFlushes: number;
  /** The slow-flush threshold, ms. */
  thresholdMs: number;
  /** The longest flush, ms. */
  maxMs: number;
  /** The slow flushes: start (ms from the window start) and length (ms). */
  slow: { atMs: number; ms: number }[];
}

/** Optional probe of the server process during the measured window. */
export interface ServerProbe {
  /** CPU seconds (user + system) used by the server so far. */
  cpuSeconds(): number;
  /** CPU seconds used so far by the private PostgreSQL / Redis (undefined: not started by the bench). */
  dbCpuSeconds?(): number | undefined;
  redisCpuSeconds?(): number | undefined;
  /**
   * The server's event-loop lateness since the previous call (each call starts a new
   * interval): called at the window's start and end. Undefined or null: not available.
   */
  loopLateness?(): Promise<LoopLateness | null>;
  /** The disk flush probe's readings for [fromMs, toMs) (epoch ms); undefined: no probe. */
  flushes?(fromMs: number, toMs: number): FlushWindow | undefined;
}

/**
 * How late the server's event loop ran a 10 ms timer over the measured window (prom-client's
 * `nodejs_eventloop_lag_*`, i.e. `monitorEventLoopDelay` with 10 ms resolution, less those
 * 10 ms), ms: a stall of the server's own thread (its work, a GC pause, or the host not
 * running it) shows here; one elsewhere (database, generators) does not.
 */
export interface LoopLateness {
  /** 99th percentile of the lateness, ms. */
  p99Ms: number;
  /** Largest lateness, ms. */
  maxMs: number;
}

/** prom-client's event-loop timer interval, ms (collectDefaultMetrics' eventLoopMonitoringPrecision). */
const LOOP_TIMER_MS = 10;

/**
 * {@link LoopLateness} from a Prometheus text exposition of prom-client's default metrics;
 * null when they are missing. prom-client resets the histogram on each scrape.
 */
export function loopLatenessFromMetrics(text: string): LoopLateness | null {
  const read = (name: string) => {
    const m = new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(text);
    return m ? Number(m[1]) * 1000 : undefined;
  };
  const p99 = read('nodejs_eventloop_lag_p99_seconds');
  const max = read('nodejs_eventloop_lag_max_seconds');
  if (p99 === undefined || max === undefined || !Number.isFinite(p99) || !Number.isFinite(max)) return null;
  return { p99Ms: Math.max(0, p99 - LOOP_TIMER_MS), maxMs: Math.max(0, max - LOOP_TIMER_MS) };
}

/**
 * Run a phase: `plans[i]` goes to load generator i (same `startAt`/gen/window for all).
 * Waits for the schedule to end, then drains (until every ack arrived and every acked
 * message reached `expected` connections, at most `opts.drainMs`), then collects.
 */
export async function driveTraffic(lg: LoadGens, plans: TrafficPlan[], expected: number, opts: BenchOptions, probe?: ServerProbe): Promise<TrafficSummary> {
  const p0 = plans[0]!;
  await lg.all((i) => ({ op: 'traffic', plan: plans[i]! }), 10_000);
  const winStart = p0.startAt + p0.warmupMs;
  const endAt = winStart + p0.durationMs;
  const sleepUntil = async (t: number) => {
    for (let i = 0; i < 100_000 && nowMs() < t; i++) await sleep(Math.min(1000, Math.max(1, t - nowMs())));
  };
  await sleepUntil(winStart);
  await probe?.loopLateness?.().catch(() => null);
  const cpu0 = probe?.cpuSeconds();
  const db0 = probe?.dbCpuSeconds?.();
  const redis0 = probe?.redisCpuSeconds?.();
  await sleepUntil(endAt);
  const pct = (s0: number | undefined, s1: number | undefined) => (s0 === undefined || s1 === undefined ? null : Math.round(((s1 - s0) / (p0.durationMs / 1000)) * 100));
  const serverCpuPct = pct(cpu0, probe?.cpuSeconds());
  const dbCpuPct = pct(db0, probe?.dbCpuSeconds?.());
  const redisCpuPct = pct(redis0, probe?.redisCpuSeconds?.());
  const serverLoop = (await probe?.loopLateness?.().catch(() => null)) ?? null;
  const drainStart = nowMs();
  let drainComplete = false;
  for (let i = 0; i < 10_000; i++) {
    const ps = await lg.all<ProgressResult>(() => ({ op: 'progress' }), 10_000);
    const acked = ps.reduce((n, p) => n + p.acked, 0);
    const delivered = ps.reduce((n, p) => n + p.delivered, 0);
    const done = ps.every((p) => !p.sending) && ps.every((p) => p.pendingAcks === 0) && delivered >= acked * expected;
    drainComplete = done;
    if (done || nowMs() - drainStart >= opts.drainMs) break;
    await sleep(200);
  }
  const drainMs = nowMs() - drainStart;
  const rs = await lg.all<TrafficResult>(() => ({ op: 'collect' }), 60_000);
  // Flushes that started in the window, or up to 200 ms before it (a stall then delays its first sends).
  const fw = probe?.flushes?.(winStart - 200, endAt);
  const disk: DiskFlushes | null = fw
    ? { flushes: fw.flushes, slowFlushes: fw.slow.length, thresholdMs: fw.thresholdMs, maxMs: fw.maxMs, slow: fw.slow.map((f) => ({ atMs: Math.round(f.atMs - winStart), ms: Math.round(f.ms * 10) / 10 })) }
    : null;
  return { ...merge(rs, p0, expected, drainMs, disk), windowStartMs: Math.round(winStart), serverCpuPct, dbCpuPct, redisCpuPct, serverLoop, drainComplete, disk };
}

function merge(rs: TrafficResult[], plan: TrafficPlan, expected: number, drainMs: number, disk: DiskFlushes | null): Omit<TrafficSummary, 'windowStartMs' | 'serverCpuPct' | 'dbCpuPct' | 'redisCpuPct' | 'serverLoop' | 'drainComplete' | 'disk'> {
  const deliveries = new Map<string, [number, number]>();
  for (const r of rs) {
    for (const [id, n, last] of r.deliveries) {
      const d = deliveries.get(id);
      if (d) {
        d[0] += n;
        d[1] = Math.max(d[1], last);
      } else deliveries.set(id, [n, last]);
    }
  }
  let lost = 0;
  let ackedMeasured = 0;
  for (const r of rs) {
    for (const id of r.ackedIds) {
      if ((deliveries.get(id)?.[0] ?? 0) < expected) lost++;
      if (parseTag(id, plan.gen)?.measured) ackedMeasured++;
    }
  }
  const all = newHist();
  let duplicates = 0;
  for (const [id, [n, last]] of deliveries) {
    if (n > expected) duplicates += n - expected;
    const t = parseTag(id, plan.gen);
    if (t?.measured && n >= expected) recordMs(all, last - t.scheduledMs);
  }
  const errorCodes: Record<string, number> = {};
  for (const r of rs) for (const [k, v] of Object.entries(r.errorCodes)) errorCodes[k] = (errorCodes[k] ?? 0) + v;
  const sum = (f: (r: TrafficResult) => number) => rs.reduce((n, r) => n + f(r), 0);
  const secs = plan.durationMs / 1000;
  return {
    sent: sum((r) => r.sent),
    sentMeasured: sum((r) => r.sentMeasured),
    acked: sum((r) => r.acked),
    ackedMeasured,
    errors: sum((r) => r.errors),
    errorCodes,
    unacked: sum((r) => r.pendingAcks),
    lost,
    duplicates,
    ackedPerSec: sum((r) => r.ackedInTime) / secs,
    ackRateInWindow: sum((r) => r.acksInWindow) / secs,
    ackedMeasuredEventually: ackedMeasured,
    framesPerSec: sum((r) => r.framesInWindow) / secs,
    ack: summarize(mergeHists(rs.map((r) => r.ackHist))),
    perDevice: summarize(mergeHists(rs.map((r) => r.deviceHist))),
    allDevices: summarize(all),
    lag: summarize(mergeHists(rs.map((r) => r.lagHist))),
    slowAcks: slowAckBursts(rs.flatMap((r) => r.ackTrace), 0.99, disk?.slow),
    maxBufferedBytes: Math.max(0, ...rs.map((r) => r.maxBuffered)),
    drainMs: Math.round(drainMs),
    generatorCpuPct: Math.round((sum((r) => r.cpuMsInWindow) / plan.durationMs) * 100),
  };
}

/** Build the per-load-generator plans: `senders[i]` for process i, rate split by sender count. */
export function splitPlans(base: Omit<TrafficPlan, 'senders' | 'rate' | 'index'>, senders: TrafficPlan['senders'][], totalRate: number): TrafficPlan[] {
  const total = senders.reduce((n, s) => n + s.length, 0);
  // Stagger the processes' schedules so their sends interleave instead of coinciding.
  return senders.map((s, index) => ({ ...base, startAt: base.startAt + (index * 1000) / totalRate / senders.length, index, senders: s, rate: total ? (totalRate * s.length) / total : 0 }));
}

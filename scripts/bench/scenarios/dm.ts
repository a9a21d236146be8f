/**
 * Direct-message workload: `pairs` sender users each DM their own recipient, who has
 * `devices` connections; senders and recipients sit in different load-generator
 * processes. Feeds the dm-throughput, dm-latency, memory and cluster scenarios.
 */
import { sleep } from '../../lib/proc.ts';
import { cpuSecondsOf } from '../../lib/server.ts';
import { assertAlive, bootServer, ensureRedis, freshDatabase, LoadGens, seed, serverEnv, sourceAddress, type BenchContext } from '../fixture.ts';
import type { ClientSpec, SenderSpec } from '../ipc.ts';
import { nowMs } from '../ipc.ts';
import type { Figure, RunResult } from '../stats.ts';
import { BURST_GAP_MS, BURST_MIN_ACKS } from '../stalls.ts';
import { connectAll, driveTraffic, loopLatenessFromMetrics, splitPlans, type ConnectSummary, type TrafficSummary } from './traffic.ts';

/** One DM run: the traffic summary plus server RSS (bytes; 0 when not measurable). */
export interface DmMeasure {
  rate: number;
  traffic: TrafficSummary;
  connect: ConnectSummary;
  rssBase: number;
  rssConnected: number;
  rssAfter: number;
  /** RSS after the server then idled `idleSettleMs` (0 when not read: see {@link DmTarget.settle}). */
  rssAfterIdle: number;
  /** Set when the server answered UNKNOWN_TYPE to send_private_message. */
  unavailable?: string;
}

/** Which server to run: the single process, or the cluster entry with Redis. */
export interface DmTarget {
  label: string;
  cluster?: boolean;
  /** After the run, let the server idle `--idle-settle` seconds and read RSS again (memory scenario). */
  settle?: boolean;
}

/** Run the DM workload once at `rate` DM/s against a fresh server and database. */
export async function measureDm(ctx: BenchContext, rate: number, target: DmTarget): Promise<DmMeasure> {
  const { opts, infra } = ctx;
  const P = opts.pairs;
  const D = opts.devices;
  const dbUrl = await freshDatabase(infra, target.label);
  await seed(
    dbUrl,
    2 * P,
    Array.from({ length: P }, (_, p) => [String(p + 1), String(P + p + 1)] as const),
  );
  const extra: Record<string, string> = target.cluster ? { REDIS_URL: await ensureRedis(infra), CLUSTER_WORKERS: '2', REDIS_KEY_PREFIX: `b${Date.now()}:` } : {};
  const server = await bootServer(ctx, serverEnv(infra, dbUrl, opts, extra), target.label, target.cluster);
  let lg: LoadGens | undefined;
  try {
    await sleep(1000);
    const rssBase = target.cluster ? 0 : server.rssBytes();
    lg = await LoadGens.start(opts.loadgens, server.wsUrl, infra.jwtSecret, opts.clientHandshake);
    const N = lg.size;
    const specs: ClientSpec[][] = Array.from({ length: N }, () => []);
    const senders: SenderSpec[][] = Array.from({ length: N }, () => []);
    let ip = 0;
    for (let p = 0; p < P; p++) {
      specs[p % N]!.push({ key: `s${p}`, userId: String(p + 1), localAddress: sourceAddress(ip++, opts.sourceIps) });
      senders[p % N]!.push({ key: `s${p}`, target: String(P + p + 1) });
      for (let d = 0; d < D; d++) specs[(p + 1) % N]!.push({ key: `r${p}d${d}`, userId: String(P + p + 1), localAddress: sourceAddress(ip++, opts.sourceIps) });
    }
    const connect = await connectAll(lg, specs, opts.connectConcurrency, 15_000);
    if (connect.failed) throw new Error(`${connect.failed} of ${connect.ok + connect.failed} connections failed: ${JSON.stringify(connect.failures)}`);
    await sleep(1000);
    const rssConnected = target.cluster ? 0 : server.rssBytes();
    const gen = `${target.label.replace(/[^a-z0-9]/gi, '')}${Date.now() % 1e6}`;
    const plans = splitPlans({ kind: 'dm', gen, startAt: nowMs() + 1000, warmupMs: opts.warmupMs, durationMs: opts.durationMs, contentBytes: opts.contentBytes }, senders, rate);
    const traffic = await driveTraffic(lg, plans, D, opts, {
      cpuSeconds: () => server.cpuSeconds(),
      dbCpuSeconds: () => (infra.ownPg?.pid ? cpuSecondsOf(infra.ownPg.pid) : undefined),
      redisCpuSeconds: () => (target.cluster && infra.ownRedis?.pid ? cpuSecondsOf(infra.ownRedis.pid) : undefined),
      // A cluster's /metrics aggregates its workers' gauges: no one worker's lateness.
      loopLateness: target.cluster ? undefined : async () => loopLatenessFromMetrics(await (await fetch(`http://127.0.0.1:${server.port}/metrics`, { signal: AbortSignal.timeout(5000) })).text()),
      flushes: (from, to) => infra.flushProbe?.window(from, to),
    });
    assertAlive(server, 'during the run');
    await sleep(1000);
    const rssAfter = target.cluster ? 0 : server.rssBytes();
    let rssAfterIdle = 0;
    if (target.settle && !target.cluster) {
      await sleep(Math.max(0, opts.idleSettleMs - 1000));
      assertAlive(server, 'while idling after the run');
      rssAfterIdle = server.rssBytes();
    }
    const unknown = traffic.errorCodes.UNKNOWN_TYPE ?? 0;
    return { rate, traffic, connect, rssBase, rssConnected, rssAfter, rssAfterIdle, unavailable: unknown && traffic.acked === 0 ? 'send_private_message: UNKNOWN_TYPE' : undefined };
  } finally {
    await lg?.stop();
    await server.stop('SIGTERM', 20_000);
  }
}

const MB = 1024 * 1024;

/** Details kept in the JSON report for a DM run. */
function info(m: DmMeasure): Record<string, unknown> {
  return { rate: m.rate, traffic: m.traffic, connect: m.connect, rssBytes: { base: m.rssBase, connected: m.rssConnected, after: m.rssAfter } };
}

/** dm-throughput figures: ≥ 2,000 DM/s acked, 0 lost (every run), ack p99 ≤ 100 ms. */
export function throughputFigures(m: DmMeasure): RunResult {
  const t = m.traffic;
  return {
    figures: [
      { name: 'acked DM/s (ack <= 1 s)', unit: '/s', value: t.ackedPerSec, target: { op: '>=', value: 2000 } },
      { name: 'lost', unit: 'msgs', value: t.lost, target: { op: '==', value: 0, judge: 'worst' } },
      { name: 'acks received in window', unit: '/s', value: t.ackRateInWindow },
      { name: 'ack p99', unit: 'ms', value: t.ack.p99, target: { op: '<=', value: 100 } },
      { name: 'ack p50', unit: 'ms', value: t.ack.p50 },
      { name: 'delivery (all devices) p99', unit: 'ms', value: t.allDevices.p99 },
      { name: 'unacked + errors', unit: 'msgs', value: t.unacked + t.errors },
      { name: 'generator lag p99', unit: 'ms', value: t.lag.p99 },
      ...stallFigures(t),
      { name: 'server CPU', unit: '% core', value: t.serverCpuPct },
      { name: 'PostgreSQL CPU', unit: '% core', value: t.dbCpuPct },
      { name: 'generators CPU', unit: '% core', value: t.generatorCpuPct },
    ],
    info: info(m),
  };
}

/** dm-latency figures at 1,000 DM/s: delivery to all devices p50 ≤ 3 / p99 ≤ 25, ack p50 ≤ 2.5 / p99 ≤ 20 (ms). */
export function latencyFigures(m: DmMeasure): RunResult {
  const t = m.traffic;
  return {
    figures: [
      { name: 'delivery (all devices) p50', unit: 'ms', value: t.allDevices.p50, target: { op: '<=', value: 3 } },
      { name: 'delivery (all devices) p99', unit: 'ms', value: t.allDevices.p99, target: { op: '<=', value: 25 } },
      { name: 'ack p50', unit: 'ms', value: t.ack.p50, target: { op: '<=', value: 2.5 } },
      { name: 'ack p99', unit: 'ms', value: t.ack.p99, target: { op: '<=', value: 20 } },
      { name: 'acked DM/s (ack <= 1 s)', unit: '/s', value: t.ackedPerSec },
      { name: 'lost', unit: 'msgs', value: t.lost },
      { name: 'generator lag p99', unit: 'ms', value: t.lag.p99 },
      ...stallFigures(t),
      { name: 'server CPU', unit: '% core', value: t.serverCpuPct },
      { name: 'generators CPU', unit: '% core', value: t.generatorCpuPct },
    ],
    info: info(m),
  };
}

/**
 * Whether the ack p99 comes from a few stalls (../stalls.ts): the bursts of acks at or above
 * the p99 (at least BURST_MIN_ACKS within BURST_GAP_MS of each other) and their share of those
 * acks; whether the server's own thread stalled (its event-loop lateness, ./traffic.ts); and
 * whether the disk under the database did (../flush-probe.ts), and in how many of the bursts.
 */
function stallFigures(t: TrafficSummary): Figure[] {
  return [
    { name: `stalls: bursts of >= ${BURST_MIN_ACKS} acks >= p99 within ${BURST_GAP_MS} ms`, unit: 'count', value: t.slowAcks.bursts },
    { name: 'stalls: share of acks >= p99 inside such bursts', unit: '%', value: Math.round(t.slowAcks.inBurstsPct) },
    { name: 'stalls: bursts during a slow disk flush', unit: 'count', value: t.slowAcks.withMark },
    { name: 'server event-loop lateness p99', unit: 'ms', value: t.serverLoop?.p99Ms ?? null },
    { name: 'server event-loop lateness max', unit: 'ms', value: t.serverLoop?.maxMs ?? null },
    ...diskFigures(t, ''),
  ];
}

/** The disk flush probe's figures for one traffic phase (`prefix` names the side in cluster runs). */
function diskFigures(t: TrafficSummary, prefix: string): Figure[] {
  return [
    { name: `${prefix}disk flushes (4 KiB + fdatasync) >= ${t.disk?.thresholdMs ?? 10} ms`, unit: 'count', value: t.disk?.slowFlushes ?? null },
    { name: `${prefix}disk flush max`, unit: 'ms', value: t.disk?.maxMs ?? null },
  ];
}

/** memory figures: RSS after the throughput run ≤ 1.5 × RSS after connecting. */
export function memoryFigures(m: DmMeasure): RunResult {
  return {
    figures: [
      // Judged after the server idled (V8 has shrunk its young generation and compacted):
      // growth that survives that is what a leak looks like. The reading 1 s after the run
      // is shown too; it includes the young generation at its peak size.
      { name: 'RSS after run (idle) / after connect', unit: 'ratio', value: m.rssConnected && m.rssAfterIdle ? m.rssAfterIdle / m.rssConnected : null, target: { op: '<=', value: 1.5 } },
      { name: 'RSS 1 s after run / after connect', unit: 'ratio', value: m.rssConnected ? m.rssAfter / m.rssConnected : null },
      { name: 'RSS after connect', unit: 'MB', value: m.rssConnected / MB },
      { name: 'RSS 1 s after run', unit: 'MB', value: m.rssAfter / MB },
      { name: 'RSS after run, idle', unit: 'MB', value: m.rssAfterIdle ? m.rssAfterIdle / MB : null },
    ],
    info: { rssBytes: { base: m.rssBase, connected: m.rssConnected, after: m.rssAfter, afterIdle: m.rssAfterIdle } },
  };
}

/** cluster figures versus a single-process baseline at the same rate. */
export function clusterFigures(cluster: DmMeasure, single: DmMeasure): RunResult {
  const c = cluster.traffic;
  const s = single.traffic;
  return {
    figures: [
      { name: 'throughput vs 1 process', unit: 'x', value: s.ackedPerSec ? c.ackedPerSec / s.ackedPerSec : null, target: { op: '>=', value: 1.0 } },
      { name: 'ack p99 vs 1 process', unit: 'x', value: c.ack.p99 !== null && s.ack.p99 ? c.ack.p99 / s.ack.p99 : null, target: { op: '<=', value: 1.2 } },
      { name: 'cluster acked DM/s (ack <= 1 s)', unit: '/s', value: c.ackedPerSec },
      { name: '1-process acked DM/s (ack <= 1 s)', unit: '/s', value: s.ackedPerSec },
      { name: 'cluster ack p99', unit: 'ms', value: c.ack.p99 },
      { name: '1-process ack p99', unit: 'ms', value: s.ack.p99 },
      { name: 'cluster ack p50', unit: 'ms', value: c.ack.p50 },
      { name: '1-process ack p50', unit: 'ms', value: s.ack.p50 },
      { name: 'cluster CPU (primary + workers)', unit: '% core', value: c.serverCpuPct },
      { name: '1-process CPU', unit: '% core', value: s.serverCpuPct },
      { name: 'cluster PostgreSQL + Redis CPU', unit: '% core', value: c.dbCpuPct === null ? null : c.dbCpuPct + (c.redisCpuPct ?? 0) },
      { name: '1-process PostgreSQL CPU', unit: '% core', value: s.dbCpuPct },
      { name: 'cluster stalls: share of acks >= p99 in bursts', unit: '%', value: Math.round(c.slowAcks.inBurstsPct) },
      { name: '1-process stalls: share of acks >= p99 in bursts', unit: '%', value: Math.round(s.slowAcks.inBurstsPct) },
      { name: 'cluster stalls: bursts', unit: 'count', value: c.slowAcks.bursts },
      { name: 'cluster stalls: bursts during a slow disk flush', unit: 'count', value: c.slowAcks.withMark },
      { name: '1-process stalls: bursts', unit: 'count', value: s.slowAcks.bursts },
      { name: '1-process stalls: bursts during a slow disk flush', unit: 'count', value: s.slowAcks.withMark },
      ...diskFigures(c, 'cluster '),
      ...diskFigures(s, '1-process '),
      { name: 'cluster lost', unit: 'msgs', value: c.lost, target: { op: '==', value: 0, judge: 'worst' } },
    ],
    info: { cluster: info(cluster), single: { rate: single.rate, traffic: single.traffic } },
  };
}

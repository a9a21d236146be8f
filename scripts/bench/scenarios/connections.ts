/**
 * Connection workload: `connections` distinct users each open one connection and
 * authenticate (JWT + revocation + user lookup), from every load generator at once, then
 * stay idle. Feeds the connect (time to connect them all) and idle (server RSS per held
 * connection) scenarios.
 *
 * Like the traffic scenarios' warm-up, `--connect-warmup` other users (default 2,000) first
 * connect, authenticate and close, after the idle base RSS is read: the measured burst then
 * meets a server whose connect path V8 has already compiled (in a cold one the optimising
 * compiler took ~17% of the server's CPU during the burst, and code ran interpreted). The
 * warm-up's own time is reported as the cold figure. The measured burst starts
 * {@link WARMUP_SETTLE_MS} after the warm-up closed, when the server has announced those
 * users offline (OFFLINE_GRACE_MS, default 10 s). RSS per connection is still counted above
 * the cold base, read before the warm-up: what the warm-up left behind (compiled code, a
 * grown heap) is charged to the connections.
 */
import { sleep } from '../../lib/proc.ts';
import { assertAlive, bootServer, freshDatabase, LoadGens, seed, serverEnv, type BenchContext } from '../fixture.ts';
import type { StatusResult } from '../ipc.ts';
import type { RunResult } from '../stats.ts';
import { connectAll, dealClients, type ConnectSummary } from './traffic.ts';

/** One connection run. RSS in bytes. */
export interface ConnMeasure {
  connect: ConnectSummary;
  /** Connections still open after the idle settle period. */
  held: number;
  closes: Record<string, number>;
  /** RSS of the idle server before connecting, after `idleSettleMs` (steady state). */
  rssBase: number;
  /** RSS 2 s after the load generators started (the server just started). */
  rssBaseEarly: number;
  /** RSS {@link EARLY_MS} after the last connection authenticated. */
  rssEarly: number;
  /** RSS after `idleSettleMs` of idling (the steady state: V8's memory reducer has run). */
  rssHeld: number;
  /** Idle time before `rssHeld` was read, ms. */
  settleMs: number;
  /** Server CPU time while connecting, seconds. */
  serverCpuS: number;
  /** The warm-up burst (cold server), when there was one. */
  warmup?: ConnectSummary;
  /** RSS just before the measured burst, {@link WARMUP_SETTLE_MS} after the warm-up closed. */
  rssAfterWarmup?: number;
}

/** Pause between the warm-up's close and the measured burst, ms: above OFFLINE_GRACE_MS (10 s). */
const WARMUP_SETTLE_MS = 12_000;

/**
 * When the first RSS reading is taken after connecting, ms. It still holds the connect
 * burst's garbage and a young generation grown to its maximum: V8's memory reducer shrinks
 * them only once the process has been idle for a while (~8 s, then a GC), so the steady
 * figure is read after `--idle-settle` seconds (default 30). The base (the idle server
 * before connecting) is read the same way: 2 s after start, and after `--idle-settle`.
 */
const EARLY_MS = 5000;

/** Run the connection workload once against a fresh server and database. */
export async function measureConnections(ctx: BenchContext, label: string): Promise<ConnMeasure> {
  const { opts, infra } = ctx;
  const n = opts.connections;
  const w = opts.connectWarmup;
  const dbUrl = await freshDatabase(infra, label);
  await seed(dbUrl, n + w, []);
  const server = await bootServer(ctx, serverEnv(infra, dbUrl, opts), label);
  let lg: LoadGens | undefined;
  try {
    lg = await LoadGens.start(opts.loadgens, server.wsUrl, infra.jwtSecret, opts.clientHandshake);
    await sleep(2000);
    const rssBaseEarly = server.rssBytes();
    await sleep(Math.max(0, opts.idleSettleMs - 2000));
    const rssBase = server.rssBytes();
    let warmup: ConnectSummary | undefined;
    let rssAfterWarmup: number | undefined;
    if (w > 0) {
      // Users n+1..n+w: the measured users meet no cache their own warm-up filled.
      warmup = await connectAll(lg, dealClients(lg.size, 'w', n + 1, w, opts.sourceIps, n), opts.connectConcurrency, 30_000);
      await lg.all(() => ({ op: 'disconnect' }), 30_000);
      await sleep(WARMUP_SETTLE_MS);
      assertAlive(server, 'after the connect warm-up');
      rssAfterWarmup = server.rssBytes();
    }
    const specs = dealClients(lg.size, 'c', 1, n, opts.sourceIps, 0);
    const cpu0 = server.cpuSeconds();
    const connect = await connectAll(lg, specs, opts.connectConcurrency, 30_000);
    const serverCpuS = server.cpuSeconds() - cpu0;
    await sleep(EARLY_MS);
    const rssEarly = server.rssBytes();
    const settleMs = Math.max(EARLY_MS, opts.idleSettleMs);
    await sleep(settleMs - EARLY_MS);
    assertAlive(server, 'while holding connections');
    const st = await lg.all<StatusResult>(() => ({ op: 'status' }), 10_000);
    const closes: Record<string, number> = {};
    for (const s of st) for (const [k, v] of Object.entries(s.closes)) closes[k] = (closes[k] ?? 0) + v;
    return { connect, held: st.reduce((a, s) => a + s.open, 0), closes, rssBase, rssBaseEarly, rssEarly, rssHeld: server.rssBytes(), settleMs, serverCpuS, warmup, rssAfterWarmup };
  } finally {
    await lg?.stop();
    await server.stop('SIGTERM', 20_000);
  }
}

const MB = 1024 * 1024;

/** connect figures: all `n` connected (every run), in ≤ 4 s per 10,000; the cold warm-up's time and count beside them. */
export function connectFigures(m: ConnMeasure, n: number): RunResult {
  const wu = m.warmup;
  return {
    figures: [
      { name: `time to connect+auth ${n}`, unit: 's', value: m.connect.spanMs / 1000, target: { op: '<=', value: (4 * n) / 10_000 } },
      { name: 'connected', unit: 'conns', value: m.connect.ok, target: { op: '>=', value: n, judge: 'worst' } },
      { name: 'connect+auth p99', unit: 'ms', value: m.connect.latency.p99 },
      { name: 'server CPU while connecting', unit: 's', value: m.serverCpuS },
      { name: 'generators CPU while connecting', unit: 's', value: m.connect.generatorCpuMs / 1000 },
      ...(wu
        ? [
            { name: `cold server: time to connect+auth the ${wu.ok + wu.failed} of the warm-up`, unit: 's', value: wu.spanMs / 1000 },
            { name: 'cold server: warm-up connected', unit: 'conns', value: wu.ok, target: { op: '>=' as const, value: wu.ok + wu.failed, judge: 'worst' as const } },
          ]
        : []),
    ],
    info: { connect: m.connect, serverCpuS: m.serverCpuS, warmup: wu },
  };
}

/** idle figures: `n` held, ≤ 8 KB RSS each (steady state) above a base ≤ 60 MB. */
export function idleFigures(m: ConnMeasure, n: number): RunResult {
  const perConn = (rss: number, base: number) => (m.held ? (rss - base) / m.held / 1024 : null);
  return {
    figures: [
      { name: 'connections held', unit: 'conns', value: m.held, target: { op: '>=', value: n, judge: 'worst' } },
      { name: `RSS per connection (${Math.round(m.settleMs / 1000)} s idle)`, unit: 'KB', value: perConn(m.rssHeld, m.rssBase), target: { op: '<=', value: 8 } },
      { name: `RSS per connection (${EARLY_MS / 1000} s after connecting)`, unit: 'KB', value: perConn(m.rssEarly, m.rssBaseEarly) },
      { name: `base RSS (${Math.round(m.settleMs / 1000)} s idle)`, unit: 'MB', value: m.rssBase / MB, target: { op: '<=', value: 60 } },
      { name: 'base RSS (2 s after start)', unit: 'MB', value: m.rssBaseEarly / MB },
      { name: 'RSS with connections', unit: 'MB', value: m.rssHeld / MB },
      ...(m.rssAfterWarmup !== undefined ? [{ name: `RSS ${WARMUP_SETTLE_MS / 1000} s after the connect warm-up closed`, unit: 'MB', value: m.rssAfterWarmup / MB }] : []),
    ],
    info: { held: m.held, closes: m.closes, settleMs: m.settleMs, rssBytes: { base: m.rssBase, baseEarly: m.rssBaseEarly, early: m.rssEarly, held: m.rssHeld, afterWarmup: m.rssAfterWarmup } },
  };
}
